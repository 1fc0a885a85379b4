"""What every entry-point script shares: the parser, and errors mapped to the exit-code contract.

Scripts print results to stdout; every failure is one line on stderr and an exit code, never a
traceback for something the user can fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from churn import redact
from churn.errors import EXIT_CODES_HELP, ChurnError, TrackingUnavailableError
from churn.settings import ParamsError
from churn.tracking import is_store_error


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI, "
        "else the embedded store sqlite:///<repo>/mlflow.db)",
    )
    return p


def quiet_mlflow(level: str = "WARNING") -> None:
    """MLflow's INFO chatter (migrations, uv export) buries our output; keep its warnings (a
    measuring script that reports none of MLflow's lines passes level="ERROR").

    Set through MLflow's own variable because MLflow configures its loggers when imported;
    a user who sets MLFLOW_LOGGING_LEVEL keeps their choice.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", level)
    # With a server MLflow prints "View run ... at" links into stdout, which is our results channel.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # A model is a few hundred KB: a "Downloading artifacts" bar per load is noise between our
    # lines (and two of them for every gate that re-evaluates).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # MLflow's SQL store logs every failed statement with its traceback (60-90 lines for a
    # read-only store) and then raises; the raised error is our one line (exit 4).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # uv venvs have no pip; MLflow warns it cannot pin pip in the model's conda.yaml.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


def fail(prog: str, message: str) -> None:
    print(redact.redact(f"{prog}: error: {message}"), file=sys.stderr)


def run(prog: str, body: Callable[[], int]) -> int:
    """Call `body`, turning our typed errors into their exit codes with a one-line message.

    Everything the script writes (results, messages, MLflow's log lines, a traceback) goes out
    through `churn.redact`: a tracking URI's password never reaches a terminal or a CI log."""
    quiet_mlflow()
    redact.install()
    with redact.redacted_streams():
        return _run(prog, body)


def _run(prog: str, body: Callable[[], int]) -> int:
    try:
        return body()
    except ChurnError as exc:
        fail(prog, str(exc))
        return exc.exit_code
    except ParamsError as exc:
        fail(prog, f"{exc}; fix params.yaml")
        return 2
    except KeyboardInterrupt:
        fail(prog, "interrupted")
        return 130
    except Exception as exc:
        # A store failure raised outside `store_errors` still must not be a traceback.
        if is_store_error(exc):
            fail(
                prog, str(TrackingUnavailableError(f"tracking store failed: {exc}")).splitlines()[0]
            )
            return TrackingUnavailableError.exit_code
        raise


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1, with the error argparse shows."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got '{text}'")
    return value


def iso_time(text: str) -> datetime:
    """argparse type: an ISO date or time, UTC unless it carries an offset."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an ISO time like 2026-11-20 or 2026-11-20T14:00 (UTC unless an "
            "offset is given)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def report_written(
    prog: str, table: Iterable[str], files: Iterable[Path], run_id: str, experiment: str
) -> None:
    """How a report command ends (drift, live-eval): its table on stdout, then one line on
    stderr saying where its files and its MLflow run are."""
    for line in table:
        print(line)
    written = " and ".join(str(f) for f in files)
    print(
        f"{prog}: wrote {written}; MLflow run {run_id} (experiment {experiment})", file=sys.stderr
    )
