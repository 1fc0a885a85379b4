"""Day 4 reference solution: rollback as a swap of two pre-read pointers."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
PREV_CHAMPION = "prev-champion"


def _version(client: MlflowClient, name: str, alias: str) -> int:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        raise LookupError(f"@{alias} is not set on model {name!r}: nothing to roll back") from exc


def rollback(client: MlflowClient, name: str = "churn") -> tuple[int, int]:
    """Swap @champion and @prev-champion of model `name`; return (demoted, restored)."""
    # Both reads before any write: a missing alias must leave the registry untouched.
    champion = _version(client, name, CHAMPION)
    previous = _version(client, name, PREV_CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, str(previous))
    client.set_registered_model_alias(name, PREV_CHAMPION, str(champion))
    client.set_model_version_tag(name, str(champion), "rolled_back", "true")
    return champion, previous
