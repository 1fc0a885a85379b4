"""Day 3 checks: the learner's log_training() against a fresh SQLite store, read back with
MlflowClient.get_run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.tracking import _tracking_service, fluent

from exercises.harness import NotReached, Report, function, load, sqlite_store

FILE = "track.py"
PARAMS = {"C": 0.5, "max_iter": 200, "model": "logreg"}
AUC, MD5 = 0.8421, "3f2a9c1d7e4b5a6f3f2a9c1d7e4b5a6f"


@contextlib.contextmanager
def _restored() -> Iterator[None]:
    """The learner sets the process's tracking URI and experiment: put them back afterwards."""
    uri = _tracking_service.utils._tracking_uri
    experiment = fluent._active_experiment_id
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        _tracking_service.utils._tracking_uri = uri
        fluent._active_experiment_id = experiment


def run(path: Path, report: Report) -> None:
    log_training = function(load(path), "log_training")
    with sqlite_store() as (uri, client):
        found: list[Run] = []

        def logs() -> str | None:
            with _restored():
                run_id = log_training(uri, "churn-day3", dict(PARAMS), AUC, MD5)
            if not isinstance(run_id, str):
                return f"log_training must return the run id (a str): returned {run_id!r}"
            found.append(client.get_run(run_id))
            return None

        report.run("log a run", logs)
        for name, check in [
            ("experiment", lambda: _experiment(client, found)),
            ("params", lambda: _params(found)),
            ("metric auc", lambda: _metric(found)),
            ("tag data_md5", lambda: _tag(found)),
            ("run status", lambda: _finished(found)),
        ]:
            report.run(name, check)


def _experiment(client: MlflowClient, found: list[Run]) -> str | None:
    exp = client.get_experiment(_run(found).info.experiment_id)
    if exp.name != "churn-day3":
        return f"the run must be in experiment 'churn-day3': found it in {exp.name!r}"
    return None


def _params(found: list[Run]) -> str | None:
    got = _run(found).data.params
    want = {k: str(v) for k, v in PARAMS.items()}
    if got != want:
        return f"the run's params must be {want}: found {got}"
    return None


def _metric(found: list[Run]) -> str | None:
    got = _run(found).data.metrics.get("auc")
    if got != AUC:
        return f"the run must have metric auc={AUC}: found {got}"
    return None


def _tag(found: list[Run]) -> str | None:
    got = _run(found).data.tags.get("data_md5")
    if got != MD5:
        return f"the run must have tag data_md5={MD5}: found {got!r}"
    return None


def _finished(found: list[Run]) -> str | None:
    status = _run(found).info.status
    if status != "FINISHED":
        return f"the run must end FINISHED (use `with mlflow.start_run()`): it is {status}"
    return None


def _run(found: list[Run]) -> Run:
    if not found:
        raise NotReached  # log_training itself failed: reported once, above
    return found[0]
