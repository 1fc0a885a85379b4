"""Train the churn model on data/customers.parquet, log it to MLflow and register a new version.

Run by `dvc repro` (the `train` stage) or by hand. Every knob lives in params.yaml; the run logs
params, held-out metrics, ROC and confusion plots, the dataset, the git commit and the data md5,
then registers a new version of `churn` and points @challenger at it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from churn import cli, settings, tracking


def main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    p = cli.parser(prog, __doc__ or "")
    p.add_argument("--params", type=Path, default=settings.PARAMS_FILE, help="params file")
    p.add_argument("--data", type=Path, default=settings.DATA_FILE, help="prepared data (parquet)")
    p.add_argument(
        "--reports", type=Path, default=settings.REPORTS_DIR, help="where DVC metrics/plots go"
    )
    args = p.parse_args(argv)

    def body() -> int:
        from churn.training import train

        params = settings.load_params(args.params)
        uri = settings.tracking_uri(args.tracking_uri)
        client = tracking.connect(uri)
        with tracking.store_errors(uri):
            result = train(
                params,
                client,
                uri,
                data_path=args.data,
                reports_dir=args.reports,
                progress=lambda msg: print(f"train: {msg}", file=sys.stderr, flush=True),
            )
        print(f"run_id: {result.run_id}")
        print(f"registered {settings.MODEL_NAME} v{result.version} as @{settings.CHALLENGER}")
        print("metrics: " + "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()))
        return 0

    return cli.run(prog, body)
