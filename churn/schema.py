"""The feature schema, defined once.

The layout is the public IBM Telco Customer Churn file (21 columns, in its order), so a
learner who has the real CSV can drop it in and everything downstream runs unchanged.
The generator, ingestion, training, the MLflow signature and the API's request model
all derive from the `COLUMNS` below; nothing else spells a column name or a category.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    ID = "id"  # free-text identifier, not a feature
    CATEGORY = "category"  # one of a fixed set of strings
    FLAG = "flag"  # integer 0/1
    INTEGER = "integer"  # bounded integer
    NUMBER = "number"  # float, may be missing (TotalCharges for new customers)
    LABEL = "label"  # Yes/No target


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    description: str
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False

    @property
    def pandas_dtype(self) -> str:
        """The dtype a normalised frame holds for this column."""
        return {
            Kind.ID: "object",
            Kind.CATEGORY: "object",
            Kind.FLAG: "int64",
            Kind.INTEGER: "int64",
            Kind.NUMBER: "float64",
            Kind.LABEL: "int64",
        }[self.kind]


YES_NO = ("Yes", "No")
PHONE_DEPENDENT = ("Yes", "No", "No phone service")
INTERNET_DEPENDENT = ("Yes", "No", "No internet service")

ID_COLUMN = "customerID"
LABEL_COLUMN = "Churn"

COLUMNS: tuple[Column, ...] = (
    Column(ID_COLUMN, Kind.ID, "Customer identifier, e.g. 7590-VHVEG"),
    Column("gender", Kind.CATEGORY, "Customer gender", ("Female", "Male")),
    Column("SeniorCitizen", Kind.FLAG, "1 if the customer is 65 or older", minimum=0, maximum=1),
    Column("Partner", Kind.CATEGORY, "Has a partner", YES_NO),
    Column("Dependents", Kind.CATEGORY, "Has dependents", YES_NO),
    Column("tenure", Kind.INTEGER, "Months with the company", minimum=0, maximum=72),
    Column("PhoneService", Kind.CATEGORY, "Has phone service", YES_NO),
    Column("MultipleLines", Kind.CATEGORY, "Has multiple phone lines", PHONE_DEPENDENT),
    Column("InternetService", Kind.CATEGORY, "Internet provider", ("DSL", "Fiber optic", "No")),
    Column("OnlineSecurity", Kind.CATEGORY, "Online security add-on", INTERNET_DEPENDENT),
    Column("OnlineBackup", Kind.CATEGORY, "Online backup add-on", INTERNET_DEPENDENT),
    Column("DeviceProtection", Kind.CATEGORY, "Device protection add-on", INTERNET_DEPENDENT),
    Column("TechSupport", Kind.CATEGORY, "Tech support add-on", INTERNET_DEPENDENT),
    Column("StreamingTV", Kind.CATEGORY, "Streams TV", INTERNET_DEPENDENT),
    Column("StreamingMovies", Kind.CATEGORY, "Streams movies", INTERNET_DEPENDENT),
    Column("Contract", Kind.CATEGORY, "Contract term", ("Month-to-month", "One year", "Two year")),
    Column("PaperlessBilling", Kind.CATEGORY, "Paperless billing", YES_NO),
    Column(
        "PaymentMethod",
        Kind.CATEGORY,
        "Payment method",
        (
            "Electronic check",
            "Mailed check",
            "Bank transfer (automatic)",
            "Credit card (automatic)",
        ),
    ),
    Column("MonthlyCharges", Kind.NUMBER, "Monthly charge in USD", minimum=0.0),
    Column(
        "TotalCharges",
        Kind.NUMBER,
        "Total charged so far in USD; blank in the raw file for new customers (tenure 0)",
        minimum=0.0,
        nullable=True,
    ),
    Column(LABEL_COLUMN, Kind.LABEL, "Churned within the month (Yes/No)", YES_NO),
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
# What the model sees: everything but the identifier and the label, in file order.
FEATURES: tuple[Column, ...] = tuple(c for c in COLUMNS if c.kind not in (Kind.ID, Kind.LABEL))
FEATURE_NAMES: tuple[str, ...] = tuple(c.name for c in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(c.name for c in FEATURES if c.kind is Kind.CATEGORY)
NUMERIC_FEATURES: tuple[str, ...] = tuple(
    c.name for c in FEATURES if c.kind in (Kind.FLAG, Kind.INTEGER, Kind.NUMBER)
)
