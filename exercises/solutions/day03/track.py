"""Day 3 reference solution: one run with params, a metric and a tag."""

from __future__ import annotations

import mlflow


def log_training(
    tracking_uri: str, experiment: str, params: dict[str, object], auc: float, data_md5: str
) -> str:
    """Record one run (params, metric auc, tag data_md5); return its run id."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params(params)
        mlflow.log_metric("auc", auc)
        mlflow.set_tag("data_md5", data_md5)
    return str(run.info.run_id)
