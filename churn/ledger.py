"""The promotion ledger: one record per alias decision, kept in the tracking store itself.

MLflow keeps no history of alias moves: the registry only knows where @champion points now. Every
decision promote.py and rollback.py make (a refused gate included; dry runs excluded) appends a
run to the experiment `churn-ledger`, so the history follows the registry to a team server and
answers "what was the champion at time T, who moved it, and on what evidence?".

A record is one `create_run` whose tags carry every field (one write: it exists whole or not at
all); params and decision.json repeat them for the UI. A move's record is opened before its first
alias write (state "intent") and closed after it (done, undone, or left); `churn.moves` closes it
for a run that died in between. `history` shows a record that never got its outcome, or that
misses fields, flagged, and never counts an unfinished move as the champion.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from churn import settings
from churn.errors import RegistryStateError, first_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn.gate import GateDecision

LEDGER_EXPERIMENT = "churn-ledger"
TAG = "ledger."
_NOT_STORED = frozenset({"run_id", "state"})
# Decisions after which the record's alias points somewhere new ("forced": @champion moved
# outside the gate, by `register.py --alias champion --force --reason`).
MOVED = frozenset({"promoted", "rolled-back", "forced", "set"})
# A record whose alias was removed (`churn retire`).
REMOVED = "retired"
# A record's outcome: written whole at once (DONE), or opened before a move (INTENT) and closed
# after it; records written before states existed have none and count as DONE.
DONE, INTENT = "done", "intent"
# Why history flags a record (state -> what to show).
FLAGS = {
    INTENT: "INCOMPLETE: outcome not recorded",
    "undone": "UNDONE: the move was interrupted and put back",
    "left": "INTERRUPTED: another change moved @champion first",
    "damaged": "INCOMPLETE: fields missing",
}


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
    # paired bootstrap interval of challenger - champion), "live" (the outcomes of the customers
    # each served, churn.live_eval's unpaired interval) or "logged" (each run's own metric).
    gate: str | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    holdout_rows: int | None = None
    holdout_md5: str | None = None
    evaluation_run_id: str | None = None  # the run in churn-evaluations
    # Why, in the words of whoever moved it (required for a move outside the gate).
    reason: str | None = None
    source_run: str | None = None  # the training run of the version moved to (its evidence)
    state: str = DONE

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.decided_at)

    @property
    def counts(self) -> bool:
        """Whether the decision took effect as recorded."""
        return self.state == DONE


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


def append(
    client: MlflowClient, uri: str, record: Record, state: str = DONE, move_id: str | None = None
) -> Record:
    """Write `record` as one run of the ledger experiment; returns it with its run id.

    Every field goes into the tags of the `create_run` call, so the record exists whole or not
    at all; the params, decision.json and the end time that follow are copies for the UI."""
    from mlflow.entities import Param

    exp = _experiment_id(client, uri)
    when = int(record.time.timestamp() * 1000)
    values = {k: v for k, v in asdict(record).items() if v is not None and k not in _NOT_STORED}
    tags = {f"{TAG}{k}": str(v) for k, v in values.items()}
    tags[f"{TAG}state"] = state
    if move_id is not None:
        tags[f"{TAG}move_id"] = move_id
    run = client.create_run(
        exp, start_time=when, tags=tags, run_name=f"{record.action}: {_moved(record)}"
    )
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in values.items()])
    client.log_text(run.info.run_id, json.dumps(values, indent=2) + "\n", "decision.json")
    client.set_terminated(run.info.run_id, end_time=when)
    return Record(**{**asdict(record), "run_id": run.info.run_id, "state": state})


def close_move(client: MlflowClient, move_id: str, state: str) -> str | None:
    """Record the outcome of the move `move_id` (done, undone, left); returns its ledger run, or
    None when the move died before its record was opened (then no alias was written either)."""
    exp = client.get_experiment_by_name(LEDGER_EXPERIMENT)
    if exp is None:
        return None
    found = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{TAG}move_id` = '{move_id}'", max_results=1
    )
    if not found:
        return None
    run_id = str(found[0].info.run_id)
    client.set_tag(run_id, f"{TAG}state", state)
    return run_id


def annotate(client: MlflowClient, run_id: str, **fields: str | None) -> None:
    """Add evidence known only after the move (the evaluation run) to its record."""
    from mlflow.entities import Param, RunTag

    given = {k: v for k, v in fields.items() if v is not None}
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in given.items()],
        tags=[RunTag(f"{TAG}{k}", v) for k, v in given.items()],
    )


def _from_run(tags: dict[str, str], params: dict[str, str], run_id: str) -> Record:
    """The record in a ledger run: its tags (params for records older than them). A run cut off
    while being written, or edited by hand, gives a record flagged "damaged", never an error."""
    fields = {k.removeprefix(TAG): v for k, v in tags.items() if k.startswith(TAG)} or params
    try:
        return _parse(fields, run_id)
    except (KeyError, ValueError):
        return Record(
            action=fields.get("action", "?"),
            decision=fields.get("decision", "?"),
            alias=fields.get("alias", settings.CHAMPION),
            from_version=None,
            to_version=0,
            decided_at=fields.get("decided_at", _EPOCH),
            run_id=run_id,
            state="damaged",
        )


_EPOCH = "1970-01-01T00:00:00.000+00:00"


def _parse(params: dict[str, str], run_id: str) -> Record:
    def opt_int(key: str) -> int | None:
        return int(params[key]) if key in params else None

    def opt_float(key: str) -> float | None:
        return float(params[key]) if key in params else None

    record = Record(
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
        reason=params.get("reason"),
        source_run=params.get("source_run"),
        state=params.get("state", DONE),
    )
    record.time  # noqa: B018  (a decided_at that is not an ISO time is a damaged record)
    return record


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
        records += [_from_run(r.data.tags, r.data.params, r.info.run_id) for r in page]
        token = page.token
        if not token or (limit is not None and len(records) >= limit):
            break
    # Same-millisecond decisions keep their order by the ISO time (which has ms) then run order.
    records.sort(key=lambda r: r.decided_at, reverse=True)
    return records[:limit] if limit is not None else records


def champion_at(records: list[Record], at: datetime) -> Record | None:
    """The decision that put the then-current @champion in place at time `at` (None: none yet)."""
    for record in records:  # newest first
        moved = record.decision in MOVED and record.counts
        if record.alias == settings.CHAMPION and moved and record.time <= at:
            return record
    return None


def _moved(r: Record) -> str:
    if r.alias != settings.CHAMPION:  # @challenger, @prev-champion, any other alias
        if r.decision == REMOVED:
            return f"@{r.alias} v{r.to_version} removed"
        was = f"v{r.from_version} " if r.from_version is not None else ""
        return f"@{r.alias} {was}-> v{r.to_version}"
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
    flag = f"  [{FLAGS[r.state]}; ledger run {r.run_id}]" if r.state in FLAGS else ""
    why = f"  reason: {r.reason}" if r.reason else ""
    return (
        f"{when:<23}  {r.action:<10}  {r.decision:<11}  {moved:<11}  {r.metric or '-':<8}  "
        f"{score(r.champion_score):>8}  {score(r.challenger_score):>10}  {by}{flag}{why}"
    )


class LedgerError(RegistryStateError):
    """The registry changed (or was decided) but the ledger could not record it."""


def _append_or_report(client: MlflowClient, uri: str, record: Record, done: str) -> Record:
    try:
        return append(client, uri, record)
    except Exception as exc:
        raise LedgerError(
            f"{done}, but the ledger ({LEDGER_EXPERIMENT}) could not record it: {first_line(exc)}; "
            f"restore the experiment or record the decision by hand"
        ) from exc


def promotion_record(d: GateDecision, promoted: bool) -> Record:
    """The decision; with a paired re-evaluation, its scores and interval too."""
    champ = d.champion
    paired = d.paired
    return new_record(
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
        gate=(paired.evidence if paired else "logged") if champ is not None else None,
        diff=paired.diff if paired else None,
        ci_low=paired.low if paired else None,
        ci_high=paired.high if paired else None,
        holdout_rows=paired.rows if paired else None,
    )


def record_kept(
    client: MlflowClient,
    uri: str,
    d: GateDecision,
    holdout_md5: str | None = None,
    evaluation_run_id: str | None = None,
) -> Record:
    """A refused gate (no alias moved): one complete record. Moves open theirs in
    `churn.registry` before their first alias write."""
    record = replace(
        promotion_record(d, promoted=False),
        holdout_md5=holdout_md5,
        evaluation_run_id=evaluation_run_id,
    )
    return _append_or_report(client, uri, record, "the gate kept @champion")


def rollback_record(champion_before: int, prev_before: int, reason: str | None = None) -> Record:
    return new_record(
        action="rollback",
        decision="rolled-back",
        alias=settings.CHAMPION,
        from_version=champion_before,
        to_version=prev_before,
        reason=reason,
    )


def register_record(
    alias: str,
    before: int | None,
    version: int,
    source_run: str,
    reason: str | None,
    forced: bool = False,
) -> Record:
    """register.py --alias: a move outside the gate, on the record like the others; @champion
    only with --force and a reason (decision "forced")."""
    return new_record(
        action="register",
        decision="forced" if forced else "set",
        alias=alias,
        from_version=before,
        to_version=version,
        reason=reason,
        source_run=source_run,
    )


def train_record(
    before: int | None, version: int, source_run: str, metric: str, score: float | None
) -> Record:
    """train.py pointing @challenger at the version it registered; the evidence is its run and
    the gate metric that run logged."""
    return new_record(
        action="train",
        decision="set",
        alias=settings.CHALLENGER,
        from_version=before,
        to_version=version,
        metric=metric,
        challenger_score=score,
        challenger_version=version,
        source_run=source_run,
        reason="a new model trained (train.py)",
    )


def retire_record(version: int, reason: str) -> Record:
    """`churn retire`: @challenger removed from `version`, which is tagged retired."""
    return new_record(
        action="retire",
        decision=REMOVED,
        alias=settings.CHALLENGER,
        from_version=version,
        to_version=version,
        challenger_version=version,
        reason=reason,
    )
