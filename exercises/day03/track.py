"""Day 3 exercise: put a training run on the record.

Write `log_training(tracking_uri, experiment, params, auc, data_md5)` that records one run in
MLflow and returns its run id:

  1. in the experiment named `experiment` (created if it does not exist: mlflow.set_experiment);
  2. every entry of `params` as a param (mlflow.log_params);
  3. `auc` as the metric "auc" (mlflow.log_metric);
  4. `data_md5` as the tag "data_md5" (mlflow.set_tag), so the run names the data it saw;
  5. the run ends FINISHED (use `with mlflow.start_run() as run:`).

Use the tracking_uri you are given (mlflow.set_tracking_uri), never ./mlflow.db: `make check
DAY=3` passes a fresh SQLite store and reads your run back with MlflowClient.get_run.
"""

from __future__ import annotations

import mlflow


def log_training(
    tracking_uri: str, experiment: str, params: dict[str, object], auc: float, data_md5: str
) -> str:
    """Record one run (params, metric auc, tag data_md5); return its run id."""
    mlflow.set_tracking_uri(tracking_uri)
    # TODO: set the experiment, start a run, log params, the metric and the tag
    raise NotImplementedError
