"""The API's request and response models, generated from `churn/schema.py`.

Nothing here spells a column name or a category: each request field is built from a
`churn.schema.Column`, and each validation error is worded from that column, so the message a
client reads (`instances[3].Contract: must be one of 'Month-to-month', 'One year', 'Two year';
got 'Monthly'`) changes only when the schema does.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import itemgetter, methodcaller
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import orjson
import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
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


def parse(body: bytes, max_batch_size: int) -> tuple[Sequence[Any], bool]:
    """Validate a /predict body: (rows, was_batch). Raises RequestError with every problem.

    Each row has the request fields as attributes (`row.tenure`, `row.customerID`): the rows
    are `Customer` models, or a `Batch` of `FastRow`s when the batch passed `decode_batch` or
    `fast_rows`."""
    fast = decode_batch(body, max_batch_size)
    if fast is not None:
        return fast, True
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


def _rows(instances: list[Any], prefix: Any) -> Sequence[Any]:
    fast = fast_rows(instances)
    if fast is not None:
        return fast
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


# ---------------------------------------------------------------------------------------------
# The fast path: a whole batch checked column by column.
#
# pydantic validates a 1,000-row batch in ~8 ms (cell by cell, through each field's validator
# chain), more than the model takes to score it. Rows as clients send them (every value of the
# expected JSON type and in range) are checked here with a few C-level passes per column
# instead: `fast_rows` either accepts the batch, with the values pydantic would produce, or
# returns None and pydantic decides, so what is accepted and every error message stay pydantic's
# (tests/unit/test_schema_fast.py checks this property on generated bodies).

FEATURE_NAMES: tuple[str, ...] = tuple(c.name for c in REQUEST_COLUMNS if c.kind is not Kind.ID)
# A validated row; its fields are `Customer`'s, read the same way (`row.Contract`).
FastRow: Any = namedtuple("FastRow", [*FEATURE_NAMES, schema.ID_COLUMN])  # type: ignore[misc]
_features = itemgetter(*FEATURE_NAMES)
_get_id = methodcaller("get", schema.ID_COLUMN)
_NUMBER_TYPES = frozenset({int, float})
_NULLABLE_NUMBER_TYPES = frozenset({int, float, type(None)})
_ID_TYPES = frozenset({str, type(None)})
_EXACT_FLOAT = 2**53  # beyond this an int's float is rounded: let pydantic decide


def _column(column: Column, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The column's values as pydantic would store them, or None to let pydantic judge."""
    if column.kind is Kind.CATEGORY:
        # Only a str equals one of these strings (JSON has no str subclasses); a list or an
        # object is unhashable: TypeError, caught by the caller.
        return values if set(values) <= _ALLOWED[column.name] else None
    types = set(map(type, values))
    if column.kind in (Kind.FLAG, Kind.INTEGER):
        # Exactly int: bool is its own type here; a whole float (8.0) is pydantic's to convert.
        ok = types == {int} and _in_range(column, min(values), max(values))
        return values if ok else None
    if column.kind is not Kind.NUMBER:
        return None
    if not types <= (_NULLABLE_NUMBER_TYPES if column.nullable else _NUMBER_TYPES):
        return None
    present = tuple(v for v in values if v is not None) if type(None) in types else values
    if not present:
        return values
    low, high = min(present), max(present)
    if not _in_range(column, low, high):
        return None
    if int in types:
        if not (low >= -_EXACT_FLOAT and high <= _EXACT_FLOAT):
            return None
        return tuple(v if v is None else float(v) for v in values)  # as pydantic stores it
    return values


def _in_range(column: Column, low: float, high: float) -> bool:
    return (column.minimum is None or low >= column.minimum) and (
        column.maximum is None or high <= column.maximum
    )


_ALLOWED: dict[str, frozenset[str]] = {
    c.name: frozenset(c.categories) for c in REQUEST_COLUMNS if c.kind is Kind.CATEGORY
}
_CHECKED: tuple[Column, ...] = tuple(c for c in REQUEST_COLUMNS if c.kind is not Kind.ID)
_FRAME_COLUMNS = pd.Index([c.name for c in _CHECKED])  # as pandas labels the columns of a dict
# The dtype each feature has in the frames the model was trained on (churn/schema.py): object
# for the categories, int64, float64 (NaN for a missing TotalCharges).
FRAME_DTYPES: dict[str, np.dtype[Any]] = {c.name: np.dtype(c.pandas_dtype) for c in _CHECKED}


# The fastest path, for the common body: `{"instances": [...]}` of plainly valid rows is decoded
# and checked in one C pass by msgspec, straight from the bytes (types, categories, ranges,
# missing and unknown fields), ~3x faster than `orjson.loads` + `fast_rows` on 1,000 rows.
# Like `fast_rows`, it only ever accepts: on anything it does not take (a single customer
# without the wrapper, 8.0 for an integer, "" for a missing TotalCharges, any error at all)
# it returns None and the path above decides, so every 422 is worded as before
# (tests/unit/test_schema_fast.py checks both agree on generated bodies).


def _strict_type(column: Column) -> Any:
    """msgspec's type for a column: what pydantic accepts with no conversion, nothing more."""
    low, high = column.minimum, column.maximum
    if column.kind is Kind.CATEGORY:
        return Literal[column.categories]
    if column.kind in (Kind.FLAG, Kind.INTEGER):
        # msgspec's int takes JSON integers only: not true/false, not 8.0.
        return Annotated[
            int,
            msgspec.Meta(
                ge=None if low is None else int(low), le=None if high is None else int(high)
            ),
        ]
    if column.kind is Kind.NUMBER:
        # An integer for a number becomes its float, as pydantic stores it.
        number = Annotated[float, msgspec.Meta(ge=low, le=high)]
        return number | None if column.nullable else number
    raise ValueError(f"column {column.name} of kind {column.kind} is not a request feature")


def _strict_field(column: Column) -> tuple[Any, ...]:
    if column.kind is Kind.ID:
        return (column.name, Annotated[str, msgspec.Meta(max_length=ID_MAX_LENGTH)] | None, None)
    return (column.name, _strict_type(column))


# The fields in `churn.schema` order, the order of the Telco file's columns (customerID first):
# msgspec matches each key against the field after the last one first, so rows sent in that
# order are decoded without a single field search. (`kw_only`: a required field may then
# follow the optional customerID.)
_StrictRow: Any = msgspec.defstruct(
    "StrictRow",
    [_strict_field(c) for c in REQUEST_COLUMNS],
    kw_only=True,
    forbid_unknown_fields=True,
    gc=False,  # scalars only: no cycles to look for, and 1,000 rows are not 1,000 GC objects
)
_StrictBody: Any = msgspec.defstruct(
    "StrictBody", [("instances", list[_StrictRow])], forbid_unknown_fields=True
)
_STRICT_DECODER = msgspec.json.Decoder(_StrictBody)
_ID_INDEX = [c.kind for c in REQUEST_COLUMNS].index(Kind.ID)
_astuple = msgspec.structs.astuple


def decode_batch(body: bytes, max_batch_size: int) -> Batch | None:
    """A `{"instances": [...]}` body of plainly valid rows as a `Batch`; None otherwise."""
    try:
        instances = _STRICT_DECODER.decode(body).instances
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    if not 1 <= len(instances) <= max_batch_size:
        return None
    # Rows -> columns: one tuple a row, transposed by zip in C (for 1,000 rows ~0.36 ms, against
    # ~0.50 ms for a `map(attrgetter(name), rows)` pass per column, garbage collections included).
    columns = list(zip(*map(_astuple, instances), strict=True))
    ids = columns.pop(_ID_INDEX)
    return Batch(tuple(columns), ids)


def fast_rows(instances: list[Any]) -> Batch | None:
    """`instances` as `FastRow`s when every row is plainly valid; None to let pydantic judge."""
    n = len(instances)
    if not n or set(map(type, instances)) != {dict}:
        return None
    try:
        values = list(map(_features, instances))  # KeyError: a field is missing
        ids = list(map(_get_id, instances))
    except KeyError:
        return None
    with_id = sum(map(dict.__contains__, instances, repeat(schema.ID_COLUMN)))
    if sum(map(len, instances)) != n * len(FEATURE_NAMES) + with_id:
        return None  # an unknown field
    columns: list[tuple[Any, ...]] = []
    try:
        for column, raw in zip(_CHECKED, zip(*values, strict=True), strict=True):
            checked = _column(column, raw)
            if checked is None:
                return None
            columns.append(checked)
    except TypeError:  # an unhashable value (a list) in a category column
        return None
    id_types = set(map(type, ids))
    if not id_types <= _ID_TYPES:
        return None
    if str in id_types and max(len(i) for i in ids if i is not None) > ID_MAX_LENGTH:
        return None
    return Batch(tuple(columns), tuple(ids))


class Batch(Sequence[Any]):
    """Rows validated by `fast_rows`, kept as columns: the model's frame is built from them
    directly (`frame()`), and a `FastRow` is only made for code that asks for a row."""

    __slots__ = ("columns", "ids")

    def __init__(self, columns: tuple[tuple[Any, ...], ...], ids: tuple[str | None, ...]) -> None:
        self.columns = columns  # FEATURE_NAMES order
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return FastRow._make([*(column[index] for column in self.columns), self.ids[index]])

    def __iter__(self) -> Any:
        return map(FastRow, *self.columns, self.ids)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        if len(batches) == 1:
            return batches[0]
        columns = tuple(
            tuple(chain.from_iterable(b.columns[i] for b in batches))
            for i in range(len(FEATURE_NAMES))
        )
        return Batch(columns, tuple(chain.from_iterable(b.ids for b in batches)))

    def take(self, mask: Sequence[bool]) -> Batch:
        """The rows where `mask` is true, in order."""
        return Batch(
            tuple(tuple(compress(c, mask)) for c in self.columns), tuple(compress(self.ids, mask))
        )

    def by_name(self) -> dict[str, tuple[Any, ...]]:
        """Each feature's column (as validated: None for a missing TotalCharges)."""
        return dict(zip(FEATURE_NAMES, self.columns, strict=True))

    def frame(self) -> pd.DataFrame:
        """The same frame as `serve.holder.frame(list(self))`, without going through rows."""
        n = len(self)
        arrays: list[Any] = []
        # `fromiter` with the dtype given: one C loop a column (`np.array` first inspects every
        # value to find a dtype, ~3x slower on 1,000 rows).
        for column, values in zip(_CHECKED, self.columns, strict=True):
            if column.nullable and None in values:
                values = tuple(np.nan if v is None else v for v in values)
            arrays.append(np.fromiter(values, dtype=FRAME_DTYPES[column.name], count=n))
        # pandas 3 infers a `str` dtype for object arrays of strings passed to the DataFrame
        # constructor; the model's frames hold object columns, and converting each through
        # `pd.Series(..., dtype=object)` costs ~0.6 ms a call, a third of a one-row request.
        # `_from_arrays` takes the arrays as they are (object stays object) in ~0.05 ms; it is
        # private, so any change in it falls back to the public route.
        try:
            return pd.DataFrame._from_arrays(  # type: ignore[attr-defined]
                arrays, columns=_FRAME_COLUMNS, index=pd.RangeIndex(len(self)),
                verify_integrity=False,
            )  # fmt: skip
        except (AttributeError, TypeError):
            return pd.DataFrame(
                {
                    c.name: pd.Series(a, dtype=object) if a.dtype == object else a
                    for c, a in zip(_CHECKED, arrays, strict=True)
                },
                copy=False,
            )


def concat_rows(groups: Sequence[Sequence[Any]]) -> Sequence[Any]:
    """The rows of `groups` in order: one `Batch` (still columns) when every group is one, else
    a list of rows."""
    if all(isinstance(g, Batch) for g in groups):
        return Batch.concat(groups)  # type: ignore[arg-type]
    return [row for group in groups for row in group]


def customer_ids(rows: Sequence[Any]) -> Sequence[str | None]:
    """Each row's customerID, in order."""
    if isinstance(rows, Batch):
        return rows.ids
    return [row.customerID for row in rows]
