"""pipeline.yml's steps, run as the workflow runs them: its jobs in order (decide, then promote
when the decision says so), each job's `make` targets in its order, in a fresh clone, with
GITHUB_STEP_SUMMARY pointed at a file. A decision made stale before the promote job (refused,
exit 3), a promoted run, a run the gate refuses (green, "champion kept"), and a run whose
registry is unreachable (red)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import clean_env, fresh_clone
from tests.integration.test_workflows import load

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_clone(tmp_path_factory.mktemp("workflow") / "churn-mlops")


_OUTPUT_EXPR = re.compile(r"\$\{\{ (steps|needs)\.([\w-]+)\.outputs\.([\w-]+) \}\}")
_IF_EXPR = re.compile(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) == '([^']*)' \}\}")
_JOB_IF = re.compile(
    r"\$\{\{ needs\.([\w-]+)\.outputs\.([\w-]+) == '([^']*)' && !inputs\.dry_run \}\}"
)
Results = list[tuple[str, int, str]]


def _value(expr: str, outputs: dict[str, dict[str, str]], jobs: dict[str, dict[str, str]]) -> str:
    m = _OUTPUT_EXPR.fullmatch(expr)
    assert m, f"the test cannot evaluate `{expr}`"
    return (outputs if m[1] == "steps" else jobs)[m[2]][m[3]]


def run_job(
    repo: Path, summary: Path, job: dict[str, Any], jobs: dict[str, dict[str, str]], **env: str
) -> tuple[Results, dict[str, str]]:
    """Each run step of one job, as Actions runs it: a step's `if:` on an earlier step's outputs
    (written to its own $GITHUB_OUTPUT), its `env:` from those outputs and the job's `env:` from
    the needed jobs' outputs are evaluated; any other expression fails the test rather than be
    skipped (secrets and inputs come from `env`). Stops at the first failure. Returns the steps
    and the job's outputs."""
    results: Results = []
    outputs: dict[str, dict[str, str]] = {}
    job_env = {
        key: _value(value, outputs, jobs)
        for key, value in job.get("env", {}).items()
        if "needs." in value
    }
    steps = [s for s in job["steps"] if "run" in s]
    for n, step in enumerate(steps):
        target = step["run"].split()[1]
        if "if" in step:
            m = _IF_EXPR.fullmatch(step["if"])
            assert m, f"the test cannot evaluate `if: {step['if']}`"
            if outputs.get(m[1], {}).get(m[2]) != m[3]:
                results.append((target, -1, "skipped"))
                continue
        step_env = {**env, **job_env}
        for key, value in step.get("env", {}).items():
            step_env[key] = _value(value, outputs, jobs)
        out_file = summary.with_suffix(f".{target}.out{n}")
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
    job_outputs = {k: _value(v, outputs, jobs) for k, v in job.get("outputs", {}).items()}
    return results, job_outputs


def run_workflow(
    repo: Path,
    summary: Path,
    between: Callable[[dict[str, str]], None] | None = None,
    **env: str,
) -> Results:
    """pipeline.yml's jobs in order: a job whose `if:` (on the needed job's outputs and the
    dry_run input, DRY_RUN here) is false is skipped, as is every job after a failed one.
    `between(decide's outputs)` runs after the decide job: what could happen while a promotion
    waits for its reviewers."""
    results: Results = []
    jobs: dict[str, dict[str, str]] = {}
    for name, job in load("pipeline.yml")["jobs"].items():
        if "if" in job:
            m = _JOB_IF.fullmatch(job["if"])
            assert m, f"the test cannot evaluate `if: {job['if']}`"
            dry_run = env.get("DRY_RUN", "") == "true"
            if jobs[m[1]].get(m[2]) != m[3] or dry_run:
                skipped = [s["run"].split()[1] for s in job["steps"] if "run" in s]
                results += [(target, -1, "skipped") for target in skipped]
                continue
        if results and results[-1][1] > 0:
            break
        steps, jobs[name] = run_job(repo, summary, job, jobs, **env)
        results += steps
        if name == "decide" and between is not None:
            between(jobs[name])
    return results


def _client(repo: Path) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo}/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# The first model of the clone is trained here (the next test reuses it): minutes on a busy host.
@pytest.mark.timeout(1200)
def test_a_decision_made_stale_while_waiting_is_refused(repo: Path, tmp_path: Path) -> None:
    """Between the decision and the approved promote job @champion moved (here: set by hand to
    the challenger): the promote job moves nothing and says why in one line (exit 3)."""
    summary = tmp_path / "stale.md"
    seen: dict[str, str] = {}

    def someone_moves_champion(decided: dict[str, str]) -> None:
        seen.update(decided)
        _client(repo).set_registered_model_alias("churn", "champion", decided["challenger"])

    steps = run_workflow(repo, summary, someone_moves_champion, SNAPSHOT="2026-10")
    assert seen == {"decision": "promote", "champion": "none", "challenger": "1"}
    assert [(t, rc) for t, rc, _ in steps] == [
        ("setup", 0), ("data", 0), ("drift-ci", 0), ("retrain", -1), ("train", 0),
        ("decide-ci", 0), ("setup", 0), ("promote-ci", 2),
    ], steps[-1][2][-3000:]  # fmt: skip
    line = (
        "the registry changed since the decision (@champion unset -> v1): nothing was promoted; "
        "run the pipeline again to decide on what is there now"
    )
    # make exits 2 for any failed recipe; the step's own code (3: registry state) is in its line.
    error, made = steps[-1][2].strip().splitlines()[-2:]
    assert error == f"deploy/ci.py: error: {line}"
    assert re.fullmatch(r"make: \*\*\* \[Makefile:\d+: promote-ci\] Error 3", made), made
    text = summary.read_text()
    assert "### Data\ndata: no copy of `data/customers.parquet` in the DVC remote" in text
    assert "### Decision\n**WOULD PROMOTE: @champion -> v1 (cold start)**: the promote job" in text
    assert f"### Promotion\n**REFUSED**: {line}" in text
    client = _client(repo)
    assert client.get_registered_model("churn").aliases == {"champion": 1, "challenger": 1}
    assert "validated_by" not in client.get_model_version("churn", "1").tags  # not promoted
    # Put the registry back as the decision found it, for the test that follows.
    client.delete_registered_model_alias("churn", "champion")


# Three runs of the workflow (each trains and re-scores) and a dead store: over 10 min when the
# host is shared (it ran out of the default 600 s during the first run).
@pytest.mark.timeout(2700)
def test_promoted_then_refused_then_unreachable(repo: Path, tmp_path: Path) -> None:
    # 1. Cold start: a fork with no secrets trains into the local store, decides, and the
    # promote job (no reviewers here) promotes v1.
    first = tmp_path / "first.md"
    steps = run_workflow(repo, first, SNAPSHOT="2026-10")
    assert [(t, rc) for t, rc, _ in steps] == [
        ("setup", 0), ("data", 0), ("drift-ci", 0), ("retrain", -1), ("train", 0),
        ("decide-ci", 0), ("setup", 0), ("promote-ci", 0),
    ], steps[-1][2][-3000:]  # fmt: skip
    text = first.read_text()
    assert "### Decision\n**WOULD PROMOTE: @champion -> v1 (cold start)**: the promote job " in text
    assert "### Serving now\n`champion: none yet (run make pipeline)`" in text
    assert text.index("### Decision") < text.index("### Promotion")
    assert "### Drift\nno @champion yet: nothing to compare 2026-10 with" in text
    # (The stale-decision test ran first in this clone: its data is in the local DVC cache now.)
    assert "### Train\n@challenger is churn v1 (run " in text
    assert "### Promotion\n**PROMOTED: @champion -> v1 (cold start)**" in text
    assert "| @champion | none (cold start) | - |" in text
    assert re.search(r"\| @challenger \| v1 \| auc=0\.\d{4} \|", text)
    # The moves as churn.promotion returned them (the summary never reads printed lines).
    assert "Aliases moved: @champion unset -> v1, @challenger v1 -> unset (ledger record `" in text
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
        ("drift-ci", 0), ("retrain", -1), ("train", 0), ("decide-ci", 0), ("setup", -1),
        ("promote-ci", -1),
    ], steps[5][2][-3000:]  # fmt: skip
    assert "GATE FAILED: needs >= " in steps[5][2]
    text = second.read_text()
    assert "### Train\n@challenger is churn v2 (run " in text
    assert "### Drift\nno drift past the alert threshold between @champion v1's training " in text
    assert "DRIFT OK: 0 alert" in text
    assert "### Decision\n**champion kept**: GATE FAILED: needs >= " in text
    assert "### Promotion" not in text
    assert re.search(r"Gate on the same holdout: `paired diff auc=[+-]0\.\d{4}  95% CI ", text)
    assert re.search(r"\| @champion \| v1 \| auc=0\.\d{4} \|", text)
    assert re.search(r"\| @challenger \| v2 \| auc=0\.\d{4} \|", text)
    assert "### Serving now\n`champion: churn v1 (auc=" in text and "@challenger=v2" in text
    # The refusal is on the record, as promote.py records one.
    kept = subprocess.run(
        [".venv/bin/python", "-m", "churn", "history", "--limit", "1"], cwd=repo,
        capture_output=True, text=True, timeout=120, env=clean_env(),
    ).stdout  # fmt: skip
    assert re.search(r"promote +kept +v1 kept +auc ", kept), kept

    # 3. A month that drifted past the alert threshold: the workflow retrains on it, and the
    # gate compares champion and challenger on that month's holdout.
    drifted = tmp_path / "drifted.md"
    steps = run_workflow(repo, drifted, SNAPSHOT="2027-07")
    assert [(t, rc) for t, rc, _ in steps][2:6] == [
        ("drift-ci", 0), ("retrain", 0), ("train", 0), ("decide-ci", 0),
    ], steps[-1][2][-3000:]  # fmt: skip
    assert all(rc in (0, -1) for _, rc, _ in steps), steps[-1][2][-3000:]
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
    assert "**FAILED**: the promotion exited 4: " in third.read_text()
    proc = subprocess.run(
        ["make", "--no-print-directory", "decide-ci"], cwd=repo, capture_output=True,
        text=True, timeout=300, env=clean_env(CI="true", MLFLOW_TRACKING_URI=dead),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # make's code for a failed recipe
    assert re.search(r"decide-ci\] Error 4$", proc.stderr.strip()), proc.stderr
    assert f"tracking server {dead} is unreachable" in proc.stderr
