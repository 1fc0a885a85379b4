"""A process that runs promote.py's or rollback.py's main() when told to, at a given instant.

Interpreter and MLflow start-up take seconds and vary from process to process; paying them
before the race (a test first sends each worker a --dry-run) is what lets several real runs
start within a millisecond of each other.
Protocol (JSON lines): stdin {"script": "promote", "argv": [...], "at": <unix time>};
stdout {"code": .., "out": .., "err": .., "began": .., "ended": ..}.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time

from mlflow import MlflowClient  # noqa: F401  (seconds of imports, paid before any race)

import promote
import rollback

SCRIPTS = {"promote": promote.main, "rollback": rollback.main}


def main() -> int:
    for line in sys.stdin:
        command = json.loads(line)
        time.sleep(max(0.0, command["at"] - time.time()))
        out, err = io.StringIO(), io.StringIO()
        began = time.time()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = SCRIPTS[command["script"]](command["argv"])
        result = {"code": code, "out": out.getvalue(), "err": err.getvalue()}
        print(json.dumps({**result, "began": began, "ended": time.time()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
