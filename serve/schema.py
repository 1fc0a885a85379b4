"""The API's request and response models, generated from `churn/schema.py`.

Nothing here spells a column name or a category: each request field is built from a
`churn.schema.Column`, and each validation error is worded from that column, so the message a
client reads (`instances[3].Contract: must be one of 'Month-to-month', 'One year', 'Two year';
got 'Monthly'`) changes only when the schema does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    create_model,
)

from churn import schema
from churn.schema import Column, Kind

ID_MAX_LENGTH = 64
# A request with thousands of bad rows gets the first errors, not a multi-megabyte answer.
MAX_ERRORS = 50

# The first two customers of the public IBM Telco file, in `churn.schema.COLUMNS` order
# (label left out): the worked example in the OpenAPI docs, the README and `make demo`.
_EXAMPLE_VALUES: tuple[tuple[Any, ...], ...] = (
    ("7590-VHVEG", "Female", 0, "Yes", "No", 1, "No", "No phone service", "DSL", "No", "Yes",
     "No", "No", "No", "No", "Month-to-month", "Yes", "Electronic check", 29.85, 29.85),
    ("5575-GNVDE", "Male", 0, "No", "No", 34, "Yes", "No", "DSL", "Yes", "No", "Yes", "No",
     "No", "No", "One year", "No", "Mailed check", 56.95, 1889.5),
)  # fmt: skip
REQUEST_COLUMNS: tuple[Column, ...] = tuple(c for c in schema.COLUMNS if c.kind is not Kind.LABEL)
EXAMPLE_ROWS: list[dict[str, Any]] = [
    dict(zip((c.name for c in REQUEST_COLUMNS), values, strict=True)) for values in _EXAMPLE_VALUES
]
EXAMPLE_REQUEST: dict[str, Any] = {"instances": EXAMPLE_ROWS}


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 8.0 is the integer 8 (and JSON Schema's "integer" says so).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _blank_is_null(value: Any) -> Any:
    # The raw Telco CSV leaves TotalCharges blank for customers in their first month.
    if isinstance(value, str) and not value.strip():
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
                Annotated[number | None, BeforeValidator(_blank_is_null)],
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
_ROWS = TypeAdapter(list[Customer])  # type: ignore[valid-type]


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


# ---------------------------------------------------------------------------------------------
# Validation with errors a person can act on.


@dataclass(frozen=True)
class RequestError(Exception):
    """The body cannot be scored; `errors` are (field, message) pairs in body order."""

    errors: tuple[tuple[str, str], ...]

    def body(self) -> dict[str, Any]:
        shown = self.errors[:MAX_ERRORS]
        field, message = shown[0]
        detail = f"{field}: {message}"
        if len(self.errors) > 1:
            more = len(self.errors) - 1
            detail += f" (and {more} more error{'s' if more > 1 else ''})"
        return {"detail": detail, "errors": [{"field": f, "message": m} for f, m in shown]}


def _show(value: Any) -> str:
    """A JSON value as a client would recognise it in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _bound(x: float | None) -> str:
    return "" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


def expectation(column: Column) -> str:
    """What a valid value of `column` is, worded for an error message."""
    if column.kind is Kind.CATEGORY:
        return "must be one of " + ", ".join(repr(c) for c in column.categories)
    if column.kind is Kind.FLAG:
        return f"must be {_bound(column.minimum)} or {_bound(column.maximum)}"
    if column.kind is Kind.INTEGER:
        return f"must be an integer from {_bound(column.minimum)} to {_bound(column.maximum)}"
    if column.kind is Kind.NUMBER:
        text = "must be a number"
        if column.minimum is not None:
            text += f" >= {_bound(column.minimum)}"
        if column.maximum is not None:
            text += f" <= {_bound(column.maximum)}"
        return text + (" or null" if column.nullable else "")
    return f"must be a string of at most {ID_MAX_LENGTH} characters or null"


def _field_message(name: str, error_type: str, value: Any) -> str:
    if error_type == "missing":
        return "field required"
    if error_type == "extra_forbidden":
        if name == schema.LABEL_COLUMN:
            return "unknown field (the label is what the model predicts; leave it out)"
        return "unknown field"
    return f"{expectation(schema.BY_NAME[name])}; got {_show(value)}"


def parse(body: bytes, max_batch_size: int) -> tuple[list[BaseModel], bool]:
    """Validate a /predict body: (rows, was_batch). Raises RequestError with every problem."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson says what is wrong: "number is infinity when parsed as double", "depth limit
        # exceeded", "no low surrogate in string"... (NaN and Infinity are not JSON).
        reason = exc.msg[:1].lower() + exc.msg[1:]
        raise RequestError(
            (("body", f"not valid JSON: {reason} (line {exc.lineno}, column {exc.colno})"),)
        ) from None
    if not isinstance(payload, dict):
        raise RequestError(
            (
                (
                    "body",
                    'must be an object: {"instances": [...]} or one customer; '
                    f"got {_show(payload)}",
                ),
            )
        )
    if "instances" not in payload:
        return _rows([payload], prefix=lambda _i: ""), False
    extra = [k for k in payload if k != "instances"]
    if extra:
        raise RequestError(tuple((k, "unknown field") for k in extra))
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError(
            (("instances", f"must be a list of customer objects; got {_show(instances)}"),)
        )
    if not 1 <= len(instances) <= max_batch_size:
        raise RequestError(
            (("instances", f"must hold 1 to {max_batch_size} rows; got {len(instances)}"),)
        )
    return _rows(instances, prefix=lambda i: f"instances[{i}]"), True


def _rows(instances: list[Any], prefix: Any) -> list[BaseModel]:
    try:
        return _ROWS.validate_python(instances)
    except ValidationError as exc:
        raise RequestError(_messages(exc, instances, prefix)) from None


def _messages(
    exc: ValidationError, instances: Sequence[Any], prefix: Any
) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_context=False):
        loc = err["loc"]
        index = int(loc[0])
        row = prefix(index)
        if len(loc) == 1:  # the row itself is not an object
            out.setdefault(row or "body", f"must be a customer object; got {_show(err['input'])}")
            continue
        name = str(loc[1])
        where = f"{row}.{name}" if row else name
        # Unions and Annotated chains can report one field twice; the first wording wins.
        value = instances[index].get(name) if isinstance(instances[index], dict) else None
        out.setdefault(where, _field_message(name, err["type"], value))
    return tuple(out.items())
