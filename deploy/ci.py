"""The steps of the retrain -> promote workflow (.github/workflows/pipeline.yml), as make targets.

    python deploy/ci.py data       # make data:       dvc pull, else dvc repro regenerates it
    python deploy/ci.py drift      # make drift-ci:   champion's training data vs this month
    python deploy/ci.py train      # make train:      dvc repro (+ retrain into a new store)
    python deploy/ci.py promote    # make promote-ci: promote.py; the gate refusing is green

Each step appends Markdown to $GITHUB_STEP_SUMMARY when it is set (the job summary on GitHub),
so the same commands give the same report on a laptop, in the e2e tests and in Actions.

The drift step compares the data @champion was trained on with the month in $SNAPSHOT (default:
the previous calendar month, UTC) and writes `drift=true|false` and `snapshot=YYYY-MM` to
$GITHUB_OUTPUT; the workflow's next step retrains on that month (`make retrain`) when drift is
true.

exit codes: as promote.py (see its --help), except that `promote` exits 0 when the gate keeps
the champion (promote.py's exit 1): a refusal is a normal outcome of a scheduled retrain, and any
other failure (2 usage, 3 registry state, 4 store unreachable) fails the job. `drift` exits 0
whether or not it finds drift (the output says which); any failure of the comparison fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(ROOT))

from churn import (  # noqa: E402
    cli,
    pipeline,
    settings,
    tracking,
)
from churn.__main__ import DRIFT_EXIT, status_line  # noqa: E402
from churn.errors import RegistryStateError, UsageError  # noqa: E402

PROG = "deploy/ci.py"


def output(**values: str) -> None:
    """Step outputs for later steps' `if:` (a no-op outside Actions)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            for key, value in values.items():
                fh.write(f"{key}={value}\n")


def previous_month(today: date | None = None) -> str:
    first = (today or datetime.now(UTC).date()).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def drift(uri: str) -> int:
    """Has the population moved since @champion was trained? Decides whether to retrain."""
    from churn import data as churn_data
    from churn.registry import aliases

    month = os.environ.get("SNAPSHOT", "").strip() or previous_month()
    try:
        churn_data.generate(rows=1, snapshot=month)  # validates the month
    except ValueError as exc:
        raise UsageError(f"SNAPSHOT: {exc}") from exc
    client = tracking.connect(uri)
    with tracking.store_errors(uri):
        try:
            champion = aliases(client).get(settings.CHAMPION)
        except RegistryStateError:
            champion = None
    if champion is None:
        line = f"no @{settings.CHAMPION} yet: nothing to compare {month} with (no retrain on drift)"
        print(f"drift: {line}", file=sys.stderr)
        output(drift="false", snapshot=month)
        summary(f"### Drift\n{line}")
        return 0
    out_dir = settings.REPORTS_DIR / "drift"
    cmd = [sys.executable, "-m", "churn", "drift", "--reference", "champion", "--current", month,
           "--out-dir", str(out_dir)]  # fmt: skip
    print(f"drift: $ python -m churn drift --reference champion --current {month}", file=sys.stderr)
    proc = subprocess.run(
        cmd, cwd=settings.ROOT, env=pipeline.environment(uri), stdout=subprocess.PIPE, text=True
    )
    sys.stdout.write(proc.stdout)
    if proc.returncode not in (0, DRIFT_EXIT):
        summary(f"### Drift\n**FAILED**: `python -m churn drift` exited {proc.returncode}")
        return proc.returncode
    drifted = proc.returncode == DRIFT_EXIT
    output(drift=str(drifted).lower(), snapshot=month)
    verdict = (
        f"**drift** between the training data of @{settings.CHAMPION} v{champion} and {month}: "
        f"retraining on {month}"
        if drifted
        else f"no drift past the alert threshold between @{settings.CHAMPION} v{champion}'s "
        f"training data and {month}: no retrain on drift"
    )
    print(f"drift: {verdict.replace('**', '')}", file=sys.stderr)
    table = proc.stdout.rstrip()
    summary(f"### Drift\n{verdict}\n\n```text\n{table}\n```")
    return 0


def summary(markdown: str) -> None:
    """Append to the GitHub job summary (a no-op outside Actions)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip("\n") + "\n\n")


def data() -> int:
    """Fetch the data DVC recorded in dvc.lock; without a copy in the remote, let DVC rebuild it."""
    target = settings.DATA_FILE.relative_to(settings.ROOT).as_posix()
    cmd = [*pipeline.dvc(), "pull", "--quiet", target]
    print(f"data: $ dvc pull {target}", file=sys.stderr, flush=True)
    rc = subprocess.run(cmd, cwd=settings.ROOT, env=dict(os.environ)).returncode
    if rc == 0:
        line = f"data: `{target}` pulled from the DVC remote"
    else:
        line = (
            f"data: no copy of `{target}` in the DVC remote (dvc pull exit {rc}): "
            "`make train` regenerates it from `params.yaml` (`dvc repro`)"
        )
    print(line, file=sys.stderr)
    summary(f"### Data\n{line}")
    return 0


def train(uri: str) -> int:
    """`dvc repro`, then the pipeline's rule: a store with no model on this data gets one."""
    from churn.provenance import file_md5
    from churn.registry import aliases

    client, _ = pipeline.repro(uri, lambda msg: print(f"train: {msg}", file=sys.stderr, flush=True))
    md5 = file_md5(settings.DATA_FILE)
    with tracking.store_errors(uri):
        try:
            challenger = aliases(client).get(settings.CHALLENGER)
        except RegistryStateError:
            challenger = None
    if challenger is None:
        line = (
            f"no @{settings.CHALLENGER}: data, params and code are unchanged and the store "
            "already has a model trained on them"
        )
    else:
        run_id = client.get_model_version(settings.MODEL_NAME, str(challenger)).run_id
        line = f"@{settings.CHALLENGER} is {settings.MODEL_NAME} v{challenger} (run {run_id})"
    print(f"train: {line}")
    summary(f"### Train\n{line} (data md5 `{md5}`)")
    return 0


def _promote_args() -> list[str]:
    """promote.py's flags from the workflow_dispatch inputs (passed as environment variables)."""
    args: list[str] = []
    epsilon = os.environ.get("GATE_EPSILON", "").strip()
    if epsilon:
        try:
            value = float(epsilon)
        except ValueError:
            raise UsageError(f"GATE_EPSILON must be a number >= 0, got '{epsilon}'") from None
        args += ["--epsilon", repr(value)]
    dry_run = os.environ.get("DRY_RUN", "").strip().lower()
    if dry_run in ("1", "true", "yes"):
        args.append("--dry-run")
    elif dry_run not in ("", "0", "false", "no"):
        raise UsageError(f"DRY_RUN must be true or false, got '{dry_run}'")
    return args


def _table(lines: list[str]) -> str:
    """promote.py's `champion   : v3  auc=0.8600` lines as a Markdown table."""
    rows = ["| alias | version | metric |", "|---|---|---|"]
    for line in lines:
        role, _, rest = line.partition(":")
        if role.strip() in (settings.CHAMPION, settings.CHALLENGER):
            version, _, metric = rest.strip().partition("  ")
            rows.append(f"| @{role.strip()} | {version} | {metric.strip() or '-'} |")
    return "\n".join(rows)


def promote(uri: str) -> int:
    args = _promote_args()
    cmd = [sys.executable, "promote.py", *args]
    print(f"promote: $ promote.py {' '.join(args)}".rstrip(), file=sys.stderr, flush=True)
    proc = subprocess.run(
        cmd, cwd=settings.ROOT, env=pipeline.environment(uri), stdout=subprocess.PIPE, text=True
    )
    sys.stdout.write(proc.stdout)
    out = proc.stdout.splitlines()
    rc = proc.returncode
    last = out[-1] if out else ""
    if rc == 0 and last.startswith("PROMOTED"):
        verdict, ok = f"**{last}**", True
    elif rc == 0 and last.startswith("DRY RUN"):
        verdict, ok = f"**{last}** (dry run: nothing changed)", True
    elif rc == 0:
        verdict, ok = f"nothing to promote: {last}", True
    elif rc == 1:
        verdict, ok = f"**champion kept**: {last}", True
    else:
        verdict, ok = (
            f"**FAILED**: promote.py exited {rc} (see the job log; promote.py --help lists the "
            "exit codes)",
            False,
        )
    report = [f"### Promotion\n{verdict}"]
    if any(line.startswith(f"{settings.CHALLENGER} ") for line in out):
        report.append(_table(out))
    # The honest gate's paired bootstrap interval (promote.py re-evaluates on one holdout).
    interval = [line for line in out if line.startswith("paired diff ")]
    if interval:
        report.append("Gate on the same holdout: `" + interval[-1] + "`")
    if ok:
        client = tracking.connect(uri)
        with tracking.store_errors(uri):
            try:
                report.append(f"### Serving\n`{status_line(client)}`")
            except RegistryStateError:
                report.append("### Serving\nno @champion yet")
        lineage = subprocess.run(
            [sys.executable, "-m", "churn", "lineage"],
            cwd=settings.ROOT,
            env=pipeline.environment(uri),
            capture_output=True,
            text=True,
        )
        text = (lineage.stdout or lineage.stderr).rstrip()
        report.append(f"### Lineage of @{settings.CHAMPION}\n```text\n{text}\n```")
    summary("\n\n".join(report))
    if rc == 1:
        print(f"promote: the gate kept the current champion ({last})", file=sys.stderr)
        return 0
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("step", choices=("data", "drift", "train", "promote"))
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking/registry URI")
    args = p.parse_args(argv)
    uri = settings.tracking_uri(args.tracking_uri)
    steps = {
        "data": data,
        "drift": lambda: drift(uri),
        "train": lambda: train(uri),
        "promote": lambda: promote(uri),
    }
    return cli.run(PROG, steps[args.step])


if __name__ == "__main__":
    raise SystemExit(main())
