"""Day 4 checks: the learner's rollback() on a real SQLite registry with three versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlflow import MlflowClient

from exercises.harness import NotReached, Report, function, load, sqlite_store

FILE = "rollback.py"
MODEL, NO_PREV = "churn", "churn-without-prev"


def _registry(client: MlflowClient, model: str, champion: int, prev: int | None) -> None:
    """`model` with versions 1..3 (registry entries only: rollback never loads a model)."""
    client.create_registered_model(model)
    experiment = client.create_experiment(model)
    for _ in range(3):
        run = client.create_run(experiment)
        client.create_model_version(model, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(model, "champion", str(champion))
    if prev is not None:
        client.set_registered_model_alias(model, "prev-champion", str(prev))


def _aliases(client: MlflowClient, model: str = MODEL) -> dict[str, int]:
    return {a: int(v) for a, v in client.get_registered_model(model).aliases.items()}


def run(path: Path, report: Report) -> None:
    rollback = function(load(path), "rollback")

    with sqlite_store() as (_, client):
        _registry(client, MODEL, champion=2, prev=1)
        result: list[object] = []
        report.run("swap @champion", lambda: _swaps(rollback, client, result))
        report.run("keep @prev-champion", lambda: _keeps_prev(client, result))
        report.run("return value", lambda: _returns(result))
        report.run("rolled_back tag", lambda: _tags(client, result))
        report.run("second rollback", lambda: _undoes(rollback, client))
        # A second model in the same store: creating a store takes seconds.
        _registry(client, NO_PREV, champion=3, prev=None)
        report.run("missing @prev-champion", lambda: _refuses(rollback, client))


def _swaps(
    rollback: Callable[..., object], client: MlflowClient, result: list[object]
) -> str | None:
    result.append(rollback(client, MODEL))
    found = _aliases(client).get("champion")
    if found != 1:
        return f"rollback must move @champion back to v1: found v{found}, expected v1"
    return None


def _keeps_prev(client: MlflowClient, result: list[object]) -> str | None:
    if not result:
        raise NotReached
    found = _aliases(client).get("prev-champion")
    if found != 2:
        return (
            "rollback must leave @prev-champion on the demoted champion: "
            f"found v{found}, expected v2"
        )
    return None


def _returns(result: list[object]) -> str | None:
    if not result:
        raise NotReached
    if result[0] != (2, 1):
        return f"rollback must return (demoted, restored) = (2, 1): returned {result[0]!r}"
    return None


def _tags(client: MlflowClient, result: list[object]) -> str | None:
    if not result:
        raise NotReached
    tag = client.get_model_version(MODEL, "2").tags.get("rolled_back")
    if tag != "true":
        return f"rollback must tag the demoted v2 rolled_back=true: found {tag!r}"
    return None


def _undoes(rollback: Callable[..., object], client: MlflowClient) -> str | None:
    rollback(client, MODEL)
    found = _aliases(client)
    if found != {"champion": 2, "prev-champion": 1}:
        return (
            "a second rollback must undo the first (@champion v2, @prev-champion v1): "
            f"found {_show(found)}"
        )
    return None


def _refuses(rollback: object, client: MlflowClient) -> str | None:
    assert callable(rollback)
    try:
        rollback(client, NO_PREV)
    except LookupError as exc:
        if "prev-champion" not in str(exc):
            return f"the LookupError must name the missing alias @prev-champion: said {exc!s}"
    except NotImplementedError:
        raise
    except Exception as exc:
        return (
            "with no @prev-champion rollback must raise LookupError: "
            f"raised {type(exc).__name__}: {exc}".splitlines()[0]
        )
    else:
        return "with no @prev-champion rollback must raise LookupError: it returned normally"
    found = _aliases(client, NO_PREV)
    if found != {"champion": 3}:
        return f"a refused rollback must change nothing: aliases now {_show(found)}"
    return None


def _show(aliases: dict[str, int]) -> str:
    return ", ".join(f"@{a} v{v}" for a, v in sorted(aliases.items())) or "no aliases"
