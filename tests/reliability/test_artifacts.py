"""Corrupt and hostile artifacts: refused by the service (the old model keeps serving), by
promote.py's re-evaluation, by batch scoring (`python -m churn score`) and by drift (exit 3, one
line, nothing written), and never deserialised.

Protection proved: churn/loading.py checks a version's MLmodel against what train.py writes
(sklearn flavor, skops, only churn.model.TRUSTED_TYPES) and strips its `code` directory before
anything is loaded; the reloader keeps the old model when loading fails; score and drift load
through it too (`verified_copy`, `load_verified`), a refusal being one line and exit 3. With
plain `mlflow.pyfunc.load_model` both hostile versions below load, and their payloads run (their
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


# Batch scoring refuses every damage before Spark starts; drift refuses a damaged @champion.
CLI_RUNS = [("score", damage) for damage in sorted(REASONS)] + [("drift", "garbage-estimator")]


def test_score_and_drift_refuse_a_damaged_version_in_one_line_and_write_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    """`python -m churn score` and `python -m churn drift` against damaged versions: one as a
    user runs it (its own interpreter, every byte it writes to stderr checked), the others by
    the warm race workers (the same `main`, without paying seconds of imports each)."""
    client = stack.client()

    def drift_runs() -> int:
        exp = client.get_experiment_by_name("churn-drift")
        return len(client.search_runs([exp.experiment_id])) if exp is not None else 0

    def argv(command: str, damage: str) -> list[str]:
        out = tmp_path / f"{command}-{damage}"
        if command == "score":
            args = ["--input", str(stack.data), "--output", str(out)]
            args += ["--model-uri", f"models:/churn/{stack.bad[damage]}"]
        else:
            args = ["--reference", str(stack.data), "--current", str(stack.holdout)]
            args += ["--out-dir", str(out)]
        return [command, *args, "--tracking-uri", stack.uri]

    drift_before = drift_runs()
    # drift compares with @champion's predictions: make it the damaged one (the service keeps
    # serving the version it has).
    stack.set_aliases(champion=stack.bad["garbage-estimator"])
    results: dict[tuple[str, str], tuple[int, str, str]] = {}
    real = ("score", "garbage-estimator")
    try:
        rest = [run for run in CLI_RUNS if run != real]
        workers = len(stack.racers.procs)
        for i in range(0, len(rest), workers):
            batch = rest[i : i + workers]
            commands = [("churn", argv(*run)) for run in batch]
            answers = stack.racers.run_each(commands, [0.0] * len(batch))
            for run, answer in zip(batch, answers, strict=False):
                results[run] = (answer["code"], answer["out"], answer["err"])
        # Started with the stack (conftest `cold_score`), in its own interpreter.
        results[real] = stack.cold_score.result()
    finally:
        stack.cold_score.stop()
        stack.serve(stack.good[0])
    assert sorted(results) == sorted(CLI_RUNS)
    for (command, damage), (code, stdout, stderr) in results.items():
        what = (command, damage, stderr)
        bad = stack.bad[damage]
        assert (code, stdout) == (3, ""), what
        assert "Traceback" not in stderr, what
        errors = [line for line in stderr.splitlines() if "error" in line.lower()]
        reason = REASONS[damage].format(v=bad).removeprefix("UntrustedModelError: ")
        what_next = {
            "score": "score with another version (--model-uri)",
            "drift": "point @champion at a loadable version",
        }[command]
        assert len(errors) == 1, what
        [line] = errors
        assert line.startswith(
            f"churn {command}: error: could not load models:/churn/{bad}: {reason}"
        ), what
        assert line.endswith(f"; {what_next}"), what
        assert leaks(line) is None, what
        out = (
            stack.cold_score.out if (command, damage) == real else tmp_path / f"{command}-{damage}"
        )
        assert not out.exists(), what  # no scores, no report
    # Besides the error, the real process wrote only score's progress line.
    assert [line for line in results[real][2].splitlines() if "error" not in line] == [
        f"score: models:/churn/{stack.bad['garbage-estimator']} is churn "
        f"v{stack.bad['garbage-estimator']} (run {_run_of(stack, stack.bad['garbage-estimator'])})"
    ]
    no_payload_ran(stack.markers)
    assert drift_runs() == drift_before  # and no drift run logged


def _run_of(stack: Stack, version: int) -> str:
    return str(stack.client().get_model_version("churn", str(version)).run_id)


def stack_aliases(stack: Stack) -> dict[str, int]:
    from churn.registry import aliases

    return aliases(stack.client())


def _one_row(stack: Stack) -> dict[str, object]:
    from serve.schema import EXAMPLE_ROWS

    return {"instances": EXAMPLE_ROWS[:1]}
