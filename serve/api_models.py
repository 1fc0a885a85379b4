"""The API's documented request and response models, generated from `churn/schema.py`.

Nothing here spells a column name or a category: each request field is built from a
`churn.schema.Column`. Validation of a body is serve/validation.py's; these models are what the
OpenAPI document shows, and pydantic's judge of a body the fast paths do not take.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    create_model,
)

from churn.schema import Column, Kind
from serve.rows import ID_MAX_LENGTH, REQUEST_COLUMNS

# The first two customers of the public IBM Telco file, in `churn.schema.COLUMNS` order
# (label left out): the worked example in the OpenAPI docs, the README and `make demo`.
_EXAMPLE_VALUES: tuple[tuple[Any, ...], ...] = (
    ("7590-VHVEG", "Female", 0, "Yes", "No", 1, "No", "No phone service", "DSL", "No", "Yes",
     "No", "No", "No", "No", "Month-to-month", "Yes", "Electronic check", 29.85, 29.85),
    ("5575-GNVDE", "Male", 0, "No", "No", 34, "Yes", "No", "DSL", "Yes", "No", "Yes", "No",
     "No", "No", "One year", "No", "Mailed check", 56.95, 1889.5),
)  # fmt: skip
EXAMPLE_ROWS: list[dict[str, Any]] = [
    dict(zip((c.name for c in REQUEST_COLUMNS), values, strict=True)) for values in _EXAMPLE_VALUES
]
EXAMPLE_REQUEST: dict[str, Any] = {"instances": EXAMPLE_ROWS}


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 8.0 is the integer 8 (and JSON Schema's "integer" says so).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The raw Telco CSV leaves TotalCharges blank for customers in their first month: a string of
# JSON whitespace only (spaces, tabs, line breaks) is taken as null. The OpenAPI schema says so
# with the same pattern, so what is accepted and what is documented are one definition.
BLANK_PATTERN = r"^[ \t\n\r]*$"
_BLANK = re.compile(BLANK_PATTERN)
Blank = Annotated[str, StringConstraints(pattern=BLANK_PATTERN)]


def _blank_is_null(value: Any) -> Any:
    if isinstance(value, str) and _BLANK.match(value):
        return None
    return value


def _field(column: Column) -> tuple[Any, Any]:
    """The pydantic (annotation, default) for one schema column."""
    description = column.description
    if column.kind is Kind.ID:
        return (
            str | None,
            Field(default=None, max_length=ID_MAX_LENGTH, description=description + "; echoed"),
        )
    if column.kind is Kind.CATEGORY:
        return (Literal[column.categories], Field(description=description))
    if column.kind in (Kind.FLAG, Kind.INTEGER):
        return (
            Annotated[int, BeforeValidator(_whole_number), Strict()],
            Field(ge=column.minimum, le=column.maximum, description=description),
        )
    if column.kind is Kind.NUMBER:
        number = Annotated[float, Strict(), Field(ge=column.minimum, le=column.maximum)]
        if column.nullable:
            return (
                # `Blank` only documents the blank string: it is null before validation.
                Annotated[number | Blank | None, BeforeValidator(_blank_is_null)],
                Field(description=description + '; null or "" when unknown'),
            )
        return (number, Field(description=description + "; integers are accepted"))
    raise ValueError(f"column {column.name} of kind {column.kind} is not a request field")


Customer: type[BaseModel] = create_model(
    "Customer",
    __config__=ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [EXAMPLE_ROWS[0]]},
    ),
    __doc__="One customer: every feature of `churn.schema`, plus an optional customerID.",
    **{c.name: _field(c) for c in REQUEST_COLUMNS},  # type: ignore[call-overload]
)


def request_model(max_batch_size: int) -> type[BaseModel]:
    """The documented body of POST /predict (its bounds depend on the settings)."""
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_REQUEST]}),
        __doc__="A batch of customers to score. A single customer object is accepted too.",
        instances=(
            list[Customer],  # type: ignore[valid-type]
            Field(min_length=1, max_length=max_batch_size),
        ),
    )


class ModelRef(BaseModel):
    name: str
    version: int
    run_id: str


class Prediction(BaseModel):
    customerID: str | None
    churn_probability: float = Field(description="P(churn) from the model, in [0, 1]")
    churn: bool = Field(description="churn_probability >= the scoring model's threshold")
    model_version: int = Field(description="the version that scored this row")


class PredictionRow(msgspec.Struct, gc=False):
    """A `Prediction` as the service encodes it. A struct the garbage collector does not track:
    a 1,000-row answer made of dicts is 1,000 new container objects, enough to trigger a
    collection that walks them all (tests/unit/test_serve.py keeps both field lists equal)."""

    customerID: str | None
    churn_probability: float
    churn: bool
    model_version: int


class ChallengerRef(ModelRef):
    threshold: float


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: ModelRef = Field(
        description="the version that scored the rows (with CHURN_CHALLENGER_TRAFFIC, when the "
        "rows went to both sides: the champion, and `challenger` names the other)"
    )
    threshold: float
    challenger: ChallengerRef | None = Field(
        default=None, description="present when some rows of this request went to the challenger"
    )


class FieldError(BaseModel):
    field: str = Field(description="where in the body: instances[3].Contract, or body")
    message: str


class ErrorBody(BaseModel):
    detail: str = Field(description="the first error as one line, `<field>: <message>`")
    errors: list[FieldError] = Field(default_factory=list)
