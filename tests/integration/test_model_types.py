"""A new model type is one registration (churn/model_types.py) plus its section in params.yaml:
settings validate it, training builds it, the loader trusts exactly what it lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from churn import data, model_types
from churn.loading import load_version, smoke_score
from churn.model import trusted_types
from churn.settings import ParamsError, load_params
from churn.training import train
from tests.conftest import ROOT, Store

pytestmark = pytest.mark.integration

TOY = model_types.ModelType(
    "decision_tree", "sklearn.tree:DecisionTreeClassifier", trusted=("sklearn.tree._tree.Tree",)
)


def params_with(tmp_path: Path, section: str) -> Path:
    """The repository's params.yaml, with model.type the toy and its section added."""
    text = (ROOT / "params.yaml").read_text()
    assert text.count("  type: logistic_regression\n") == 1
    text = text.replace(
        "  type: logistic_regression\n", f"  type: decision_tree\n  decision_tree:\n{section}"
    )
    text = text.replace("  rows: 20000", "  rows: 3000")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_a_toy_model_type_registered_in_one_place_validates_trains_and_loads(
    store: Store, small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    # Unknown before it is registered: the error lists the registry's names.
    path = params_with(tmp_path, "    max_depth: 5\n")
    with pytest.raises(ParamsError, match=r"model\.type 'decision_tree' is not one of logistic_re"):
        load_params(path)

    # The one registration.
    monkeypatch.setitem(model_types.MODEL_TYPES, TOY.name, TOY)

    params = load_params(path)
    assert (params.model_type, params.model_params) == ("decision_tree", {"max_depth": 5})
    # Its hyper-parameters are checked with the estimator's own rules, naming the key.
    with pytest.raises(ParamsError, match=r"^params.yaml: model.decision_tree.max_depth: must be"):
        load_params(params_with(tmp_path, "    max_depth: -1\n"))

    result = train(params, store.client, store.uri, small_data, reports_dir=None)
    assert result.metrics["auc"] > 0.6
    run = store.client.get_run(result.run_id)
    assert run.data.params["model.type"] == "decision_tree"
    assert run.data.params["model.decision_tree.max_depth"] == "5"

    # Logged with exactly its trusted types; loaded through the checked loader and smoke-scored.
    local = Path(str(store.client.download_artifacts(result.run_id, "model/MLmodel", tmp_path)))
    flavor = yaml.safe_load(local.read_text())["flavors"]["sklearn"]
    assert flavor["skops_trusted_types"] == trusted_types("decision_tree")
    assert "sklearn.tree._tree.Tree" in flavor["skops_trusted_types"]
    model = load_version("churn", result.version)
    smoke_score(model, "the toy")
    proba = model.predict(data.features(data.read_parquet(small_data)).head(10))
    assert proba.shape == (10,) and ((proba >= 0) & (proba <= 1)).all()
