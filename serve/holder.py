"""What is served: an immutable `LoadedModel`, and the holder whose one reference is swapped.

Hot-swap rule: a new version is loaded completely beside the old one, then published with a
single reference assignment (`ModelHolder.swap`). A request reads that reference once
(`ModelHolder.score`) and uses that object for scoring *and* for the version it reports, so a
request never mixes two versions and never sees a half-loaded model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from churn import schema
from churn.schema import Kind
from serve.schema import Batch


class Predictor(Protocol):
    """`mlflow.pyfunc.PyFuncModel` as far as serving needs it."""

    def predict(self, data: pd.DataFrame) -> Any: ...


@dataclass(frozen=True)
class LoadedModel:
    """One model version, loaded and ready: never mutated after it is built."""

    name: str
    version: int
    run_id: str
    predictor: Predictor = field(repr=False, compare=False)
    threshold: float
    data_md5: str | None = None
    training_data: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    loaded_at: datetime | None = None
    source: str = ""

    def ref(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id}


@dataclass(frozen=True)
class Scored:
    model: LoadedModel
    probabilities: np.ndarray


class NotReadyError(RuntimeError):
    """No model is loaded yet."""


# The dtype each feature has in the frames the model was trained on (see churn/model.py).
_DTYPES: dict[str, Any] = {
    c.name: (object if c.kind is Kind.CATEGORY else np.dtype(c.pandas_dtype))
    for c in schema.FEATURES
}


def frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Validated rows -> the model's input frame, built column by column in schema order.

    A `Batch` (rows the column-wise validation accepted, serve/schema.py) already holds its
    columns and builds the same frame from them (tests/unit/test_schema_fast.py)."""
    if isinstance(rows, Batch):
        return rows.frame()
    columns: dict[str, Any] = {}
    for name, dtype in _DTYPES.items():
        values = [getattr(r, name) for r in rows]
        if dtype is object:
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


class ModelHolder:
    """Holds the current `LoadedModel`; readers never lock, the writer replaces the reference."""

    def __init__(self) -> None:
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def swap(self, new: LoadedModel) -> LoadedModel | None:
        """Publish `new`; returns the model it replaced."""
        with self._swap_lock:  # writers only; a reader's single read needs no lock
            old, self._current = self._current, new
        return old

    def clear(self) -> LoadedModel | None:
        """Serve nothing (a challenger whose alias was removed); returns what it held."""
        with self._swap_lock:
            old, self._current = self._current, None
        return old

    def score(self, rows: Sequence[Any]) -> Scored:
        """Score `rows` with the model current at the call: one read of the reference, one
        `predict` call. This is the step a micro-batcher would wrap."""
        model = self._current
        if model is None:
            raise NotReadyError("no model loaded")
        proba = np.asarray(model.predictor.predict(frame(rows)), dtype=np.float64).reshape(-1)
        if proba.shape[0] != len(rows):
            raise RuntimeError(
                f"model v{model.version} returned {proba.shape[0]} scores for {len(rows)} rows"
            )
        return Scored(model, proba)
