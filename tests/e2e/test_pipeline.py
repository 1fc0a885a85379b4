"""The README's quickstart on a fresh clone: `make pipeline` from nothing to a promoted champion."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import _git, clean_env

pytestmark = pytest.mark.e2e


def make(clone: Path, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", target], cwd=clone, env=clean_env(), capture_output=True, text=True, timeout=900
    )


def test_make_pipeline_on_a_fresh_clone(clone: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    start = time.monotonic()
    first = make(clone, "pipeline")
    first_s = time.monotonic() - start
    assert first.returncode == 0, first.stdout + first.stderr
    assert "PROMOTED: @champion -> v1 (cold start)" in first.stdout
    assert first.stdout.splitlines()[-1].startswith("champion: churn v1 (auc=")

    uri = f"sqlite:///{clone / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("churn", "champion")
    run = client.get_run(champion.run_id)

    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    (out,) = lock["stages"]["prepare"]["outs"]
    assert out["path"] == "data/customers.parquet"
    assert run.data.tags["data_md5"] == out["md5"]
    assert run.data.tags["mlflow.source.git.commit"] == _git("rev-parse", "HEAD", cwd=clone)
    assert run.data.tags["git_dirty"] == "false"
    # The generator is deterministic: the clone rebuilt exactly the data the commit records.
    assert _git("status", "--porcelain", "dvc.lock", cwd=clone) == ""

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/churn@champion")
    info = mlflow.models.get_model_info("models:/churn@champion")
    example = mlflow.models.Model.load(info.model_uri).load_input_example(
        mlflow.artifacts.download_artifacts(info.model_uri)
    )
    proba = model.predict(example)
    assert len(proba) == len(example) > 0
    assert ((proba >= 0) & (proba <= 1)).all()

    # Nothing changed: DVC skips both stages and no new version appears.
    start = time.monotonic()
    second = make(clone, "pipeline")
    second_s = time.monotonic() - start
    assert second.returncode == 0, second.stdout + second.stderr
    assert "no @challenger alias set: nothing to promote" in second.stdout
    assert [int(mv.version) for mv in client.search_model_versions("name='churn'")] == [1]
    print(
        f"\nmake pipeline on a fresh clone: {first_s:.1f} s (with setup), again: {second_s:.1f} s"
    )


def test_pipeline_retrains_into_a_new_tracking_store(clone: Path, tmp_path: Path) -> None:
    """DVC says 'up to date', but a new store has no model for this data: train into it."""
    if not (clone / "reports" / "metrics.json").exists():
        assert make(clone, "pipeline").returncode == 0
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    result = subprocess.run(
        ["make", "pipeline"],
        cwd=clone,
        env=clean_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "was trained on this data" in result.stderr
    assert "PROMOTED: @champion -> v1 (cold start)" in result.stdout


def dvc(clone: Path, *args: str) -> str:
    result = subprocess.run(
        [str(clone / ".venv" / "bin" / "dvc"), *args],
        cwd=clone,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_dvc_metrics_plots_params_and_the_offline_remote(clone: Path) -> None:
    if not (clone / "reports" / "metrics.json").exists():
        assert make(clone, "pipeline").returncode == 0
    metrics = dvc(clone, "metrics", "show")
    assert "reports/metrics.json" in metrics and "auc" in metrics and "log_loss" in metrics
    dvc(clone, "plots", "show", "--out", "plots-html")
    assert (clone / "plots-html" / "index.html").stat().st_size > 0
    params = clone / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("seed: 42", "seed: 43"))
    try:
        assert "seed" in dvc(clone, "params", "diff")
    finally:
        params.write_text(original)
    # The local default remote: push, lose the data and the cache, pull it back byte-identical.
    data = clone / "data" / "customers.parquet"
    before = data.read_bytes()
    dvc(clone, "push")
    data.unlink()
    shutil.rmtree(clone / ".dvc" / "cache")
    dvc(clone, "pull")
    assert data.read_bytes() == before
