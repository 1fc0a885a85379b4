"""The steps of the retrain -> promote workflow (.github/workflows/pipeline.yml), as make targets.

    python -m deploy.ci data       # make data:       dvc pull, else dvc repro regenerates it
    python -m deploy.ci drift      # make drift-ci:   champion's training data vs this month
    python -m deploy.ci train      # make train:      dvc repro (+ retrain into a new store)
    python -m deploy.ci decide     # make decide-ci:  the gate as a dry run -> GITHUB_OUTPUT
    python -m deploy.ci promote    # make promote-ci: promote.py's promotion; a refusal is green

Each step appends Markdown to $GITHUB_STEP_SUMMARY when it is set (the job summary on GitHub),
so the same commands give the same report on a laptop, in the e2e tests and in Actions. The
decide and promote steps build it from churn.promotion's result, never from printed lines.

The drift step compares the data @champion was trained on with the month in $SNAPSHOT (default:
the previous calendar month, UTC) and writes `drift=true|false` and `snapshot=YYYY-MM` to
$GITHUB_OUTPUT; the workflow's next step retrains on that month (`make retrain`) when drift is
true.

The decide step runs the gate without moving an alias (churn.promotion.decide: promote.py's gate
as a dry run) and writes `decision=promote|keep|nothing` and the versions it saw (`champion=`,
`challenger=`: a number or `none`) to $GITHUB_OUTPUT; its interval goes to the job summary. A
refusal is recorded there (ledger and evaluation run, as promote.py records one). The workflow's
promote job, bound to the `production` environment (whose required reviewers, when a repository
sets them, approve it), runs the promote step only on `promote`. Given DECIDED_CHAMPION and
DECIDED_CHALLENGER (the decision's versions), the promote step first checks that the registry
still holds them: if either alias moved since the decision it refuses with one line (exit 3),
moving nothing; a reviewer approves the decision they read, not another.

exit codes: as promote.py (see its --help), except that `promote` exits 0 when the gate keeps
the champion (promote.py's exit 1): a refusal is a normal outcome of a scheduled retrain, and any
other failure (2 usage, 3 registry state, 4 store unreachable) fails the job. `drift` exits 0
whether or not it finds drift (the output says which); any failure of the comparison fails.
`decide` exits 0 whatever the gate decides (the output says what).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from churn import cli, gate, pipeline, promotion, registry, settings, tracking
from churn.__main__ import status_line
from churn.commands import drift_report
from churn.errors import ChurnError, RegistryStateError, UsageError
from churn.lineage import format_lineage, lineage

if TYPE_CHECKING:
    from mlflow import MlflowClient


PROG = "deploy/ci.py"
# The GitHub environment pipeline.yml's promote job is bound to (its reviewers approve it).
PROMOTION_ENVIRONMENT = "production"


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
    from churn.drift import CHAMPION_REFERENCE, format_table
    from churn.registry_reads import alias_version

    month = os.environ.get("SNAPSHOT", "").strip() or previous_month()
    try:
        churn_data.generate(rows=1, snapshot=month)  # validates the month
    except ValueError as exc:
        raise UsageError(f"SNAPSHOT: {exc}") from exc
    client = tracking.connect(uri)
    with tracking.store_errors(uri):
        champion = alias_version(client, settings.CHAMPION)
    if champion is None:
        line = f"no @{settings.CHAMPION} yet: nothing to compare {month} with (no retrain on drift)"
        print(f"drift: {line}", file=sys.stderr)
        output(drift="false", snapshot=month)
        summary(f"### Drift\n{line}")
        return 0
    print(f"drift: @{settings.CHAMPION} v{champion}'s training data vs {month}", file=sys.stderr)
    params = settings.load_params()
    report = drift_report.compare(client, uri, params, CHAMPION_REFERENCE, month)
    drift_report.publish(client, uri, report, settings.REPORTS_DIR / "drift")
    table = "\n".join(format_table(report))
    print(table)
    drifted = report.level == "alert"
    output(drift=str(drifted).lower(), snapshot=month)
    verdict = (
        f"**drift** between the training data of @{settings.CHAMPION} v{champion} and {month}: "
        f"retraining on {month}"
        if drifted
        else f"no drift past the alert threshold between @{settings.CHAMPION} v{champion}'s "
        f"training data and {month}: no retrain on drift"
    )
    print(f"drift: {verdict.replace('**', '')}", file=sys.stderr)
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
    from churn.registry_reads import alias_version

    client, _ = pipeline.repro(uri, lambda msg: print(f"train: {msg}", file=sys.stderr, flush=True))
    md5 = file_md5(settings.DATA_FILE)
    with tracking.store_errors(uri):
        challenger = alias_version(client, settings.CHALLENGER)
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


def _gate_epsilon() -> float | None:
    """The workflow_dispatch input `epsilon` (GATE_EPSILON); None: params.yaml's."""
    epsilon = os.environ.get("GATE_EPSILON", "").strip()
    if not epsilon:
        return None
    try:
        value = float(epsilon)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UsageError(f"GATE_EPSILON must be a number >= 0, got '{epsilon}'")
    return value


def _dry_run() -> bool:
    """The workflow_dispatch input `dry_run` (DRY_RUN)."""
    dry_run = os.environ.get("DRY_RUN", "").strip().lower()
    if dry_run not in ("", "0", "false", "no", "1", "true", "yes"):
        raise UsageError(f"DRY_RUN must be true or false, got '{dry_run}'")
    return dry_run in ("1", "true", "yes")


def _version(v: int | None) -> str:
    return str(v) if v is not None else "none"


def _shown(v: int | None) -> str:
    return f"v{v}" if v is not None else "unset"


# decide's step output `decision`, the workflow's contract (pipeline.yml's promote job `if:`).
_DECISION = {
    promotion.WOULD_PROMOTE: "promote",
    promotion.KEPT: "keep",
    promotion.NOTHING: "nothing",
}


def decide(uri: str) -> int:
    """The gate, changing no alias: the decision to $GITHUB_OUTPUT, its interval to the summary."""
    epsilon, dry_run = _gate_epsilon(), _dry_run()
    params = settings.load_params()
    client = tracking.connect(uri)
    print("decide: the gate as promote.py applies it, moving no alias", file=sys.stderr)
    result = promotion.decide(
        client, uri, params, epsilon, record=not dry_run,
        note=lambda m: print(f"decide: {m}", file=sys.stderr),
    )  # fmt: skip
    output(
        decision=_DECISION[result.outcome],
        champion=_version(result.champion),
        challenger=_version(result.challenger),
    )
    serving = f"### Serving now\n{_serving(client, uri)}"
    d = result.decision
    if d is None:
        line = promotion.verdict(result)
        print(line)
        summary(f"### Decision\nnothing to promote: {line}\n\n{serving}")
        return 0
    verdict = _verdict(d, dry_run)
    print("\n".join([*promotion.report(result)[:-1], verdict.replace("**", "")]))
    summary("\n\n".join([f"### Decision\n{verdict}", *_evidence(d), serving]))
    return 0


def _evidence(d: gate.GateDecision) -> list[str]:
    """The job summary's scores table and, after a re-evaluation, the paired interval."""
    out = [promotion.score_table(d)]
    if d.paired is not None:
        out.append(f"Gate on the same holdout: `{gate.format_paired(d)}`")
    return out


def _serving(client: MlflowClient, uri: str) -> str:
    with tracking.store_errors(uri):
        try:
            return f"`{status_line(client)}`"
        except RegistryStateError:
            return f"no @{settings.CHAMPION} yet"


def _verdict(d: gate.GateDecision, dry_run: bool) -> str:
    if not d.promote:
        return f"**champion kept**: {gate.format_refusal(d)}"
    cold = " (cold start)" if d.champion is None else ""
    head = f"**WOULD PROMOTE: @{settings.CHAMPION} -> v{d.challenger.version}{cold}**"
    if dry_run:
        return f"{head} (dry run: no promote job, nothing changed)"
    return (
        f"{head}: the promote job moves it, once approved where the `{PROMOTION_ENVIRONMENT}` "
        "environment requires reviewers"
    )


def _decided() -> dict[str, int | None] | None:
    """The versions the decide job saw (DECIDED_CHAMPION, DECIDED_CHALLENGER: a number or
    `none`); None when not given (promote-ci run by hand: nothing to re-check)."""
    names = {settings.CHAMPION: "DECIDED_CHAMPION", settings.CHALLENGER: "DECIDED_CHALLENGER"}
    raw = {alias: os.environ.get(var, "").strip() for alias, var in names.items()}
    if not all(raw.values()):
        return None
    seen: dict[str, int | None] = {}
    for alias, value in raw.items():
        if value != "none" and not value.isdigit():
            raise UsageError(f"{names[alias]} must be a version number or 'none', got '{value}'")
        seen[alias] = None if value == "none" else int(value)
    return seen


def _check_unchanged(uri: str) -> None:
    """Refuse (exit 3, nothing moved) when @champion or @challenger moved since the decision."""
    from churn.registry import aliases

    seen = _decided()
    if seen is None:
        return
    client = tracking.connect(uri)
    with tracking.store_errors(uri):
        now = aliases(client)
    moved = [
        f"@{alias} {_shown(was)} -> {_shown(now.get(alias))}"
        for alias, was in seen.items()
        if now.get(alias) != was
    ]
    if moved:
        line = (
            f"the registry changed since the decision ({', '.join(moved)}): nothing was "
            "promoted; run the pipeline again to decide on what is there now"
        )
        summary(f"### Promotion\n**REFUSED**: {line}")
        raise RegistryStateError(line)


def promote(uri: str) -> int:
    """promote.py's promotion, in process: the job summary is built from its result."""
    _check_unchanged(uri)
    params = settings.load_params()
    epsilon, dry_run = _gate_epsilon(), _dry_run()
    options = promotion.Options(
        metric=params.gate.metric,
        epsilon=params.gate.epsilon if epsilon is None else epsilon,
        dry_run=dry_run,
        record=not dry_run,
    )
    then = "dry run: no move" if dry_run else "then the move"
    print(f"promote: the gate as promote.py applies it, {then}", file=sys.stderr, flush=True)
    try:
        client = tracking.connect(uri, writes=True)
        result = promotion.run(
            client, uri, params, options,
            note=lambda msg: print(f"promote: {msg}", file=sys.stderr),
            verify=registry.loads(f"register a loadable @{settings.CHALLENGER}"),
        )  # fmt: skip
    except ChurnError as exc:
        summary(f"### Promotion\n**FAILED**: the promotion exited {exc.exit_code}: {exc}")
        raise
    print("\n".join(promotion.report(result)), flush=True)  # before the stderr line below
    summary("\n\n".join(_promotion_report(client, uri, result)))
    if result.outcome == promotion.KEPT:
        print(f"promote: the gate kept the current champion ({promotion.verdict(result)})",
              file=sys.stderr)  # fmt: skip
    return 0


def _promotion_report(client: MlflowClient, uri: str, result: promotion.Promotion) -> list[str]:
    """The promote job's summary: verdict, scores, interval, what serves now and its lineage."""
    line = promotion.verdict(result)
    verdict = {
        promotion.PROMOTED: f"**{line}**",
        promotion.WOULD_PROMOTE: f"**{line}** (dry run: nothing changed)",
        promotion.KEPT: f"**champion kept**: {line}",
        promotion.NOTHING: f"nothing to promote: {line}",
    }[result.outcome]
    report = [f"### Promotion\n{verdict}"]
    if result.decision is not None:
        report.extend(_evidence(result.decision))
    moved = ", ".join(f"@{a} {_shown(was)} -> {_shown(to)}" for a, was, to in result.alias_moves)
    if moved:
        report.append(f"Aliases moved: {moved} (ledger record `{result.ledger_run}`)")
    report.append(f"### Serving\n{_serving(client, uri)}")
    with tracking.store_errors(uri):
        try:
            text = "\n".join(format_lineage(lineage(client)))
        except RegistryStateError as exc:  # no @champion (the gate kept none: nothing yet)
            text = str(exc)
    report.append(f"### Lineage of @{settings.CHAMPION}\n```text\n{text}\n```")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("step", choices=("data", "drift", "train", "decide", "promote"))
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking/registry URI")
    args = p.parse_args(argv)
    uri = settings.tracking_uri(args.tracking_uri)
    steps = {
        "data": data,
        "drift": lambda: drift(uri),
        "train": lambda: train(uri),
        "decide": lambda: decide(uri),
        "promote": lambda: promote(uri),
    }
    return cli.run(PROG, steps[args.step])


if __name__ == "__main__":
    raise SystemExit(main())
