"""Day 10 reference solution: retrain on no champion, on drift, or on age, in that order."""

from __future__ import annotations

from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

ALERT = 0.25
MAX_AGE_DAYS = 30


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None


def should_retrain(
    client: MlflowClient, psi_by_feature: dict[str, float], now: datetime, name: str = "churn"
) -> tuple[bool, str]:
    """(retrain?, why) for the current champion of `name` and this month's drift."""
    champion = _champion(client, name)
    if champion is None:
        return True, "no champion: train the first model"
    if psi_by_feature:
        feature, worst = max(psi_by_feature.items(), key=lambda kv: kv[1])
        if worst >= ALERT:
            return True, f"drift: {feature} PSI {worst:.2f} >= {ALERT}"
    started = client.get_run(str(champion.run_id)).info.start_time
    age = (now - datetime.fromtimestamp(started / 1000, tz=UTC)).days
    if age > MAX_AGE_DAYS:
        return True, f"age: champion v{champion.version} trained {age} days ago (> {MAX_AGE_DAYS})"
    return False, f"champion v{champion.version} is {age} days old and no feature drifts"
