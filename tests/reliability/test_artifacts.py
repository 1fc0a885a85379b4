"""Corrupt and hostile artifacts: refused by the service (the old model keeps serving) and by
promote.py's re-evaluation (exit 3, one line, nothing written), and never deserialised.

Protection proved: churn/loading.py checks a version's MLmodel against what train.py writes
(sklearn flavor, skops, only churn.model.TRUSTED_TYPES) and strips its `code` directory before
anything is loaded; the reloader keeps the old model when loading fails. With plain
`mlflow.pyfunc.load_model` both hostile versions below load, and their payloads run (their
marker files appear): MLflow takes the format and the trusted types from the artifact itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import promote
from churn import evaluate, ledger
from tests.reliability.conftest import Stack
from tests.reliability.fuzz_checks import leaks

pytestmark = pytest.mark.integration

# What is damaged -> the start of the reason the service gives (after "loading vN failed: ").
REASONS = {
    "missing-estimator": "FileNotFoundError: [Errno 2] No such file or directory: '…/model.skops'",
    "garbage-estimator": "BadZipFile: File is not a zip file",
    "no-mlmodel": "UntrustedModelError: models:/churn/{v} has no MLmodel file: not a model",
    "pickle": "UntrustedModelError: models:/churn/{v} is serialised as 'cloudpickle', not 'skops'",
    "skops-trusts-its-payload": "UntrustedModelError: models:/churn/{v} asks skops to trust "
    "types train.py never writes (tests.reliability.hostile.Canary)",
}


def no_payload_ran(markers: Path) -> None:
    assert sorted(p.name for p in markers.iterdir()) == []


@pytest.mark.parametrize("damage", sorted(REASONS))
def test_the_service_refuses_a_damaged_version_and_keeps_serving(stack: Stack, damage: str) -> None:
    good = stack.good[0]
    stack.serve(good)
    bad = stack.bad[damage]
    failures = stack.service.model_info()["reload"]["failures"]
    stack.set_aliases(champion=bad)
    resp = stack.service.reload()
    body = resp.json()
    assert (resp.status_code, body["outcome"]) == (503, "failed"), body
    detail = body["detail"]
    assert detail.startswith(f"loading v{bad} failed: " + REASONS[damage].format(v=bad)), detail
    assert detail.endswith(f"; still serving v{good}")
    assert "\n" not in detail and leaks(detail) is None  # no trace, no server-side path
    no_payload_ran(stack.markers)
    # Still answering, with the old version, and the failure is visible.
    answer = stack.service.post("/predict", json=_one_row(stack))
    assert answer.status_code == 200 and answer.json()["model"]["version"] == good
    info = stack.service.model_info()
    assert info["served"]["version"] == good
    assert info["reload"]["failures"] >= failures + 1
    assert info["reload"]["last_error"]["version"] == bad
    stack.serve(good)  # polling keeps failing on it until @champion moves back


@pytest.mark.parametrize("damage", ["garbage-estimator", "pickle", "skops-trusts-its-payload"])
def test_promote_reevaluate_refuses_a_damaged_challenger_and_writes_nothing(
    stack: Stack, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = stack.good[0], stack.bad[damage]
    stack.serve(good, challenger=bad)
    client = stack.client()
    decisions = len(ledger.history(client))
    evaluations = client.get_experiment_by_name(evaluate.EVALUATION_EXPERIMENT)
    runs_before = (
        len(client.search_runs([evaluations.experiment_id])) if evaluations is not None else 0
    )
    capsys.readouterr()

    code = promote.main(
        ["--tracking-uri", stack.uri, "--reevaluate", "--holdout", str(stack.holdout)]
    )

    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("promote.py: error:")]
    assert errors == [line for line in err.splitlines() if "error" in line.lower()], err
    [line] = errors
    assert line.startswith(
        f"promote.py: error: could not load @challenger v{bad} (models:/churn/{bad}) to "
        "re-evaluate it: "
    )
    assert line.endswith("; register a loadable @challenger")
    assert "Traceback" not in err
    no_payload_ran(stack.markers)
    # Nothing written: aliases, ledger and evaluation runs as they were.
    assert stack_aliases(stack) == {"champion": good, "challenger": bad}
    assert len(ledger.history(client)) == decisions
    evaluations = client.get_experiment_by_name(evaluate.EVALUATION_EXPERIMENT)
    if evaluations is not None:
        assert len(client.search_runs([evaluations.experiment_id])) == runs_before
    stack.set_aliases(champion=good)


def stack_aliases(stack: Stack) -> dict[str, int]:
    from churn.registry import aliases

    return aliases(stack.client())


def _one_row(stack: Stack) -> dict[str, object]:
    from serve.schema import EXAMPLE_ROWS

    return {"instances": EXAMPLE_ROWS[:1]}
