"""`churn <command>` (or `python -m churn <command>`): every tool of the project, one command.

churn train                    # train, log, register as @challenger (= python train.py)
churn promote [--dry-run]      # gate -> @champion (= python promote.py)
churn rollback [--dry-run]     # swap @champion and @prev-champion (= python rollback.py)
churn register --run-id ID     # a run's model -> a new version (= python register.py)
churn prepare                  # params.yaml source -> data/customers.parquet (DVC stage)
churn lineage [--alias A]      # alias -> version -> run -> commit -> data bytes
churn status                   # one line: who is champion
churn versions [--json]        # every version: aliases, gate metric, data md5, marks
churn retire --reason TEXT     # remove @challenger, tag its version retired, on the ledger
churn pipeline                 # dvc repro, then promote, then status (make pipeline)
churn retrain --snapshot M     # data.snapshot := M, dvc repro -> @challenger (make retrain)
churn drift --reference 2026-07 --current 2026-10   # PSI per feature and prediction
churn score --input 'data/*.parquet' --output scores/  # batch scoring on Spark
churn history [--at TIME]      # alias moves on the ledger
churn outcomes --labels outcomes.csv           # who churned, beside the prediction log
churn live-eval --since 2026-11-01 --until 2026-12-01   # champion vs challenger on outcomes
`churn COMMAND --help` for its flags and exit codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

from churn import cli, commands, pipeline, settings, tracking
from churn.commands import drift_report
from churn.errors import EXIT_CODES_HELP, RegistryStateError, UsageError

PIPELINE_EXIT_HELP = """\
exit codes (pipeline):
  0  done: the champion is up to date, or the gate kept the current champion
  1  a DVC stage failed (its output is above)
  2  usage error
  3  registry state forbids promotion (see promote.py --help)
  4  tracking server or store unreachable or failing"""

RETRAIN_EXIT_HELP = """\
Sets data.snapshot in params.yaml (comments kept), then runs `dvc repro`: the prepare stage
generates that month, the train stage trains and registers it as @challenger (and a store with no
model on this data gets one, as in `make pipeline`). params.yaml and dvc.lock now record the
month the challenger was trained on: promote it with `python promote.py` (which re-scores champion
and challenger on this month's held-out rows), then commit params.yaml and dvc.lock.

exit codes (retrain):
  0  done: @challenger is trained on the month (or it already was: nothing changed)
  1  a DVC stage failed (its output is above)
  2  usage error (bad month; data.source is a file, not the generator)
  4  tracking server or store unreachable or failing"""

DRIFT_EXIT = drift_report.DRIFT_EXIT  # (imported by CI and tests from here too)


def _prepare(args: argparse.Namespace) -> int:
    from churn.prepare import prepare

    print(prepare(args.params, args.out))
    return 0


def _score(args: argparse.Namespace) -> int:
    from churn import score

    return score.run(args)


def _lineage(args: argparse.Namespace) -> int:
    from churn.lineage import format_lineage, lineage

    uri = settings.tracking_uri(args.tracking_uri)
    client = tracking.connect(uri)
    with tracking.store_errors(uri):
        li = lineage(client, args.alias)
    for line in format_lineage(li):
        print(line)
    return 0


def status_line(client: object) -> str:
    from churn.registry_reads import aliases

    by_alias = aliases(client)  # type: ignore[arg-type]
    champ = by_alias.get(settings.CHAMPION)
    if champ is None:
        return "champion: none yet (run make pipeline)"
    mv = client.get_model_version(settings.MODEL_NAME, str(champ))  # type: ignore[attr-defined]
    run = client.get_run(mv.run_id)  # type: ignore[attr-defined]
    auc = run.data.metrics.get("auc")
    others = sorted(a for a in by_alias if a != settings.CHAMPION)
    extra = "".join(f", @{a}=v{by_alias[a]}" for a in others)
    score = f"auc={auc:.4f}, " if auc is not None else ""
    return f"champion: {settings.MODEL_NAME} v{champ} ({score}run {mv.run_id[:12]}{extra})"


def _status(args: argparse.Namespace) -> int:
    uri = settings.tracking_uri(args.tracking_uri)
    client = tracking.connect(uri)
    with tracking.store_errors(uri):
        try:
            print(status_line(client))
        except RegistryStateError:
            print("champion: none yet (run make pipeline)")
    return 0


VERSIONS_EXIT_HELP = """\
Marks come from the version tags the registry operations write: promoted (promoted_over),
rolled back (rolled_back), retired (retired). The metric is params.yaml's gate.metric as the
version's run logged it; data md5 is the run's data_md5 tag (the bytes it was trained on).

exit codes (versions):
  0  listed
  2  usage error
  3  model 'churn' is not in the registry
  4  tracking server or store unreachable or failing"""


def _versions(args: argparse.Namespace) -> int:
    import json

    from churn import versions

    metric = settings.load_params().gate.metric
    uri = settings.tracking_uri(args.tracking_uri)
    client = tracking.connect(uri)
    with tracking.store_errors(uri):
        rows = versions.versions(client, metric)
    if args.json:
        doc = {
            "model": settings.MODEL_NAME,
            "metric": metric,
            "versions": [r.as_json() for r in rows],
        }
        print(json.dumps(doc, indent=2))
        return 0
    for line in versions.format_table(rows, metric):
        print(line)
    return 0


RETIRE_EXIT_HELP = """\
Removes @challenger under the registry lock, tags its version `retired` (the reason) and
records the move on the ledger (python -m churn history). The version stays in the registry:
only the alias goes. Use it for a challenger the gate refused, or one nobody should promote.

exit codes (retire):
  0  retired, or no @challenger (nothing to do), or a dry run
  2  usage error (no --reason)
  3  registry state: model 'churn' not in the registry, another change holds the registry lock,
     or @challenger moved while retiring
  4  tracking server or store unreachable or failing"""


def _retire(args: argparse.Namespace) -> int:
    from churn import registry

    reason = args.reason.strip()
    if not reason:
        raise UsageError('--reason: say why, e.g. --reason "refused by the gate twice"')
    uri = settings.tracking_uri(args.tracking_uri)
    client = tracking.connect(uri, writes=True)
    with tracking.store_errors(uri):
        result = registry.retire(client, reason, dry_run=args.dry_run, uri=uri)
    if result is None:
        print(f"no @{settings.CHALLENGER} alias set: nothing to retire")
        return 0
    head = "DRY RUN: would retire" if result.dry_run else "RETIRED:"
    print(f"{head} @{settings.CHALLENGER} v{result.version} removed ({reason})")
    return 0


def _echo(label: str) -> pipeline.Progress:
    """Progress lines on stderr (stdout carries the results)."""
    return lambda msg: print(f"{label}: {msg}", file=sys.stderr, flush=True)


def _pipeline(args: argparse.Namespace) -> int:
    uri = settings.tracking_uri(args.tracking_uri)
    client, env = pipeline.repro(uri, _echo("pipeline"))

    # The gate refusing (exit 1) is a normal outcome of a pipeline run, not a failure.
    rc = pipeline.step([sys.executable, "promote.py"], env, _echo("pipeline"), ok=(0, 1, 3, 4))
    if rc == 1:
        print("pipeline: the gate kept the current champion", file=sys.stderr)
    elif rc != 0:
        return rc
    with tracking.store_errors(uri):
        print(status_line(client))
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from churn import data
    from churn.errors import UsageError
    from churn.registry_reads import aliases

    try:
        data.generate(rows=1, snapshot=args.snapshot)  # validates the month
    except ValueError as exc:
        raise UsageError(f"--snapshot: {exc}") from exc
    params = settings.load_params(args.params)
    if params.data.source != "generator":
        raise UsageError(
            f"data.source is {params.data.source!r}, not the generator: to retrain on a new "
            "month, point data.source at that month's CSV and run make pipeline"
        )
    uri = settings.tracking_uri(args.tracking_uri)
    tracking.check_reachable(uri)
    old = settings.set_data_snapshot(args.snapshot, args.params)
    same = " (unchanged)" if old == args.snapshot else ""
    print(f"retrain: params.yaml data.snapshot {old} -> {args.snapshot}{same}", file=sys.stderr)
    client, _ = pipeline.repro(uri, _echo("pipeline"))
    with tracking.store_errors(uri):
        chal = aliases(client).get(settings.CHALLENGER)
    if chal is None:
        print(
            f"retrain: no @{settings.CHALLENGER}: a model on snapshot {args.snapshot} with "
            "these params is already registered (and was gated)"
        )
        return 0
    print(
        f"retrain: @{settings.CHALLENGER} is {settings.MODEL_NAME} v{chal} (snapshot "
        f"{args.snapshot}); next: python promote.py, then commit params.yaml and dvc.lock"
    )
    return 0


def _score_arguments(sp: argparse.ArgumentParser) -> None:
    from churn import score  # must not import pyspark at module level: --help stays fast

    score.add_arguments(sp)


def _history(args: argparse.Namespace) -> int:
    from churn import ledger

    uri = settings.tracking_uri(args.tracking_uri)
    client = tracking.connect(uri)
    with tracking.store_errors(uri):
        records = ledger.history(client, None if args.at else args.limit)
    if args.at is not None:
        when = args.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        record = ledger.champion_at(records, args.at)
        if record is None:
            first = next(
                (
                    r
                    for r in reversed(records)
                    if r.decision in ledger.MOVED and r.alias == settings.CHAMPION
                ),
                None,
            )
            hint = f" (the first promotion was at {first.decided_at})" if first else ""
            print(f"at {when}: no @{settings.CHAMPION} yet{hint}")
            return 0
        print(f"at {when}: @{settings.CHAMPION} was {settings.MODEL_NAME} v{record.to_version}")
        print("put there by:")
        print("  " + ledger.HEADER)
        print("  " + ledger.format_record(record))
        print(f"  ledger run {record.run_id}, git commit {record.git_commit or 'unknown'}")
        return 0
    if not records:
        print(f"no alias moves recorded yet in {ledger.LEDGER_EXPERIMENT}")
        return 0
    print(ledger.HEADER)
    for record in records:
        print(ledger.format_record(record))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("churn-mlops")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed: make setup)"


Command = Callable[..., argparse.ArgumentParser]  # (name, help, epilog=None) -> its parser


def _registry_commands(command: Command) -> None:
    """Reading the registry and the ledger, and retiring a challenger."""
    sp = command("lineage", "trace an alias to its version, run, commit and data")
    sp.add_argument("--alias", default=settings.CHAMPION, help="default: champion")
    sp.set_defaults(func=_lineage)
    command("status", "print who is champion, in one line").set_defaults(func=_status)
    sp = command(
        "versions",
        "every version of the model: aliases, gate metric, data md5, created, marks",
        epilog=VERSIONS_EXIT_HELP,
    )
    sp.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    sp.set_defaults(func=_versions)
    sp = command(
        "retire",
        "remove @challenger with a reason; its version is tagged retired, on the ledger",
        epilog=RETIRE_EXIT_HELP,
    )
    sp.add_argument("--reason", required=True, metavar="TEXT", help="why (on the ledger)")
    sp.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    sp.set_defaults(func=_retire)
    sp = command("history", "every alias move on the ledger, newest first")
    sp.add_argument("--at", type=cli.iso_time, metavar="TIME", help="who was @champion at TIME")
    sp.add_argument("--limit", type=cli.positive_int, default=20, metavar="N", help="default: 20")
    sp.set_defaults(func=_history)


def _data_commands(command: Command) -> None:
    """The data, the pipeline, retraining and batch scoring."""
    sp = command("prepare", "build data/customers.parquet from the source in params.yaml")
    sp.add_argument("--params", type=Path, default=settings.PARAMS_FILE)
    sp.add_argument("--out", type=Path, default=settings.DATA_FILE)
    sp.set_defaults(func=_prepare)
    command(
        "pipeline", "dvc repro, then promote.py, then status", epilog=PIPELINE_EXIT_HELP
    ).set_defaults(func=_pipeline)
    sp = command(
        "retrain",
        "set data.snapshot to a new month, dvc repro -> a new @challenger",
        epilog=RETRAIN_EXIT_HELP,
    )
    sp.add_argument("--snapshot", required=True, metavar="YYYY-MM", help="the month to train on")
    sp.add_argument("--params", type=Path, default=settings.PARAMS_FILE, help=argparse.SUPPRESS)
    sp.set_defaults(func=_retrain)
    sp = command(
        "score",
        "score CSV/Parquet files with @champion on Apache Spark (nightly batch scoring)",
    )
    _score_arguments(sp)
    sp.set_defaults(func=_score)


def _parser() -> argparse.ArgumentParser:
    """`churn`'s parser: every subcommand, the registry scripts listed (they parse their own)."""
    p = argparse.ArgumentParser(
        prog="churn",
        description=__doc__,
        epilog=EXIT_CODES_HELP
        + "\n  5  drift (churn drift only: a PSI reached the alert level)"
        + "\n  6  not enough evidence (churn live-eval only: too few outcomes to compare)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, purpose in commands.SCRIPTS.items():
        # Listed in --help; never parsed here (dispatched in main).
        sub.add_parser(name, help=purpose, add_help=False)

    def command(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name, help=help_text, description=help_text, epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        sp.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking/registry URI")
        return sp

    from churn.commands import live

    for add in (_data_commands, _registry_commands, drift_report.add_command, live.add_commands):
        add(command)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in commands.SCRIPTS:
        # The registry scripts parse their own flags: one parser, one output, either spelling.
        name = argv[0]
        return cli.run(f"churn {name}", lambda: commands.main_of(name)(argv[1:]))
    args = _parser().parse_args(argv)
    return cli.run(f"churn {args.command}", lambda: int(args.func(args)))


if __name__ == "__main__":
    raise SystemExit(main())
