"""The service checks a model's signature once, at load, instead of on every predict call.

`serve.holder.signature_checked` skips `PyFuncModel.predict`'s per-call schema enforcement only
for a model on which that enforcement provably hands the service's frames back unchanged; then
the scores are the pyfunc's, bit for bit. Any other model keeps the full `predict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from churn import data
from churn.loading import load_version
from churn.settings import MODEL_NAME
from churn.training import train
from serve import validation
from serve.holder import SignatureChecked, signature_checked
from serve.rows import frame
from tests.conftest import Store, small_params

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def frames(small_data: Path) -> list[pd.DataFrame]:
    """Frames as the service builds them, from both validation paths, of several sizes."""
    rows = data.features(data.read_parquet(small_data)).head(1_500).to_dict("records")
    rows[3]["TotalCharges"] = None  # a new customer
    out = []
    for size in (1, 7, 1_000):
        batch = validation.decode_batch(orjson.dumps({"instances": rows[:size]}), 1_000)
        assert batch is not None
        out += [batch.frame(), frame(list(batch))]
    return out


@pytest.mark.parametrize("kind", ["logistic_regression", "random_forest"])
def test_skipped_only_where_it_changes_nothing(
    kind: str, store: Store, small_data: Path, frames: list[pd.DataFrame]
) -> None:
    from mlflow.models.utils import _enforce_schema

    params = small_params().model_copy(update={"model_type": kind, "model_params": {}})
    result = train(params, store.client, store.uri, data_path=small_data, reports_dir=None)
    model = load_version(MODEL_NAME, result.version)
    checked = signature_checked(model)
    assert isinstance(checked, SignatureChecked), "the load-time check fell back"
    schema = model.metadata.get_input_schema()
    for f in frames:
        enforced = _enforce_schema(f.copy(), schema)
        pd.testing.assert_frame_equal(enforced, f, check_exact=True)
        assert np.array_equal(checked.predict(f), model.predict(f))


def test_any_other_model_keeps_the_full_predict(
    store: Store, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.types import ColSpec, Schema

    result = train(small_params(), store.client, store.uri, data_path=small_data, reports_dir=None)
    model = load_version(MODEL_NAME, result.version)
    meta = type(model.metadata)
    schema = model.metadata.get_input_schema()

    def replaced(name: str, to: str) -> Schema:
        return Schema(
            [ColSpec(to, c.name) if c.name == name else c for c in schema.inputs]  # type: ignore[union-attr]
        )

    other: list[tuple[str, Any]] = [
        ("no signature", lambda _self: None),
        ("tenure as a double", lambda _self: replaced("tenure", "double")),  # converts
        ("a column fewer", lambda _self: Schema(schema.inputs[1:])),  # drops one
        ("another order", lambda _self: Schema(schema.inputs[::-1])),  # reorders
    ]
    for why, get_schema in other:
        with monkeypatch.context() as m:
            m.setattr(meta, "get_input_schema", get_schema)
            assert signature_checked(model) is model, why
    # Enforcement that converts a dtype or a value without complaint (no schema of ours does).
    import mlflow.models.utils as mlflow_utils

    for why, change in (
        ("a dtype", lambda f: f.assign(tenure=f["tenure"].astype("float64"))),
        ("a value", lambda f: f.assign(Contract=pd.Series(["Two year"] * len(f), dtype=object))),
    ):
        with monkeypatch.context() as m:
            m.setattr(mlflow_utils, "_enforce_schema", lambda f, _s, change=change: change(f))
            assert signature_checked(model) is model, why
    with monkeypatch.context() as m:
        m.setattr(meta, "get_params_schema", lambda _self: object())
        assert signature_checked(model) is model, "a params schema"
    with monkeypatch.context() as m:  # an MLflow without the developer-stable attribute
        m.setattr(type(model), "_model_impl", property(lambda _self: None))
        assert signature_checked(model) is model
    assert isinstance(signature_checked(model), SignatureChecked)
