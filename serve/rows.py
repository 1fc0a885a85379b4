"""Validated rows: the columns a request carries (from `churn/schema.py`), a batch kept as
columns (`Batch`), and the model's input frame built from either."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from itertools import chain, compress
from typing import Any

import numpy as np
import pandas as pd

from churn import schema
from churn.schema import Column, Kind

ID_MAX_LENGTH = 64
REQUEST_COLUMNS: tuple[Column, ...] = tuple(c for c in schema.COLUMNS if c.kind is not Kind.LABEL)
FEATURE_NAMES: tuple[str, ...] = tuple(c.name for c in REQUEST_COLUMNS if c.kind is not Kind.ID)
# A validated row; its fields are `Customer`'s, read the same way (`row.Contract`).
FastRow: Any = namedtuple("FastRow", [*FEATURE_NAMES, schema.ID_COLUMN])  # type: ignore[misc]
FEATURE_COLUMNS: tuple[Column, ...] = tuple(c for c in REQUEST_COLUMNS if c.kind is not Kind.ID)
_FRAME_COLUMNS = pd.Index([c.name for c in FEATURE_COLUMNS])  # as pandas labels a dict's columns
# The dtype each feature has in the frames the model was trained on (churn/schema.py): object
# for the categories, int64, float64 (NaN for a missing TotalCharges).
FRAME_DTYPES: dict[str, np.dtype[Any]] = {c.name: np.dtype(c.pandas_dtype) for c in FEATURE_COLUMNS}


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
        """The same frame as `frame(list(self))`, without going through rows."""
        n = len(self)
        arrays: list[Any] = []
        # `fromiter` with the dtype given: one C loop a column (`np.array` first inspects every
        # value to find a dtype, ~3x slower on 1,000 rows).
        for column, values in zip(FEATURE_COLUMNS, self.columns, strict=True):
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
                    for c, a in zip(FEATURE_COLUMNS, arrays, strict=True)
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


def frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Validated rows -> the model's input frame, built column by column in schema order.

    A `Batch` (rows the column-wise validation accepted, serve/validation.py) already holds its
    columns and builds the same frame from them (tests/unit/test_schema_fast.py)."""
    if isinstance(rows, Batch):
        return rows.frame()
    columns: dict[str, Any] = {}
    for name, dtype in FRAME_DTYPES.items():
        values = [getattr(r, name) for r in rows]
        if dtype.kind == "O":
            # An explicit object Series: pandas 3 would infer its `str` dtype from a bare array,
            # and the model was trained (and its signature inferred) on object columns.
            columns[name] = pd.Series(values, dtype=object)
        else:
            # None (TotalCharges of a new customer) becomes NaN in a float64 column.
            columns[name] = np.array(
                [np.nan if v is None else v for v in values] if dtype.kind == "f" else values,
                dtype=dtype,
            )
    return pd.DataFrame(columns, copy=False)


def frame_of_requests(requests: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The rows of many requests as one frame, in order (the prediction log's writer builds one
    a flush): batches kept as columns are joined as columns, anything else row by row."""
    if requests and all(isinstance(r, Batch) for r in requests):
        return Batch.concat(requests).frame()  # type: ignore[arg-type]
    return frame(list(chain.from_iterable(requests)))
