"""Day 10 exercise: when to retrain.

Retraining on a calendar wastes runs; retraining only on complaints is too late. Write
`should_retrain(client, psi_by_feature, now, name="churn")` returning (decision, reason), first
rule that applies wins:

  1. no @champion on model `name` -> (True, "no champion: train the first model");
  2. a feature's PSI is 0.25 or more (alert) -> True, the reason names the feature with the
     largest PSI and its value, e.g. "drift: MonthlyCharges PSI 0.31 >= 0.25";
  3. the champion's training run started MORE than 30 days before `now` -> True, e.g.
     "age: champion v2 trained 45 days ago (> 30)"  (whole days, rounded down);
  4. otherwise -> False, e.g. "champion v2 is 12 days old and no feature drifts".

The champion's run: client.get_model_version_by_alias(name, "champion").run_id, then
client.get_run(run_id).info.start_time (milliseconds since the epoch, UTC). A missing alias
raises mlflow.exceptions.MlflowException. `make check DAY=10` builds real registries (runs
started 12, 30 and 45 days ago) and checks each rule and their order.
"""

from __future__ import annotations

from datetime import datetime

from mlflow import MlflowClient

ALERT = 0.25
MAX_AGE_DAYS = 30


def should_retrain(
    client: MlflowClient, psi_by_feature: dict[str, float], now: datetime, name: str = "churn"
) -> tuple[bool, str]:
    """(retrain?, why) for the current champion of `name` and this month's drift."""
    # TODO rule 1: read @champion (MlflowException when it is not set)
    # TODO rule 2: the largest PSI
    # TODO rule 3: the champion run's age in days
    raise NotImplementedError
