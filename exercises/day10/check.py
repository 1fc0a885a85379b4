"""Day 10 checks: the learner's should_retrain() on real registries whose champion's run
started a known number of days ago."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlflow import MlflowClient

from exercises.harness import Report, function, load, sqlite_store

FILE = "trigger.py"
MODEL = "churn"
NOW = datetime(2026, 9, 15, 12, 0, tzinfo=UTC)
CALM = {"MonthlyCharges": 0.08, "tenure": 0.02}
DRIFT = {"MonthlyCharges": 0.31, "tenure": 0.26, "Contract": 0.01}


def _champion(client: MlflowClient, model: str, days_ago: float | None) -> None:
    """Model `model`; with a champion (v1) whose run started `days_ago` days before NOW."""
    client.create_registered_model(model)
    if days_ago is None:
        return
    started = int((NOW - timedelta(days=days_ago)).timestamp() * 1000)
    run = client.create_run(client.create_experiment(model), start_time=started)
    client.create_model_version(model, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(model, "champion", "1")


# Each case: the champion's age in days (None: no champion), the drift, what must be decided,
# and words the reason must contain.
CASES: dict[str, tuple[float | None, dict[str, float], bool, list[str]]] = {
    "rule 1, no champion": (None, CALM, True, ["no champion"]),
    "rule 2, drift": (12, DRIFT, True, ["MonthlyCharges", "0.31"]),
    "rule 2, PSI exactly 0.25": (12, {"tenure": 0.25}, True, ["tenure"]),
    "rule 3, a 45-day-old champion": (45.5, CALM, True, ["45 days"]),
    "rule 3, exactly 30 days is not too old": (30, CALM, False, ["30 days"]),
    "rule 4, fresh and calm": (12, CALM, False, ["12 days"]),
    "order, drift before age": (45.5, DRIFT, True, ["drift", "MonthlyCharges"]),
}


def run(path: Path, report: Report) -> None:
    should_retrain = function(load(path), "should_retrain")

    def case(
        client: MlflowClient, n: int, days: float | None, psi: dict[str, float], want: bool,
        words: list[str],
    ) -> str | None:  # fmt: skip
        model = f"{MODEL}-{n}"  # one model per case: one store (creating a store takes seconds)
        _champion(client, model, days)
        result = should_retrain(client, dict(psi), NOW, model)
        if not (isinstance(result, tuple) and len(result) == 2):
            return f"should_retrain must return (bool, reason): returned {result!r}"
        decision, reason = result
        age = "no champion" if days is None else f"a champion {days:g} days old"
        if decision is not want:
            return f"with {age} and PSI {psi}: decided {decision!r}, expected {want}"
        missing = [w for w in words if w not in str(reason)]
        if missing:
            return f"with {age} and PSI {psi}: the reason {reason!r} must mention {missing}"
        return None

    with sqlite_store() as (_, client):
        for n, (name, (days, psi, want, words)) in enumerate(CASES.items()):
            report.run(name, functools.partial(case, client, n, days, psi, want, words))
