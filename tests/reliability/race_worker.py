"""A process that runs promote.py's or rollback.py's main() when told to, at a given instant.

Interpreter and MLflow start-up take seconds and vary from process to process; paying them
before the race (a test first sends each worker a --dry-run) is what lets several real runs
start within a millisecond of each other.
Protocol (JSON lines): stdin {"script": "promote", "argv": [...], "at": <unix time>};
stdout {"code": .., "out": .., "err": .., "began": .., "ended": ..}.
Besides the scripts, `take-stale-lock` takes the registry lock the way every script does, after
pausing where it has just seen the lock stale until every racer has seen it (see its doc).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient  # noqa: F401  (seconds of imports, paid before any race)

import promote
import register
import rollback


def take_stale_lock(argv: list[str]) -> int:
    """argv: URI BARRIER_DIR RACERS DELAY_S HOLD_S. Take the registry lock, hold it HOLD_S and
    print when it was held; exit 3 with one line if refused.

    The client pauses right after its first read of the lock (the stale one: `registry_lock`
    reads it only when creating failed) until RACERS workers have read it, then DELAY_S more:
    every racer has decided that the lock is stale before any takes it over, the moment a
    takeover by plain delete-and-create lets them all in."""
    from mlflow import MlflowClient as Client

    from churn import registry_lock
    from churn.errors import RegistryStateError

    uri, barrier, racers, delay_s, hold_s = argv
    me = Path(barrier) / str(time.monotonic_ns())

    class Synchronised(Client):
        seen = False

        def get_registered_model(self, name: str) -> Any:
            model = super().get_registered_model(name)
            if name == registry_lock.LOCK_NAME and not self.seen:
                self.seen = True
                me.touch()
                deadline = time.monotonic() + 30
                while len(list(Path(barrier).iterdir())) < int(racers):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)
                time.sleep(float(delay_s))
            return model

    client = Synchronised(tracking_uri=uri, registry_uri=uri)
    try:
        with registry_lock.registry_lock(client, "take-stale-lock"):
            print(f"held {time.time():.6f}")
            time.sleep(float(hold_s))
            print(f"released {time.time():.6f}")
    except RegistryStateError as exc:
        print(f"take-stale-lock: error: {exc}", file=sys.stderr)
        return 3
    return 0


def churn_command(argv: list[str]) -> int:
    """`python -m churn ARGV` (its `main`, as `python -m churn` calls it)."""
    from churn.__main__ import main as churn_main

    return churn_main(argv)


SCRIPTS = {
    "promote": promote.main,
    "rollback": rollback.main,
    "register": register.main,
    "take-stale-lock": take_stale_lock,
    "churn": churn_command,
}


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
