"""BentoML 1.4 serving the champion with adaptive batching (`make bench-peers`).

    BENCH_MODEL_DIR=<downloaded @champion> bentoml serve service:Churn --host 127.0.0.1 --port N

The model is the @champion's MLflow artifact, loaded with `mlflow.pyfunc` (the way a BentoML
user serves an MLflow model without importing it into BentoML's store); `batchable=True` lets
BentoML's dispatcher merge concurrent requests' rows into one `predict` call.

The rows come as a list of records, not a `pd.DataFrame` parameter: BentoML 1.4.40's dispatcher
sizes a batched DataFrame by its `.shape` (a tuple) and fails every batch ("unsupported operand
type(s) for +: 'int' and 'tuple'"); a list is sized by its length.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import mlflow.pyfunc
import numpy as np
import pandas as pd


@bentoml.service(workers=1)
class Churn:
    def __init__(self) -> None:
        self.model = mlflow.pyfunc.load_model(os.environ["BENCH_MODEL_DIR"])

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=1000)
    def predict(self, data: list[dict[str, Any]]) -> list[float]:
        return np.asarray(self.model.predict(pd.DataFrame(data)), dtype=np.float64).tolist()
