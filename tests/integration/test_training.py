"""train -> register -> promote -> rollback -> lineage on a real SQLite registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import promote
from churn import data, settings
from churn.lineage import format_lineage, lineage
from churn.provenance import file_md5, git_state
from churn.training import train
from tests.conftest import ROOT, Store, small_params

pytestmark = pytest.mark.integration


def test_train_twice_is_deterministic_and_the_gate_refuses_a_tie(
    store: Store, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    client = store.client
    r1 = train(small_params(), client, store.uri, data_path=small_data, reports_dir=tmp_path / "r")
    assert r1.version == 1 and store.aliases() == {"challenger": 1}
    assert 0.70 < r1.metrics["auc"] < 0.95

    assert promote.main([]) == 0  # cold start
    r2 = train(small_params(), client, store.uri, data_path=small_data, reports_dir=tmp_path / "r")
    assert r2.version == 2
    assert store.aliases() == {"champion": 1, "challenger": 2}
    # Same params + same data => same metrics and the same predictions.
    assert r1.metrics == r2.metrics
    rows = data.features(data.read_parquet(small_data)).head(200)
    p1 = mlflow.pyfunc.load_model("models:/churn/1").predict(rows)
    p2 = mlflow.pyfunc.load_model("models:/churn/2").predict(rows)
    np.testing.assert_array_equal(p1, p2)
    assert p1.shape == (200,) and ((p1 >= 0) & (p1 <= 1)).all()

    capsys.readouterr()
    assert promote.main([]) == 1  # a tie is not an improvement of epsilon
    assert capsys.readouterr().out.splitlines()[-1].startswith("GATE FAILED: needs >= ")
    assert store.aliases() == {"champion": 1, "challenger": 2}

    # A better model (less regularised on this data) is promoted over the champion.
    r3 = train(small_params(C=0.001), client, store.uri, data_path=small_data, reports_dir=None)
    assert r3.metrics["auc"] != r1.metrics["auc"]


def test_run_records_everything_needed_to_rebuild_it(
    store: Store, small_data: Path, tmp_path: Path
) -> None:
    client = store.client
    reports = tmp_path / "reports"
    result = train(small_params(), client, store.uri, data_path=small_data, reports_dir=reports)
    run = client.get_run(result.run_id)
    md5 = file_md5(small_data)

    assert set(run.data.metrics) == set(settings.METRICS)
    assert run.data.params["model.type"] == "logistic_regression"
    assert run.data.params["seed"] == "7"
    assert run.data.tags["data_md5"] == md5 == result.data_md5
    commit, dirty = git_state(ROOT)
    assert run.data.tags["mlflow.source.git.commit"] == commit
    assert run.data.tags["git_dirty"] == str(dirty).lower()
    assert run.data.tags["training_data"].startswith("customers.parquet (generator")
    # The dataset is logged as a run input.
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["customers.parquet"]
    # Plots, signature and input example travel with the run / model.
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {"plots/roc.png", "plots/confusion.png"}
    import mlflow

    info = mlflow.models.get_model_info(f"models:/churn/{result.version}")
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs.inputs] == list(
        __import__("churn.schema", fromlist=["x"]).FEATURE_NAMES
    )
    assert info.saved_input_example_info is not None
    assert info.flavors["sklearn"]["serialization_format"] == "skops"
    # Version tags carry the data hash too (what the service reports without reading the run).
    mv = client.get_model_version("churn", str(result.version))
    assert mv.tags["data_md5"] == md5
    # DVC metrics / plots files.
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["auc"] == pytest.approx(result.metrics["auc"], abs=1e-6)
    assert (reports / "plots" / "roc.csv").read_text().startswith("fpr,tpr\n")
    assert (reports / "plots" / "confusion.csv").read_text().startswith("actual,predicted\n")


def test_lineage_traces_the_champion_to_commit_and_data(
    store: Store, small_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from churn.__main__ import main as churn_main

    result = train(small_params(), store.client, store.uri, data_path=small_data, reports_dir=None)
    assert promote.main([]) == 0
    li = lineage(store.client, "champion", data_file=small_data)
    assert li.version == result.version and li.run_id == result.run_id
    assert li.data_matches is True
    lines = format_lineage(li)
    assert lines[0] == "alias          : @champion"
    assert lines[1] == "version        : churn v1"
    assert lines[2] == f"run            : {result.run_id}"
    assert lines[6] == f"data_md5       : {result.data_md5}  (data/customers.parquet matches)"
    assert lines[8].startswith(f"reproduce      : git checkout {li.commit[:12]} && dvc checkout")

    capsys.readouterr()
    assert churn_main(["lineage", "--alias", "challenger"]) == 3
    assert capsys.readouterr().err == (
        "churn lineage: error: alias @challenger not set on 'churn': set aliases are @champion\n"
    )


def test_register_best_run_for_real(
    store: Store, small_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import register

    weak = train(small_params(C=0.0005), store.client, store.uri, small_data, reports_dir=None)
    strong = train(small_params(), store.client, store.uri, small_data, reports_dir=None)
    best = max((weak, strong), key=lambda r: r.metrics["auc"])
    capsys.readouterr()
    assert register.main(["--best", "--metric", "auc", "--alias", "audit"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"best run by auc: {best.run_id}  auc={best.metrics['auc']:.4f}",
        f"registered churn v3, source run {best.run_id}",
        "@audit -> v3",
    ]
    mv = store.client.get_model_version("churn", "3")
    assert mv.tags["data_md5"] == best.data_md5  # lineage carries over to the new version


@pytest.mark.parametrize(
    ("model_type", "params"),
    [
        ("random_forest", {"n_estimators": 20, "max_depth": 6, "min_samples_leaf": 5}),
        ("hist_gradient_boosting", {"max_iter": 30, "learning_rate": 0.1}),
    ],
)
def test_other_classifiers_train_and_load_through_pyfunc(
    store: Store, small_data: Path, model_type: str, params: dict[str, object]
) -> None:
    import mlflow

    from churn.settings import DataParams, Params

    p = Params(seed=7, data=DataParams(rows=3_000), model_type=model_type, model_params=params)
    result = train(p, store.client, store.uri, small_data, reports_dir=None)
    assert result.metrics["auc"] > 0.7
    assert store.client.get_run(result.run_id).data.params["model.type"] == model_type
    proba = mlflow.pyfunc.load_model(f"models:/churn/{result.version}").predict(
        data.features(data.read_parquet(small_data)).head(20)
    )
    assert proba.shape == (20,) and ((proba >= 0) & (proba <= 1)).all()
