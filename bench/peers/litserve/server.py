"""LitServe 0.2 serving the champion with batching (`make bench-peers`).

    BENCH_MODEL_DIR=<downloaded @champion> python server.py PORT

Requests are MLflow's `{"dataframe_records": [...]}`; LitServe gathers up to `max_batch_size`
requests (waiting at most `batch_timeout`), and `batch` concatenates their rows into one frame
for a single `predict` call, `unbatch` splitting the probabilities back per request.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import litserve as ls
import mlflow.pyfunc
import numpy as np
import pandas as pd


class ChurnAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = mlflow.pyfunc.load_model(os.environ["BENCH_MODEL_DIR"])

    # No annotation on `request`: LitServe hands the annotation to FastAPI as the body's type,
    # and a postponed (string) one makes FastAPI read a query parameter instead (422).
    def decode_request(self, request) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
        return list(request["dataframe_records"])

    def batch(self, inputs: list[list[dict[str, Any]]]) -> tuple[pd.DataFrame, list[int]]:
        return pd.DataFrame([row for rows in inputs for row in rows]), [len(r) for r in inputs]

    def predict(self, x: Any) -> Any:
        if isinstance(x, tuple):  # a batch
            frame, sizes = x
            return np.asarray(self.model.predict(frame), dtype=np.float64), sizes
        return np.asarray(self.model.predict(pd.DataFrame(x)), dtype=np.float64)

    def unbatch(self, output: tuple[np.ndarray, list[int]]) -> list[np.ndarray]:
        probabilities, sizes = output
        return np.split(probabilities, np.cumsum(sizes)[:-1])

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return {"predictions": output.tolist()}


if __name__ == "__main__":
    api = ChurnAPI(max_batch_size=64, batch_timeout=0.002)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False)
