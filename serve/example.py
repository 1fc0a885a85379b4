"""`python -m serve.example`: a ready-to-paste curl for POST /predict (used by `make demo`).

With `--call` it also waits for the service to be ready and sends that request, printing the
answer: the last step of `make demo`, a real prediction from the served champion.

The body is `serve.api_models.EXAMPLE_REQUEST`, the same example the OpenAPI docs show, so the
command in the README, the docs and the demo is one request that the tests send.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def request_rows(frame: Any) -> list[dict[str, Any]]:
    """Data rows (a DataFrame in the schema's layout) as a client sends them: JSON types,
    NaN as null. Used by the benchmark and the end-to-end tests."""
    import math

    import numpy as np

    from churn import schema

    rows = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for name in (schema.ID_COLUMN, *schema.FEATURE_NAMES):
            value = record[name]
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif isinstance(value, np.integer):
                value = int(value)
            elif isinstance(value, np.floating):
                value = float(value)
            row[name] = value
        rows.append(row)
    return rows


def curl(host: str = "127.0.0.1", port: int = 8000) -> str:
    from serve.api_models import EXAMPLE_REQUEST

    body = json.dumps(EXAMPLE_REQUEST)
    assert "'" not in body  # it is pasted inside single quotes
    return (
        f"curl -s -X POST http://{host}:{port}/predict \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )


def call(base: str, timeout: float) -> int:
    """Wait (bounded) for /ready, then POST the example; print the answer. 0 on a 200."""
    import time

    import httpx

    from serve.api_models import EXAMPLE_REQUEST

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            sys.stderr.write(f"demo: {base}/ready did not answer 200 within {timeout:.0f} s\n")
            return 1
        time.sleep(0.25)
    resp = httpx.post(f"{base}/predict", json=EXAMPLE_REQUEST, timeout=10)
    sys.stdout.write(f"POST {base}/predict -> HTTP {resp.status_code}\n")
    sys.stdout.write(json.dumps(resp.json(), indent=2) + "\n\n")
    sys.stdout.write(f"The API keeps running on {base} (Ctrl-C to stop).\n")
    sys.stdout.flush()
    return 0 if resp.status_code == 200 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.example", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--call", action="store_true", help="wait for /ready, then send the request")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /ready")
    args = p.parse_args(argv)
    base = f"http://{args.host}:{args.port}"
    if args.call:
        return call(base, args.timeout)
    sys.stdout.write(
        f"\nStarting the API on {base} (docs: {base}/docs). Once {base}/ready says "
        '"ready": true (a few seconds), score two customers from another shell:\n\n'
        f"{curl(args.host, args.port)}\n\n"
    )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
