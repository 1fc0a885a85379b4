"""pipeline.yml's steps, run as the workflow runs them: its `make` targets, in its order, in a
fresh clone, with GITHUB_STEP_SUMMARY pointed at a file. A promoted run, a run the gate refuses
(green, "champion kept"), and a run whose registry is unreachable (red)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import clean_env, fresh_clone
from tests.integration.test_workflows import load, run_targets

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_clone(tmp_path_factory.mktemp("workflow") / "churn-mlops")


def run_workflow(repo: Path, summary: Path, **env: str) -> list[tuple[str, int, str]]:
    """Each run step of pipeline.yml's job, stopping at the first failure as Actions does."""
    results = []
    for target in run_targets(load("pipeline.yml"), "retrain"):
        proc = subprocess.run(
            ["make", "--no-print-directory", target], cwd=repo, capture_output=True, text=True,
            timeout=900, env=clean_env(CI="true", GITHUB_STEP_SUMMARY=str(summary), **env),
        )  # fmt: skip
        results.append((target, proc.returncode, proc.stdout + proc.stderr))
        if proc.returncode != 0:
            break
    return results


def test_promoted_then_refused_then_unreachable(repo: Path, tmp_path: Path) -> None:
    # 1. Cold start: a fork with no secrets trains into the local store and promotes v1.
    first = tmp_path / "first.md"
    steps = run_workflow(repo, first)
    assert [(t, rc) for t, rc, _ in steps] == [
        ("setup", 0), ("data", 0), ("train", 0), ("promote-ci", 0),
    ], steps[-1][2][-3000:]  # fmt: skip
    text = first.read_text()
    assert "### Data\ndata: no copy of `data/customers.parquet` in the DVC remote" in text
    assert "### Train\n@challenger is churn v1 (run " in text
    assert "### Promotion\n**PROMOTED: @champion -> v1 (cold start)**" in text
    assert "| @champion | none (cold start) | - |" in text
    assert re.search(r"\| @challenger \| v1 \| auc=0\.\d{4} \|", text)
    assert "### Serving\n`champion: churn v1 (auc=" in text
    assert "### Lineage of @champion\n```text\nalias          : @champion" in text
    assert "data_md5       : " in text and "(data/customers.parquet matches)" in text
    assert (repo / "mlflow.db").is_file() and (repo / "mlartifacts").is_dir()  # the artifact

    # 2. A change that retrains but cannot beat the champion: the gate refuses, the job is green.
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("threshold: 0.5", "threshold: 0.45"))
    second = tmp_path / "second.md"
    steps = run_workflow(repo, second)
    assert [(t, rc) for t, rc, _ in steps][-1] == ("promote-ci", 0), steps[-1][2][-3000:]
    out = steps[-1][2]
    assert "GATE FAILED: needs >= " in out
    assert "promote: the gate kept the current champion (GATE FAILED" in out
    text = second.read_text()
    assert "### Train\n@challenger is churn v2 (run " in text
    assert "### Promotion\n**champion kept**: GATE FAILED: needs >= " in text
    assert re.search(r"\| @champion \| v1 \| auc=0\.\d{4} \|", text)
    assert re.search(r"\| @challenger \| v2 \| auc=0\.\d{4} \|", text)
    assert "`champion: churn v1 (auc=" in text and "@challenger=v2" in text

    # 3. Any other failure fails the job: here the registry is unreachable (promote.py exit 4).
    third = tmp_path / "third.md"
    dead = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        ["make", "--no-print-directory", "promote-ci"], cwd=repo, capture_output=True,
        text=True, timeout=300,
        env=clean_env(CI="true", GITHUB_STEP_SUMMARY=str(third), MLFLOW_TRACKING_URI=dead),
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"tracking server {dead} is unreachable" in proc.stderr
    assert "**FAILED**: promote.py exited 4" in third.read_text()
