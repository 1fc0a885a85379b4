"""Corrupt and hostile artifacts: refused by the service (the old model keeps serving), by
promote.py's re-evaluation, by batch scoring (`python -m churn score`) and by drift (exit 3, one
line, nothing written), and never deserialised.

Protection proved: churn/loading.py checks a version's MLmodel against what train.py writes
(sklearn flavor, skops, churn/model_types.py's trusted types) and strips its `code` dir before
anything is loaded; the reloader keeps the old model when loading fails; score and drift load
through it too (`verified_copy`, `load_verified`), a refusal being one line and exit 3. With
plain `mlflow.pyfunc.load_model` both hostile versions below load, and their payloads run (their
marker files appear): MLflow takes the format and the trusted types from the artifact itself.

Crafted versions (tests/reliability/hostile.py `craft`, CRAFTED below) keep the genuine, checked
model.skops and make MLflow's loader open something else: `python_function.data` naming a pickle
in a directory without MLmodel (MLflow assumes pickle), a directory with its own pickle MLmodel,
a file outside the model (absolute, `..`), `model_path` naming another file, loader options
train.py never writes; or their model loads and answers NaN, two columns or an exception. Before
churn/loading.py opened the checked file itself, four of them ran their pickle inside the service,
drift and the re-evaluation, and seven were swapped in by the service, every /predict then a 500.
Now each is refused by the check or by the smoke score (`loading.smoke_score`): the old version
keeps answering 200, the commands exit 3 with one line, and no marker file appears.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import promote
from churn import evaluate, ledger
from tests.reliability import hostile
from tests.reliability.conftest import POLL_S, Stack, _model_dir, _register_dir
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


# Crafted (hostile.craft) -> the start of the reason, as REASONS.
CRAFTED = {
    "data-names-a-pickle": "UntrustedModelError: models:/churn/{v} points python_function.data "
    "at '…/model.pkl', not at 'model.skops': refusing to load it",
    "data-names-a-directory": "UntrustedModelError: models:/churn/{v} points "
    "python_function.data at 'payload', not at 'model.skops': refusing to load it",
    "data-is-absolute": "UntrustedModelError: models:/churn/{v} points python_function.data "
    "at '…/absolute.pkl', not at 'model.skops': refusing to load it",
    "data-climbs-out": "UntrustedModelError: models:/churn/{v} points python_function.data "
    "at '…/dotdot.pkl', not at 'model.skops': refusing to load it",
    "model-path-elsewhere": "UntrustedModelError: models:/churn/{v} points "
    "python_function.model_path at 'model.pkl', not at 'model.skops': refusing to load it",
    "model-config": "UntrustedModelError: models:/churn/{v} sets python_function options "
    "train.py never writes (model_config): refusing to load it",
    "predict-fn-proba": "UntrustedModelError: models:/churn/{v} names predict function "
    "'predict_proba', not 'predict': refusing to load it",
    "nan-scores": "ModelSmokeError: models:/churn/{v} does not score 5 known rows with "
    "probabilities (it answered values that are not finite numbers): refusing to use it",
    "predict-raises": "ModelSmokeError: models:/churn/{v} fails to score 5 known rows "
    "(ValueError: matmul: ",
}


@pytest.fixture(scope="module")
def crafted(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """hostile.craft's versions, registered from copies of the best good version."""
    import mlflow

    work = tmp_path_factory.mktemp("crafted")
    client = stack.client()
    mlflow.set_tracking_uri(stack.uri)
    mlflow.set_registry_uri(stack.uri)
    try:
        source = _model_dir(client, stack.good[-1], work / "good")
        made = hostile.craft(source, work, stack.markers)
        assert sorted(made) == sorted(CRAFTED)
        return {what: _register_dir(client, stack.uri, path, what) for what, path in made.items()}
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def versions(stack: Stack, crafted: dict[str, int]) -> dict[str, int]:
    """Every damaged and crafted version, by name."""
    return {**stack.bad, **crafted}


def no_payload_ran(markers: Path) -> None:
    assert sorted(p.name for p in markers.iterdir()) == []


@pytest.mark.parametrize("damage", sorted(REASONS | CRAFTED))
def test_the_service_refuses_a_damaged_version_and_keeps_serving(
    stack: Stack, versions: dict[str, int], damage: str
) -> None:
    good = stack.good[0]
    stack.serve(good)
    bad = versions[damage]
    failures = stack.service.model_info()["reload"]["failures"]
    stack.set_aliases(champion=bad)
    resp = stack.service.reload()
    body = resp.json()
    assert (resp.status_code, body["outcome"]) == (503, "failed"), body
    detail = body["detail"]
    reason = (REASONS | CRAFTED)[damage].format(v=bad)
    assert detail.startswith(f"loading v{bad} failed: {reason}"), detail
    assert detail.endswith(f"; still serving v{good}")
    assert "\n" not in detail and leaks(detail) is None  # no trace, no server-side path
    no_payload_ran(stack.markers)
    # Still answering, with the old version, while polls try the bad one again.
    for _ in range(4):
        answer = stack.service.post("/predict", json=_one_row(stack))
        assert answer.status_code == 200 and answer.json()["model"]["version"] == good
        time.sleep(POLL_S / 2)
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


def test_crafted_versions_are_refused_by_promote_score_and_drift(
    stack: Stack, crafted: dict[str, int], tmp_path: Path
) -> None:
    """Each crafted version as @challenger (promote.py's re-evaluation), as --model-uri (batch
    scoring) and as @champion (drift's predictions): exit 3, one line naming the reason, nothing
    written, no payload run. Run by the warm race workers (the scripts' own `main`)."""
    good = stack.good[0]
    client = stack.client()
    decisions = len(ledger.history(client))

    def run(*commands: tuple[str, list[str]]) -> list[tuple[int, str, str]]:
        answers = stack.racers.run_each(list(commands), [0.0] * len(commands))
        return [(a["code"], a["out"], a["err"]) for a in answers]

    try:
        for what, bad in sorted(crafted.items()):
            out = tmp_path / what
            reason = CRAFTED[what].format(v=bad).split(": ", 1)[1]
            stack.set_aliases(champion=good, challenger=bad)
            reevaluate = [
                "--tracking-uri",
                stack.uri,
                "--reevaluate",
                "--holdout",
                str(stack.holdout),
            ]
            score = ["score", "--input", str(stack.data), "--output", str(out / "scores")]
            score += ["--model-uri", f"models:/churn/{bad}", "--tracking-uri", stack.uri]
            promoted, scored = run(("promote", reevaluate), ("churn", score))
            stack.set_aliases(champion=bad)
            drift = ["drift", "--reference", str(stack.data), "--current", str(stack.holdout)]
            drift += ["--out-dir", str(out / "drift"), "--tracking-uri", stack.uri]
            [drifted] = run(("churn", drift))
            expected = {
                "promote": (
                    promoted,
                    f"promote.py: error: could not load @challenger v{bad} (models:/churn/{bad}) "
                    f"to re-evaluate it: {reason}",
                    "; register a loadable @challenger",
                ),
                "score": (
                    scored,
                    f"churn score: error: could not load models:/churn/{bad}: {reason}",
                    "; score with another version (--model-uri)",
                ),
                "drift": (
                    drifted,
                    f"churn drift: error: could not load models:/churn/{bad}: {reason}",
                    "; point @champion at a loadable version",
                ),
            }
            for command, ((code, stdout, stderr), start, end) in expected.items():
                context = (what, command, stderr)
                assert code == 3 and "Traceback" not in stderr, context
                [line] = [line for line in stderr.splitlines() if "error" in line.lower()]
                assert line.startswith(start) and line.endswith(end), context
                assert leaks(line) is None and stdout == "", context
            assert not out.exists(), what  # no scores, no drift report
            no_payload_ran(stack.markers)
    finally:
        stack.serve(good)
    assert len(ledger.history(client)) == decisions
    assert stack_aliases(stack) == {"champion": good}


def _run_of(stack: Stack, version: int) -> str:
    return str(stack.client().get_model_version("churn", str(version)).run_id)


def stack_aliases(stack: Stack) -> dict[str, int]:
    from churn.registry_reads import aliases

    return aliases(stack.client())


def _one_row(stack: Stack) -> dict[str, object]:
    from serve.api_models import EXAMPLE_ROWS

    return {"instances": EXAMPLE_ROWS[:1]}
