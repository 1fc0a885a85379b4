"""MLflow's scoring protocol (`mlflow models serve`) on the service's own scoring core.

    POST /invocations   application/json: {"dataframe_split": ...} | {"dataframe_records": ...}
                        | {"instances": ...} | {"inputs": ...}, each with optional "params";
                        text/csv. Answer: {"predictions": [P(churn), ...]}
    GET  /ping          "\\n" once a model is loaded
    GET  /version       the MLflow version, as MLflow answers it

So a client written for `mlflow models serve` switches by changing the host. The rows go through
the same validation as /predict (serve/validation.py: the msgspec fast path first, then the column
checker, then pydantic for the wording of errors), the same micro-batcher and the same model;
errors are MLflow's `{"error_code": ..., "message": ...}` with its status classes (400 bad input,
415 media type), and the message names the field and the row as /predict's does.

Where MLflow's server and this one differ on purpose (serve/README.md lists them, and
tests/e2e/test_invocations_conformance.py proves each): rows MLflow would score but the model
was never trained on (an unknown category, a tenure out of range, an empty batch) are 400 here;
`8.0` for an integer column is accepted, as on /predict. Columns the signature does not name are
ignored, as MLflow ignores them (customerID is kept: it feeds the traffic profile).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from functools import lru_cache
from importlib import metadata
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from churn import schema
from churn.schema import Column, Kind
from serve import api_models, validation
from serve.holder import Scored
from serve.http_errors import JSON, NotReadyError, ServiceError
from serve.limits import read_body
from serve.rows import FEATURE_NAMES, REQUEST_COLUMNS, Batch
from serve.services import ServicesDep
from serve.validation import strict_field, validate_rows

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS = "params"
CSV = "text/csv"
_COLUMNS: dict[str, Column] = {c.name: c for c in REQUEST_COLUMNS}
_FIELD_ORDER = tuple(c.name for c in REQUEST_COLUMNS)

_encode = msgspec.json.Encoder().encode


class ProtocolError(ServiceError):
    """An answer other than 200 that only MLflow's protocol gives (serve/http_errors.py renders
    it in MLflow's error shape on MLflow's paths)."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code = status, error_code


def bad_request(exc: validation.RequestError) -> ProtocolError:
    """Our field-and-row message, as MLflow's 400."""
    return ProtocolError(400, "BAD_REQUEST", str(exc.body()["detail"]))


# ---------------------------------------------------------------------------------------------
# JSON: the common bodies decoded and checked by msgspec straight from the bytes (as /predict's
# `decode_batch`); anything else through orjson, then the same checks as /predict.

# The row of /predict's fast path, except that unknown fields are skipped (MLflow ignores
# columns its signature does not name).
_Row: Any = msgspec.defstruct(
    "InvocationRow", [strict_field(c) for c in REQUEST_COLUMNS], kw_only=True, gc=False
)
_RecordsBody: Any = msgspec.defstruct(
    "RecordsBody",
    [*((name, list[_Row] | None, None) for name in FORMATS[1:]), (PARAMS, Any, None)],
    forbid_unknown_fields=True,
)
_RECORDS = msgspec.json.Decoder(_RecordsBody)
_SplitBody: Any = msgspec.defstruct(
    "SplitBody",
    [(FORMATS[0], msgspec.defstruct("Split", [("columns", list[str]), ("data", msgspec.Raw),
                                              ("index", Any, None)])),
     (PARAMS, Any, None)],
    forbid_unknown_fields=True,
)  # fmt: skip
_SPLIT = msgspec.json.Decoder(_SplitBody)
_ID_AT = _FIELD_ORDER.index(schema.ID_COLUMN)


def _fast(body: bytes, max_rows: int) -> Batch | None:
    """The rows of a plainly valid body, checked in C; None to let the slower path decide."""
    try:
        decoded = _RECORDS.decode(body)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        try:  # a failed decode stops at the first unexpected key: trying both is cheap
            return _fast_split(body, max_rows)
        except (msgspec.MsgspecError, ValueError, RecursionError):
            return None
    given = [rows for rows in (decoded.dataframe_records, decoded.instances, decoded.inputs)
             if rows is not None]  # fmt: skip
    if len(given) != 1 or not 1 <= len(given[0]) <= max_rows:
        return None
    columns = list(zip(*map(msgspec.structs.astuple, given[0]), strict=True))
    ids = columns.pop(_ID_AT)
    return Batch(tuple(columns), ids)


@lru_cache(maxsize=16)
def _split_decoder(columns: tuple[str, ...]) -> msgspec.json.Decoder[Any] | None:
    """A decoder for `data` rows in this column order (each row a fixed tuple of checked
    values); None when a column is unknown, repeated or missing (the slow path decides)."""
    if len(set(columns)) != len(columns) or not set(FEATURE_NAMES) <= set(columns):
        return None
    if not set(columns) <= set(_FIELD_ORDER):
        return None
    types = tuple(strict_field(_COLUMNS[name])[1] for name in columns)
    return msgspec.json.Decoder(list[tuple[types]])  # type: ignore[valid-type]


def _fast_split(body: bytes, max_rows: int) -> Batch | None:
    split = _SPLIT.decode(body).dataframe_split
    decoder = _split_decoder(tuple(split.columns))
    if decoder is None:
        return None
    data = decoder.decode(split.data)
    if not 1 <= len(data) <= max_rows:
        return None
    by_name = dict(zip(split.columns, zip(*data, strict=True), strict=True))
    ids = by_name.get(schema.ID_COLUMN, (None,) * len(data))
    return Batch(tuple(by_name[name] for name in FEATURE_NAMES), ids)


def parse_json(body: bytes, max_rows: int) -> Sequence[Any]:
    """Validated rows of an MLflow JSON body; raises ProtocolError (400) naming what is wrong."""
    fast = _fast(body, max_rows)
    if fast is not None:
        return fast
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(
            400, "BAD_REQUEST", f"body: not valid JSON: {exc.msg} (line {exc.lineno})"
        ) from None
    if not isinstance(payload, dict):
        raise ProtocolError(400, "BAD_REQUEST", _required(f"got {_kind(payload)}"))
    given = [key for key in FORMATS if key in payload]
    if len(given) != 1:  # other fields are ignored, as MLflow ignores them
        raise ProtocolError(400, "BAD_REQUEST", _required(f"got the fields {list(payload)}"))
    fmt = given[0]
    records = _records(fmt, payload[fmt])
    if not 1 <= len(records) <= max_rows:
        raise ProtocolError(
            400, "BAD_REQUEST", f"{fmt}: must hold 1 to {max_rows} rows; got {len(records)}"
        )
    where = f"{fmt}.data" if fmt == FORMATS[0] else fmt
    return _checked(records, where)


def _required(got: str) -> str:
    return (
        "body: must be a JSON object with exactly one of the fields "
        f"{', '.join(FORMATS)} (and optionally {PARAMS}); {got}"
    )


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, list) else type(value).__name__


def _records(fmt: str, value: Any) -> list[Any]:
    """The rows of one format as a list of (customer) objects, as pandas would read them."""
    if fmt == FORMATS[0]:
        return _split_records(value)
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and fmt in ("instances", "inputs"):
        # TF-serving's columnar form: {"tenure": [1, 34], ...}, or one row of scalars.
        lists = [v for v in value.values() if isinstance(v, list)]
        if not lists:
            return [value]
        n = len(lists[0])
        if len(lists) == len(value) and all(len(v) == n for v in lists):
            return [dict(zip(value, row, strict=True)) for row in zip(*value.values(), strict=True)]
        raise ProtocolError(400, "BAD_REQUEST", f"{fmt}: columns must be lists of equal length")
    raise ProtocolError(
        400, "BAD_REQUEST", f"{fmt}: must be a list of customer objects; got {_kind(value)}"
    )


def _split_records(value: Any) -> list[Any]:
    where = FORMATS[0]
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise ProtocolError(
            400, "BAD_REQUEST", f'{where}: must be {{"columns": [...], "data": [[...], ...]}}'
        )
    columns = value.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ProtocolError(400, "BAD_REQUEST", f"{where}.columns: must be a list of names")
    out: list[Any] = []
    for i, row in enumerate(value["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ProtocolError(
                400, "BAD_REQUEST",
                f"{where}.data[{i}]: must be a list of {len(columns)} values, one per column",
            )  # fmt: skip
        out.append(dict(zip(columns, row, strict=True)))
    return out


def _checked(records: list[Any], where: str) -> Sequence[Any]:
    """/predict's checks on `records`, after dropping the columns MLflow would ignore."""
    known = _COLUMNS.keys()
    rows = [
        {k: v for k, v in r.items() if k in known} if isinstance(r, dict) and r.keys() - known
        else r
        for r in records
    ]  # fmt: skip
    try:
        return validate_rows(rows, prefix=lambda i: f"{where}[{i}]")
    except validation.RequestError as exc:
        raise bad_request(exc) from None


# ---------------------------------------------------------------------------------------------
# CSV: a header line and one line per row, as `DataFrame.to_csv(index=False)` writes it.


def _cell(column: Column, text: str) -> Any:
    """A CSV cell as the JSON value it stands for; what does not convert is left as text, so
    the checks word the error (`tenure: must be an integer ...; got 'abc'`)."""
    if column.kind is Kind.CATEGORY:
        return text
    if column.kind is Kind.ID or (column.nullable and not text.strip()):
        return text or None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _csv_column(column: Column, cells: tuple[str, ...]) -> tuple[Any, ...]:
    """A CSV column as JSON values: one C-level pass when every cell converts (the common
    case: a cell that fails raises, and a raise per cell costs more than the parse), else cell
    by cell."""
    if column.kind is Kind.CATEGORY:
        return cells
    if column.kind is Kind.ID:
        return tuple(cell or None for cell in cells)
    try:
        if column.kind in (Kind.FLAG, Kind.INTEGER):
            return tuple(map(int, cells))
        if column.kind is Kind.NUMBER:
            # pandas writes a missing TotalCharges as an empty cell
            return tuple(float(cell) if cell else None for cell in cells)
    except ValueError:
        pass
    return tuple(_cell(column, cell) for cell in cells)


def parse_csv(body: bytes, max_rows: int) -> Sequence[Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(400, "BAD_REQUEST", f"body: not UTF-8 text ({exc.reason})") from None
    lines = csv.reader(io.StringIO(text))
    header = next(lines, None)
    if not header:
        raise ProtocolError(400, "BAD_REQUEST", "body: empty CSV; the first line names columns")
    rows = [line for line in lines if line]  # not a trailing blank line
    for n, line in enumerate(rows):
        if len(line) != len(header):
            raise ProtocolError(
                400, "BAD_REQUEST", f"rows[{n}]: {len(line)} values for {len(header)} columns"
            )
    if not 1 <= len(rows) <= max_rows:
        raise ProtocolError(
            400, "BAD_REQUEST", f"body: must hold 1 to {max_rows} rows; got {len(rows)}"
        )
    cells = list(zip(*rows, strict=True))
    names: list[str] = []
    columns: list[tuple[Any, ...]] = []
    for i, name in enumerate(header):
        if name in _COLUMNS:  # others are ignored, as MLflow ignores them (the index column)
            names.append(name)
            columns.append(_csv_column(_COLUMNS[name], cells[i]))
    records = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    if not names:
        records = [{} for _ in rows]  # every field missing: the checks say so, row by row
    return _checked(records, "rows")


def parse(body: bytes, content_type: str | None, max_rows: int) -> Sequence[Any]:
    """The validated rows of an /invocations request, or ProtocolError (MLflow's statuses)."""
    media, _, parameters = (content_type or "").partition(";")
    media = media.strip().lower()
    for pair in filter(None, (p.strip() for p in parameters.split(";"))):
        key, _, value = pair.partition("=")
        if key.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            raise ProtocolError(
                415, "INVALID_PARAMETER_VALUE",
                f"Content-Type: only charset=utf-8 is supported; got {pair!r}",
            )  # fmt: skip
    if media == JSON:
        return parse_json(body, max_rows)
    if media == CSV:
        return parse_csv(body, max_rows)
    raise ProtocolError(
        415, "INVALID_PARAMETER_VALUE",
        f"Content-Type: must be {JSON} or {CSV}; got {media or 'none'!r}",
    )  # fmt: skip


def mlflow_format(body: bytes) -> str | None:
    """The MLflow format of a body sent to /predict (for a 4xx that points to /invocations)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    given = [k for k in FORMATS if k in payload]
    if given == ["instances"] and PARAMS not in payload:
        return None  # our own format
    return given[0] if len(given) == 1 else None


def predict_hint(fmt: str) -> validation.RequestError:
    return validation.RequestError(
        (
            (
                "body",
                f"this is MLflow's scoring format ({fmt}): send it to POST /invocations, or send "
                '{"instances": [customer, ...]} here',
            ),
        )
    )


# ---------------------------------------------------------------------------------------------
# The routes


def answer(_rows: Sequence[Any], scored: Scored) -> bytes:
    """MLflow's answer for a model whose predict returns one P(churn) per row."""
    return _encode({"predictions": scored.probabilities.tolist()})


@lru_cache(maxsize=1)
def _mlflow_version() -> str:
    try:
        return metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        return "unknown"


_INVOCATIONS_DOC: dict[str, Any] = {
    "summary": "Score rows with MLflow's scoring protocol (mlflow models serve)",
    "responses": {
        400: {"description": "invalid rows: the field and row named"},
        413: {"description": "body over CHURN_MAX_BODY_BYTES"},
        415: {"description": "Content-Type other than application/json or text/csv"},
        503: {"description": "no model loaded yet"},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            # The rows' schema is /predict's (filled in by `rows_schema` once the document is
            # built). A text/csv body (a header line naming the columns) is accepted too; it is
            # not listed, as no schema says which strings are valid CSV rows.
            "content": {JSON: {"example": {"dataframe_records": api_models.EXAMPLE_ROWS}}},
        }
    },
}


def rows_schema(doc: dict[str, Any], rows: dict[str, Any]) -> None:
    """Document /invocations' JSON body as MLflow's `dataframe_records` form holding /predict's
    rows (`rows`: the JSON schema of /predict's list of customers)."""
    body = doc["paths"]["/invocations"]["post"]["requestBody"]["content"][JSON]
    body["schema"] = {
        "type": "object",
        "required": ["dataframe_records"],
        "properties": {"dataframe_records": rows},
    }


router = APIRouter(tags=["mlflow"])  # /invocations: `create_app` adds CHURN_API_TOKEN's guard
status_router = APIRouter(tags=["mlflow"])  # /ping, /version: never guarded, as MLflow's
PATHS = frozenset({"/invocations", "/ping", "/version"})  # errors in MLflow's shape (serve/errors)


@router.post("/invocations", **_INVOCATIONS_DOC)
async def invocations(request: Request, services: ServicesDep) -> Response:
    content_type = request.headers.get("content-type")
    batcher, max_rows = services.batcher, services.settings.max_batch_size
    with batcher.arriving():
        body = await read_body(request, services.settings.max_body_bytes)
        alone = batcher.alone()
        if not alone:
            rows = parse(body, content_type, max_rows)
    if alone:
        rows, scored, content = await batcher.score_alone(
            lambda: parse(body, content_type, max_rows), answer
        )
    else:
        if services.holder.current is None:
            raise NotReadyError
        scored = await batcher.score(rows)
        content = answer(rows, scored)
    services.after_champion(rows, scored)
    return Response(content, media_type=JSON)


@status_router.get("/ping", summary="MLflow's health check: 200 once a model is loaded")
async def ping(services: ServicesDep) -> Response:
    if services.holder.current is None:
        raise NotReadyError
    return Response("\n", media_type=JSON)


@status_router.get("/version", summary="The MLflow version, as `mlflow models serve` answers it")
async def mlflow_version() -> Response:
    return Response(_mlflow_version(), media_type=JSON)
