"""The promotion ledger: one record per alias decision, kept in the tracking store itself.

MLflow keeps no history of alias moves: the registry only knows where @champion points now. Every
decision promote.py and rollback.py make (a refused gate included; dry runs excluded) appends a
run to the experiment `churn-ledger`, so the history follows the registry to a team server and
answers "what was the champion at time T, who moved it, and on what evidence?".
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from churn import settings
from churn.errors import RegistryStateError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn.registry import GateDecision, RollbackResult

LEDGER_EXPERIMENT = "churn-ledger"
# Decisions after which @champion points somewhere new.
MOVED = frozenset({"promoted", "rolled-back"})


@dataclass(frozen=True)
class Record:
    action: str  # promote | cold-start | rollback
    decision: str  # promoted | kept | rolled-back
    alias: str
    from_version: int | None
    to_version: int
    metric: str | None = None
    champion_score: float | None = None
    challenger_score: float | None = None
    epsilon: float | None = None
    challenger_version: int | None = None
    decided_at: str = ""
    by: str = ""
    git_commit: str | None = None
    ci_run_id: str | None = None
    run_id: str | None = None  # the ledger run, once written
    # How the scores were obtained: "holdout" (both re-scored on one fresh holdout, with the
    # paired bootstrap interval of challenger - champion) or "logged" (each run's own metric).
    gate: str | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    holdout_rows: int | None = None
    holdout_md5: str | None = None
    evaluation_run_id: str | None = None  # the run in churn-evaluations

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.decided_at)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary uid in a container
        return os.environ.get("USER", "unknown")


def new_record(**fields: object) -> Record:
    from churn.provenance import git_state

    commit, _ = git_state(settings.ROOT)
    return Record(
        decided_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        by=os.environ.get("GITHUB_ACTOR") or _who(),
        git_commit=commit,
        ci_run_id=os.environ.get("GITHUB_RUN_ID"),
        **fields,  # type: ignore[arg-type]
    )


def _experiment_id(client: MlflowClient, uri: str) -> str:
    from churn.tracking import ensure_experiment

    return ensure_experiment(client, uri, LEDGER_EXPERIMENT)


def append(client: MlflowClient, uri: str, record: Record) -> Record:
    """Write `record` as one run of the ledger experiment; returns it with its run id."""
    from mlflow.entities import Param, RunTag

    exp = _experiment_id(client, uri)
    when = int(record.time.timestamp() * 1000)
    run = client.create_run(exp, start_time=when, run_name=f"{record.action}: {_moved(record)}")
    values = {k: v for k, v in asdict(record).items() if v is not None and k != "run_id"}
    client.log_batch(
        run.info.run_id,
        params=[Param(k, str(v)) for k, v in values.items()],
        tags=[RunTag(f"ledger.{k}", str(v)) for k, v in values.items()],
    )
    client.log_text(run.info.run_id, json.dumps(values, indent=2) + "\n", "decision.json")
    client.set_terminated(run.info.run_id, end_time=when)
    return Record(**{**asdict(record), "run_id": run.info.run_id})


def _from_run(params: dict[str, str], run_id: str) -> Record:
    def opt_int(key: str) -> int | None:
        return int(params[key]) if key in params else None

    def opt_float(key: str) -> float | None:
        return float(params[key]) if key in params else None

    return Record(
        action=params["action"],
        decision=params["decision"],
        alias=params["alias"],
        from_version=opt_int("from_version"),
        to_version=int(params["to_version"]),
        metric=params.get("metric"),
        champion_score=opt_float("champion_score"),
        challenger_score=opt_float("challenger_score"),
        epsilon=opt_float("epsilon"),
        challenger_version=opt_int("challenger_version"),
        decided_at=params["decided_at"],
        by=params.get("by", ""),
        git_commit=params.get("git_commit"),
        ci_run_id=params.get("ci_run_id"),
        run_id=run_id,
        gate=params.get("gate"),
        diff=opt_float("diff"),
        ci_low=opt_float("ci_low"),
        ci_high=opt_float("ci_high"),
        holdout_rows=opt_int("holdout_rows"),
        holdout_md5=params.get("holdout_md5"),
        evaluation_run_id=params.get("evaluation_run_id"),
    )


def history(client: MlflowClient, limit: int | None = None) -> list[Record]:
    """Every ledger record, newest first."""
    exp = client.get_experiment_by_name(LEDGER_EXPERIMENT)
    if exp is None:
        return []
    records: list[Record] = []
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=min(limit or 1000, 1000),
            page_token=token,
        )
        records += [_from_run(r.data.params, r.info.run_id) for r in page]
        token = page.token
        if not token or (limit is not None and len(records) >= limit):
            break
    # Same-millisecond decisions keep their order by the ISO time (which has ms) then run order.
    records.sort(key=lambda r: r.decided_at, reverse=True)
    return records[:limit] if limit is not None else records


def champion_at(records: list[Record], at: datetime) -> Record | None:
    """The decision that put the then-current @champion in place at time `at` (None: none yet)."""
    for record in records:  # newest first
        if record.alias == settings.CHAMPION and record.decision in MOVED and record.time <= at:
            return record
    return None


def _moved(r: Record) -> str:
    if r.decision == "kept":
        return f"v{r.to_version} kept"
    return f"v{r.from_version} -> v{r.to_version}" if r.from_version else f"-> v{r.to_version}"


HEADER = (
    f"{'time (UTC)':<23}  {'action':<10}  {'decision':<11}  {'@champion':<11}  "
    f"{'metric':<8}  {'champion':>8}  {'challenger':>10}  by"
)


def format_record(r: Record) -> str:
    def score(v: float | None) -> str:
        return f"{v:.4f}" if v is not None else "-"

    moved = _moved(r)
    when = r.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    by = r.by + (f" (CI run {r.ci_run_id})" if r.ci_run_id else "")
    return (
        f"{when:<23}  {r.action:<10}  {r.decision:<11}  {moved:<11}  {r.metric or '-':<8}  "
        f"{score(r.champion_score):>8}  {score(r.challenger_score):>10}  {by}"
    )


class LedgerError(RegistryStateError):
    """The registry changed (or was decided) but the ledger could not record it."""


def _append_or_report(client: MlflowClient, uri: str, record: Record, done: str) -> Record:
    try:
        return append(client, uri, record)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise LedgerError(
            f"{done}, but the ledger ({LEDGER_EXPERIMENT}) could not record it: {first}; "
            f"restore the experiment or record the decision by hand"
        ) from exc


def record_promotion(
    client: MlflowClient,
    uri: str,
    d: GateDecision,
    promoted: bool,
    holdout_md5: str | None = None,
    evaluation_run_id: str | None = None,
) -> Record:
    """The decision; with a paired re-evaluation, its scores, interval and holdout too."""
    champ = d.champion
    paired = d.paired
    record = new_record(
        action="promote" if champ is not None else "cold-start",
        decision="promoted" if promoted else "kept",
        alias=settings.CHAMPION,
        from_version=champ.version if champ else None,
        to_version=d.challenger.version if promoted or champ is None else champ.version,
        metric=d.metric,
        champion_score=champ.score if champ else None,
        challenger_score=d.challenger.score,
        epsilon=d.epsilon,
        challenger_version=d.challenger.version,
        gate=("holdout" if paired else "logged") if champ is not None else None,
        diff=paired.diff if paired else None,
        ci_low=paired.low if paired else None,
        ci_high=paired.high if paired else None,
        holdout_rows=paired.rows if paired else None,
        holdout_md5=holdout_md5,
        evaluation_run_id=evaluation_run_id,
    )
    done = f"@champion moved to v{d.challenger.version}" if promoted else "the gate kept @champion"
    return _append_or_report(client, uri, record, done)


def record_rollback(client: MlflowClient, uri: str, r: RollbackResult) -> Record:
    record = new_record(
        action="rollback",
        decision="rolled-back",
        alias=settings.CHAMPION,
        from_version=r.champion_before,
        to_version=r.prev_before,
    )
    return _append_or_report(client, uri, record, f"@champion rolled back to v{r.prev_before}")
