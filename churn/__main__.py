"""`python -m churn <command>`: the project's tools beyond the four registry scripts.

python -m churn prepare              # params.yaml source -> data/customers.parquet (DVC stage)
python -m churn lineage [--alias A]  # alias -> version -> run -> commit -> data bytes
python -m churn status               # one line: who is champion
python -m churn pipeline             # dvc repro, then promote.py, then status (make pipeline)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from churn import cli, settings, tracking
from churn.errors import ChurnError, RegistryStateError
from churn.schema import LABEL_COLUMN

PIPELINE_EXIT_HELP = """\
exit codes (pipeline):
  0  done: the champion is up to date, or the gate kept the current champion
  1  a DVC stage failed (its output is above)
  2  usage error
  3  registry state forbids promotion (see promote.py --help)
  4  tracking server or store unreachable or failing"""


def _prepare(args: argparse.Namespace) -> int:
    from churn import data
    from churn.provenance import file_md5

    params = settings.load_params(args.params)
    d = params.data
    try:
        df = data.load_source(d.source, d.rows, params.seed, d.snapshot, settings.ROOT)
    except (FileNotFoundError, data.DataValidationError) as exc:
        raise ChurnError(str(exc)) from exc
    data.write_parquet(df, args.out)
    rate = float(df[LABEL_COLUMN].mean())
    out = args.out.resolve()
    shown = out.relative_to(settings.ROOT) if out.is_relative_to(settings.ROOT) else out
    print(f"prepared {shown}: {len(df):,} rows, churn rate {rate:.1%}, md5 {file_md5(out)}")
    return 0


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
    from churn.registry import aliases

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


def _run_step(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> int:
    shown = " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))
    print(f"pipeline: $ {shown}", file=sys.stderr, flush=True)
    rc = subprocess.run(cmd, cwd=settings.ROOT, env=env).returncode
    if rc not in ok:
        raise ChurnError(f"`{shown}` failed (exit {rc}): see its output above")
    return rc


def _pipeline(args: argparse.Namespace) -> int:
    from churn.provenance import file_md5

    uri = settings.tracking_uri(args.tracking_uri)
    tracking.check_reachable(uri)
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PATH=bin_dir + os.pathsep + os.environ["PATH"])
    dvc = [str(Path(bin_dir) / "dvc")] if (Path(bin_dir) / "dvc").exists() else ["dvc"]
    _run_step([*dvc, "repro"], env)

    # DVC knows the data and code are unchanged, but the registry lives outside DVC: a new or
    # different tracking store has no model for this data yet, so train once more into it.
    client = tracking.connect(uri)
    md5 = file_md5(settings.DATA_FILE)
    with tracking.store_errors(uri):
        trained = client.search_model_versions(
            f"name='{settings.MODEL_NAME}' and tags.data_md5='{md5}'"
        )
    if not trained:
        print(
            f"pipeline: no version of '{settings.MODEL_NAME}' in {uri} was trained on this data "
            f"(md5 {md5}): training it",
            file=sys.stderr,
            flush=True,
        )
        _run_step([*dvc, "repro", "--force", "--single-item", "train"], env)

    # The gate refusing (exit 1) is a normal outcome of a pipeline run, not a failure.
    rc = _run_step([sys.executable, "promote.py"], env, ok=(0, 1, 3, 4))
    if rc == 1:
        print("pipeline: the gate kept the current champion", file=sys.stderr)
    elif rc != 0:
        return rc
    with tracking.store_errors(uri):
        print(status_line(client))
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got '{text}'")
    return value


def _parse_time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an ISO time like 2026-11-20T14:00 (UTC unless an offset is given)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


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
            first = next((r for r in reversed(records) if r.decision in ledger.MOVED), None)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m churn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking/registry URI")
        return sp

    sp = command("prepare", "build data/customers.parquet from the source in params.yaml")
    sp.add_argument("--params", type=Path, default=settings.PARAMS_FILE)
    sp.add_argument("--out", type=Path, default=settings.DATA_FILE)
    sp.set_defaults(func=_prepare)

    sp = command("lineage", "trace an alias to its version, run, commit and data")
    sp.add_argument("--alias", default=settings.CHAMPION, help="default: champion")
    sp.set_defaults(func=_lineage)

    command("status", "print who is champion, in one line").set_defaults(func=_status)

    command(
        "pipeline", "dvc repro, then promote.py, then status", epilog=PIPELINE_EXIT_HELP
    ).set_defaults(func=_pipeline)

    sp = command("history", "alias moves recorded by promote/rollback, newest first")
    sp.add_argument("--at", type=_parse_time, metavar="TIME", help="who was @champion at TIME")
    sp.add_argument("--limit", type=_positive, default=20, metavar="N", help="default: 20")
    sp.set_defaults(func=_history)

    args = p.parse_args(argv)
    return cli.run(f"churn {args.command}", lambda: int(args.func(args)))


if __name__ == "__main__":
    raise SystemExit(main())
