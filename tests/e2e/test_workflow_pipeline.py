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
from tests.integration.test_workflows import load

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_clone(tmp_path_factory.mktemp("workflow") / "churn-mlops")


_OUTPUT_EXPR = re.compile(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}")
_IF_EXPR = re.compile(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) == '([^']*)' \}\}")


def run_workflow(repo: Path, summary: Path, **env: str) -> list[tuple[str, int, str]]:
    """Each run step of pipeline.yml's job, as Actions runs it: a step's `if:` on an earlier
    step's outputs (written to its own $GITHUB_OUTPUT) and its `env:` from those outputs are
    evaluated; any other expression fails the test rather than be skipped. Stops at the first
    failure."""
    results: list[tuple[str, int, str]] = []
    outputs: dict[str, dict[str, str]] = {}
    steps = [s for s in load("pipeline.yml")["jobs"]["retrain"]["steps"] if "run" in s]
    for n, step in enumerate(steps):
        target = step["run"].split()[1]
        if "if" in step:
            m = _IF_EXPR.fullmatch(step["if"])
            assert m, f"the test cannot evaluate `if: {step['if']}`"
            if outputs.get(m[1], {}).get(m[2]) != m[3]:
                results.append((target, -1, "skipped"))
                continue
        step_env = dict(env)
        for key, value in step.get("env", {}).items():
            m = _OUTPUT_EXPR.fullmatch(value)
            assert m, f"the test cannot evaluate `{key}: {value}`"
            step_env[key] = outputs[m[1]][m[2]]
        out_file = summary.with_suffix(f".out{n}")
        out_file.touch()
        proc = subprocess.run(
            ["make", "--no-print-directory", target], cwd=repo, capture_output=True, text=True,
            timeout=900, env=clean_env(
                CI="true", GITHUB_STEP_SUMMARY=str(summary), GITHUB_OUTPUT=str(out_file),
                **step_env,
            ),
        )  # fmt: skip
        results.append((target, proc.returncode, proc.stdout + proc.stderr))
        if "id" in step:
            lines = out_file.read_text().splitlines()
            outputs[step["id"]] = dict(line.split("=", 1) for line in lines if "=" in line)
        if proc.returncode != 0:
            break
    return results


def test_promoted_then_refused_then_unreachable(repo: Path, tmp_path: Path) -> None:
    # 1. Cold start: a fork with no secrets trains into the local store and promotes v1.
    first = tmp_path / "first.md"
    steps = run_workflow(repo, first, SNAPSHOT="2026-10")
    assert [(t, rc) for t, rc, _ in steps] == [
        ("setup", 0), ("data", 0), ("drift-ci", 0), ("retrain", -1), ("train", 0),
        ("promote-ci", 0),
    ], steps[-1][2][-3000:]  # fmt: skip
    text = first.read_text()
    assert "### Drift\nno @champion yet: nothing to compare 2026-10 with" in text
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
    steps = run_workflow(repo, second, SNAPSHOT="2026-10")
    assert [(t, rc) for t, rc, _ in steps][2:] == [
        ("drift-ci", 0), ("retrain", -1), ("train", 0), ("promote-ci", 0),
    ], steps[-1][2][-3000:]  # fmt: skip
    out = steps[-1][2]
    assert "GATE FAILED: needs >= " in out
    assert "promote: the gate kept the current champion (GATE FAILED" in out
    text = second.read_text()
    assert "### Train\n@challenger is churn v2 (run " in text
    assert "### Drift\nno drift past the alert threshold between @champion v1's training " in text
    assert "DRIFT OK: 0 alert" in text
    assert "### Promotion\n**champion kept**: GATE FAILED: needs >= " in text
    assert re.search(r"Gate on the same holdout: `paired diff auc=[+-]0\.\d{4}  95% CI ", text)
    assert re.search(r"\| @champion \| v1 \| auc=0\.\d{4} \|", text)
    assert re.search(r"\| @challenger \| v2 \| auc=0\.\d{4} \|", text)
    assert "`champion: churn v1 (auc=" in text and "@challenger=v2" in text

    # 3. A month that drifted past the alert threshold: the workflow retrains on it, and the
    # gate compares champion and challenger on that month's holdout.
    drifted = tmp_path / "drifted.md"
    steps = run_workflow(repo, drifted, SNAPSHOT="2027-07")
    assert [(t, rc) for t, rc, _ in steps][2:] == [
        ("drift-ci", 0), ("retrain", 0), ("train", 0), ("promote-ci", 0),
    ], steps[-1][2][-3000:]  # fmt: skip
    text = drifted.read_text()
    assert "### Drift\n**drift** between the training data of @champion v1 and 2027-07" in text
    assert "DRIFT ALERT: " in text
    assert "params.yaml data.snapshot 2026-07 -> 2027-07" in steps[3][2]
    assert "### Train\nno @challenger" not in text
    assert re.search(r"Gate on the same holdout: `paired diff auc=[+-]0\.\d{4}  95% CI ", text)

    # 4. Any other failure fails the job: here the registry is unreachable (promote.py exit 4).
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
