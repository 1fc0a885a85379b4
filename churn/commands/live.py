"""`churn outcomes` and `churn live-eval`: the A/B experiment's result, from the prediction log."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from churn import cli, settings

LOG_ENV = settings.PREDICTION_LOG_ENV
DEFAULT_LOG = settings.ROOT / "predictions"

OUTCOMES_HELP = """\
Reads who churned (customerID, churned, observed_at; CSV or Parquet), checks every row and
stores them beside the prediction log (LOG/outcomes/). A file with a bad row is refused whole,
naming the rows and what is wrong with each: nothing is ingested. With --generate YYYY-MM it
writes FILE instead: the outcomes of that generated month's customers (the generator knows who
churns), observed at the end of the following month (or at --observed-at, e.g. now: the course
scores a month's customers today and judges them at once).

exit codes (outcomes):
  0  ingested
  1  the labels file is missing, unreadable, or has bad rows (nothing ingested)
  2  usage error"""

LIVE_EVAL_HELP = """\
Joins the outcomes to the prediction that was in force for each customer when the outcome was
observed (the latest one before it, within --window days), then per served version and role:
AUC, log loss, calibration and the share of churners in the top decile of scores; and the
served challenger minus the served champion on the gate metric with a bootstrap 95% interval
(each side resampled alone: the split serves different customers). Prints a table, writes
live-eval.json and live-eval.html to --out-dir and logs them as a run of churn-live-eval.

exit codes (live-eval):
  0  enough outcomes on both sides: the comparison is in the report
  2  usage error (bad time, empty period)
  4  tracking server or store unreachable or failing
  6  not enough evidence yet: the report says how many more outcomes each side needs"""


def log_root(explicit: str | None) -> str:
    return explicit or os.environ.get(LOG_ENV) or str(DEFAULT_LOG)


def _month(text: str) -> str:
    from churn.data import generate

    try:
        generate(rows=1, snapshot=text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _outcomes(args: argparse.Namespace) -> int:
    from churn import outcomes, predlog

    if args.generate is not None:
        params = settings.load_params(args.params)
        labels = outcomes.from_generator(
            args.generate, args.rows or params.data.rows, params.seed, args.observed_at
        )
        args.labels.parent.mkdir(parents=True, exist_ok=True)
        labels.to_csv(args.labels, index=False)
        print(f"outcomes: {len(labels)} outcomes of {args.generate}'s customers -> {args.labels}")
        return 0
    root = log_root(args.log)
    count, path = outcomes.ingest(args.labels, predlog.Location.of(root))
    folder = path.rsplit("/", 1)[0]  # the file is named for its time: the folder is what to know
    print(f"outcomes: {count} rows from {args.labels} -> {folder}/ (one new file)")
    return 0


def _live_eval(args: argparse.Namespace) -> int:
    from churn import live_eval, tracking
    from churn.errors import UsageError

    if args.until <= args.since:
        raise UsageError(f"--until {args.until:%Y-%m-%dT%H:%M} is not after --since")
    need = live_eval.Evidence(args.min_outcomes, args.min_churners)
    params = settings.load_params(args.params)
    report = live_eval.from_log(
        log_root(args.log), args.since, args.until, timedelta(days=args.window),
        params.gate.metric, need, args.resamples, params.seed,
    )  # fmt: skip
    files = live_eval.write_outputs(report, args.out_dir)
    uri = settings.tracking_uri(args.tracking_uri)
    client = tracking.connect(uri)
    with tracking.store_errors(uri):
        run_id = live_eval.log_run(client, uri, report, list(files))
    table = live_eval.format_table(report)
    cli.report_written("live-eval", table, files, run_id, live_eval.LIVE_EXPERIMENT)
    return 0 if report.enough else live_eval.NOT_ENOUGH_EVIDENCE


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`outcomes` and `live-eval` on churn's parser (`command` makes one subcommand)."""
    sp = command("outcomes", "ingest who churned, to judge predictions later", OUTCOMES_HELP)
    sp.add_argument("--labels", type=Path, required=True, metavar="FILE", help="CSV or Parquet")
    sp.add_argument("--generate", metavar="YYYY-MM", type=_month,
                    help="write FILE: the generator's outcomes of that month (course)")  # fmt: skip
    sp.add_argument("--rows", type=cli.positive_int, help="with --generate (default: data.rows)")
    sp.add_argument("--observed-at", type=cli.iso_time, metavar="TIME",
                    help="with --generate: when the outcomes were observed (default: the end of "
                    "the following month; now for the course)")  # fmt: skip
    sp.add_argument("--params", type=Path, default=settings.PARAMS_FILE, help=argparse.SUPPRESS)
    sp.add_argument("--log", metavar="DIR|s3://…", help=f"prediction log (default: ${LOG_ENV})")
    sp.set_defaults(func=_outcomes)

    sp = command(
        "live-eval", "champion vs challenger on live outcomes (AUC, calibration)", LIVE_EVAL_HELP
    )
    sp.add_argument(
        "--since",
        type=cli.iso_time,
        required=True,
        metavar="TIME",
        help="e.g. 2026-11-01, today",
    )
    sp.add_argument("--until", type=cli.iso_time, required=True, metavar="TIME", help="exclusive")
    sp.add_argument("--log", metavar="DIR|s3://…", help=f"prediction log (default: ${LOG_ENV})")
    sp.add_argument("--window", type=cli.positive_int, default=90, metavar="DAYS",
                    help="oldest prediction joined to an outcome (default: 90)")  # fmt: skip
    sp.add_argument("--min-outcomes", type=cli.positive_int, default=200, metavar="N",
                    help="outcomes each served side needs (default: 200)")  # fmt: skip
    sp.add_argument("--min-churners", type=cli.positive_int, default=20, metavar="N",
                    help="churners among them (default: 20)")  # fmt: skip
    sp.add_argument("--resamples", type=cli.positive_int, default=1000, metavar="N",
                    help="bootstrap resamples of each side (default: 1000)")  # fmt: skip
    sp.add_argument("--out-dir", type=Path, default=settings.REPORTS_DIR / "live", metavar="DIR",
                    help="for live-eval.json and .html (default: reports/live)")  # fmt: skip
    sp.add_argument("--params", type=Path, default=settings.PARAMS_FILE, help=argparse.SUPPRESS)
    sp.set_defaults(func=_live_eval)
