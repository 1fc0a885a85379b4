"""The GitHub Actions workflows, checked as far as anything can be without a runner.

Every `run:` step is exactly one `make` target (so a workflow only ever runs what a developer
can run), every action is pinned to a full commit SHA, permissions are least-privilege and every
job has a timeout; actionlint, hadolint and `docker compose config` run clean. The e2e suite
(tests/e2e/test_workflow_pipeline.py) then runs pipeline.yml's targets in a fresh clone.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
MAKE_STEP = re.compile(r"make ([a-z][a-z0-9-]*)")


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc  # type: ignore[no-any-return]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.MULTILINE))


def run_targets(doc: dict[str, Any], job: str) -> list[str]:
    return [
        MAKE_STEP.fullmatch(step["run"].strip())[1]  # type: ignore[index]
        for step in doc["jobs"][job]["steps"]
        if "run" in step
    ]


@pytest.mark.parametrize("name", ["ci.yml", "pipeline.yml"])
def test_every_step_is_a_make_target_or_a_pinned_action(name: str) -> None:
    doc = load(name)
    assert doc["permissions"] == {"contents": "read"}
    targets = make_targets()
    for job_name, job in doc["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 60, job_name
        assert "permissions" not in job or job["permissions"] == {"contents": "read"}
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), step
            if "run" in step:
                m = MAKE_STEP.fullmatch(step["run"].strip())
                assert m, f"{name}/{job_name}: `{step['run']}` is not a single make target"
                assert m[1] in targets, f"{name}: make {m[1]} is not in the Makefile"
            else:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
                if "setup-uv" in step["uses"]:
                    assert step["with"]["enable-cache"] is True
                    assert step["with"]["cache-dependency-glob"] == "uv.lock"
    text = (WORKFLOWS / name).read_text()
    assert "${{ inputs." not in "".join(
        line for line in text.splitlines() if line.strip().startswith("run:")
    )


def test_ci_lints_and_tests_on_push_and_pull_request() -> None:
    doc = load("ci.yml")
    assert set(doc["on"]) == {"push", "pull_request"}
    assert run_targets(doc, "lint") == ["lint", "actionlint", "docker-lint", "k8s-lint"]
    assert run_targets(doc, "test") == ["test"]


def test_pipeline_triggers_inputs_and_serialisation() -> None:
    doc = load("pipeline.yml")
    on = doc["on"]
    assert on["push"]["branches"] == ["main"]
    for path in ("params.yaml", "dvc.lock", "train.py", "churn/**", "data/**"):
        assert path in on["push"]["paths"]
    assert on["schedule"][0]["cron"].split()[4] == "1"  # weekly
    inputs = on["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"epsilon", "dry_run", "snapshot"}
    assert inputs["dry_run"]["type"] == "boolean"
    assert doc["concurrency"] == {"group": "pipeline-registry", "cancel-in-progress": False}
    job = doc["jobs"]["decide"]
    assert run_targets(doc, "decide") == [
        "setup", "data", "drift-ci", "retrain", "train", "decide-ci",
    ]  # fmt: skip
    # Retraining on drift: only when the drift step says so, on the month it checked.
    retrain = next(step for step in job["steps"] if step.get("run") == "make retrain")
    assert retrain["if"] == "${{ steps.drift.outputs.drift == 'true' }}"
    assert retrain["env"] == {"SNAPSHOT": "${{ steps.drift.outputs.snapshot }}"}
    assert next(s for s in job["steps"] if s.get("run") == "make drift-ci")["id"] == "drift"
    assert next(s for s in job["steps"] if s.get("run") == "make decide-ci")["id"] == "decide"
    env = job["env"]
    assert env["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    assert env["GATE_EPSILON"] == "${{ inputs.epsilon }}"
    assert env["DRY_RUN"] == "${{ inputs.dry_run }}"
    assert env["SNAPSHOT"] == "${{ inputs.snapshot }}"
    # The decide job hands the promote job what the gate scores on (and a fork's local store).
    handover = job["steps"][-1]
    assert handover["uses"].startswith("actions/upload-artifact@")
    handed = set(handover["with"]["path"].split())
    assert {"data/customers.parquet", "params.yaml", "dvc.lock", "mlflow.db"} <= handed


def test_promotion_waits_for_the_production_environment() -> None:
    """Deciding and promoting are separate jobs: the alias moves only in the job bound to the
    `production` environment (whose required reviewers approve it), only on a decision to
    promote, never on a dry run, and with the versions the decision saw."""
    doc = load("pipeline.yml")
    decide, promote = doc["jobs"]["decide"], doc["jobs"]["promote"]
    assert "environment" not in decide
    assert promote["environment"] == "production"
    assert promote["needs"] == "decide"
    assert promote["if"] == ("${{ needs.decide.outputs.decision == 'promote' && !inputs.dry_run }}")
    assert decide["outputs"] == {
        key: f"${{{{ steps.decide.outputs.{key} }}}}"
        for key in ("decision", "champion", "challenger")
    }
    assert run_targets(doc, "promote") == ["setup", "promote-ci"]
    env = promote["env"]
    assert env["DECIDED_CHAMPION"] == "${{ needs.decide.outputs.champion }}"
    assert env["DECIDED_CHALLENGER"] == "${{ needs.decide.outputs.challenger }}"
    assert env["GATE_EPSILON"] == "${{ inputs.epsilon }}"
    assert "DRY_RUN" not in env
    download = next(s for s in promote["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"]["name"] == decide["steps"][-1]["with"]["name"]
    upload = promote["steps"][-1]
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert "env.MLFLOW_TRACKING_URI == ''" in upload["if"] and "always()" in upload["if"]
    assert {"mlflow.db", "mlartifacts/"} <= set(upload["with"]["path"].split())


def test_actionlint_hadolint_and_compose_config_pass() -> None:
    for argv in (
        [str(BIN / "actionlint"), "-color=false"],
        [str(BIN / "hadolint"), "--failure-threshold", "info", "Dockerfile"],
        [str(BIN / "docker-compose"), "-f", "compose.yaml", "config", "--quiet"],
        [str(BIN / "docker-compose"), "-f", "compose.yaml", "--env-file", "deploy/team.env",
         "config", "--quiet"],
    ):  # fmt: skip
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{argv[0]}: {proc.stdout}{proc.stderr}"


def test_compose_orders_start_up_by_health() -> None:
    import json

    def services(*extra: str) -> dict[str, Any]:
        out = subprocess.run(
            [str(BIN / "docker-compose"), "-f", "compose.yaml", *extra, "config", "--format",
             "json"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        return json.loads(out)["services"]  # type: ignore[no-any-return]

    default = services()
    assert set(default) == {"mlflow", "api", "pipeline"}
    # The tracking server must accept the Host header its clients send (MLflow 3 answers 403
    # to unknown hosts, while /health, the healthcheck, is exempt and stays green).
    from urllib.parse import urlparse

    from tests.integration.test_k8s import mlflow_host_check

    allowed = default["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    host = urlparse(default["api"]["environment"]["MLFLOW_TRACKING_URI"]).netloc
    assert host == "mlflow:5000" and mlflow_host_check()(allowed, host)
    assert mlflow_host_check()(allowed, "localhost:5000")
    assert not mlflow_host_check()(allowed, "evil.example:5000")
    for name in ("api", "pipeline"):
        assert default[name]["depends_on"]["mlflow"]["condition"] == "service_healthy"
        assert default[name]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert default["api"]["build"]["target"] == "runtime"
    assert default["pipeline"]["build"]["target"] == "pipeline"
    assert "sqlite:////mlflow/mlflow.db" in default["mlflow"]["command"]
    assert default["mlflow"]["volumes"][0]["target"] == "/mlflow"

    team = services("--env-file", "deploy/team.env")
    assert {"postgres", "s3", "s3-bucket"} <= set(team)
    command = team["mlflow"]["command"]
    assert command[command.index("--backend-store-uri") + 1].startswith("postgresql+psycopg2://")
    assert command[command.index("--artifacts-destination") + 1].startswith("s3://")
    depends = team["mlflow"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["s3-bucket"]["condition"] == "service_completed_successfully"
