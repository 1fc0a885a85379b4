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

from serve.api_models import EXAMPLE_ROWS
from serve.http_errors import NotReadyError
from serve.rows import frame
from serve.validation import fast_rows


class Predictor(Protocol):
    """`mlflow.pyfunc.PyFuncModel` as far as serving needs it."""

    def predict(self, data: pd.DataFrame) -> Any: ...


class SignatureChecked:
    """A pyfunc model whose signature check was done once, at load, for the service's frames.

    `PyFuncModel.predict` enforces the model's input signature on every call, then calls the
    flavour's predict (`_model_impl.predict`, which MLflow marks developer-stable). For a
    1,000-row batch the check costs about as much as scoring (~1.5 ms: it rebuilds the frame
    column by column). The service never hands the model anything but frames it built itself
    (`frame` below, `Batch.frame`) from rows validated more strictly than the signature: always
    the same columns, in the same order, with the same dtypes (object columns holding only the
    allowed strings). The check depends only on those. So at load it is run on such frames, and
    only if it hands them back unchanged is it skipped from then on (`signature_checked`); for
    any other model (another schema, type-hint signatures, params) the full `predict` stays.
    tests/integration/test_signature_checked.py proves the probabilities are the pyfunc's, to
    the bit.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._predict = model._model_impl.predict

    def predict(self, data: pd.DataFrame) -> Any:
        return self._predict(data)


def signature_checked(model: Any) -> Predictor:
    """`model`, or a `SignatureChecked` of it when its signature check is a no-op on the
    service's frames (see SignatureChecked)."""
    try:
        from mlflow.models.utils import _enforce_schema

        meta = model.metadata
        schema_ = meta.get_input_schema()
        if (
            schema_ is None
            or meta.get_params_schema() is not None
            or meta._is_signature_from_type_hint()
            or meta._is_type_hint_from_example()
        ):
            return model
        fast = SignatureChecked(model)
        for sample in _samples():
            enforced = _enforce_schema(sample.copy(), schema_)
            # `equals`: the same columns in the same order, the same dtypes, the same values.
            if not (isinstance(enforced, pd.DataFrame) and enforced.equals(sample)):
                return model
            if not np.array_equal(
                np.asarray(fast.predict(sample)), np.asarray(model.predict(sample))
            ):
                return model
        return fast
    except Exception:  # anything unexpected (an MLflow upgrade): the full predict, always right
        return model


def _samples() -> list[pd.DataFrame]:
    """Frames as the service builds them: both paths, a missing TotalCharges, one and many rows."""
    rows = [dict(r) for r in EXAMPLE_ROWS]
    rows.append({**rows[0], "TotalCharges": None})
    batch = fast_rows(rows)
    assert batch is not None
    return [batch.frame(), frame(list(batch)), fast_rows(rows[:1]).frame()]  # type: ignore[union-attr]


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
