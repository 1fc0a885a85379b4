"""`python -m serve.example`: a ready-to-paste curl for POST /predict (used by `make demo`).

The body is `serve.schema.EXAMPLE_REQUEST`, the same example the OpenAPI docs show, so the
command in the README, the docs and the demo is one request that the tests send.
"""

from __future__ import annotations

import argparse
import json
import sys


def curl(host: str = "127.0.0.1", port: int = 8000) -> str:
    from serve.schema import EXAMPLE_REQUEST

    body = json.dumps(EXAMPLE_REQUEST)
    assert "'" not in body  # it is pasted inside single quotes
    return (
        f"curl -s -X POST http://{host}:{port}/predict \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.example", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)
    base = f"http://{args.host}:{args.port}"
    sys.stdout.write(
        f"\nStarting the API on {base} (docs: {base}/docs). Once {base}/ready says "
        '"ready": true (a few seconds), score two customers from another shell:\n\n'
        f"{curl(args.host, args.port)}\n\n"
    )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
