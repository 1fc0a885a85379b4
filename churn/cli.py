"""What every entry-point script shares: the parser, and errors mapped to the exit-code contract.

Scripts print results to stdout; every failure is one line on stderr and an exit code, never a
traceback for something the user can fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

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


def quiet_mlflow() -> None:
    """MLflow's INFO chatter (migrations, uv export) buries our output; keep its warnings.

    Set through MLflow's own variable because MLflow configures its loggers when imported;
    a user who sets MLFLOW_LOGGING_LEVEL keeps their choice.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # With a server MLflow prints "View run ... at" links into stdout, which is our results channel.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # A model is a few hundred KB: a "Downloading artifacts" bar per load is noise between our
    # lines (and two of them for every gate that re-evaluates).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # uv venvs have no pip; MLflow warns it cannot pin pip in the model's conda.yaml.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


def fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def run(prog: str, body: Callable[[], int]) -> int:
    """Call `body`, turning our typed errors into their exit codes with a one-line message."""
    quiet_mlflow()
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
