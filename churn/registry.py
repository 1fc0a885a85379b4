"""Registry operations on model `churn`: the promotion gate, promote, rollback, register.

Rules every operation follows:
- read every alias it needs (one `get_registered_model` call gives all of them) before writing any;
- write only while holding the registry lock (`registry_lock`), and re-read under it: a run
  that lost a race to another writer changes nothing and says so (RegistryStateError, exit 3);
- write in an order where an interruption leaves a usable registry (the escape hatch
  @prev-champion first, @champion as the commit point), and undo what it wrote if a later
  write of the same move fails;
- explain each change with tags on the versions involved.
Functions return results; scripts print them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from churn import moves
from churn.describe import describe_version, lock_description
from churn.errors import ChurnError, RegistryStateError, TrackingUnavailableError
from churn.registry_reads import aliases
from churn.settings import CHALLENGER, CHAMPION, LOWER_IS_BETTER, MODEL_NAME, PREV_CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn import ledger

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The gate: pure logic, unit-tested branch by branch.


@dataclass(frozen=True)
class Candidate:
    version: int
    score: float


@dataclass(frozen=True)
class PairedDiff:
    """challenger - champion on one holdout, with a paired bootstrap confidence interval."""

    diff: float
    low: float
    high: float
    resamples: int
    rows: int
    confidence: float = 0.95


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    metric: str
    epsilon: float
    champion: Candidate | None
    challenger: Candidate
    # The score the challenger had to reach (None on cold start).
    required: float | None
    # Set when both were re-evaluated on one holdout: the interval must exclude 0 too.
    paired: PairedDiff | None = None

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    @property
    def margin_met(self) -> bool:
        if self.required is None:
            return True
        return _meets(self.challenger.score, self.required, self.lower_is_better)


def _meets(score: float, required: float, lower_is_better: bool) -> bool:
    ok = score <= required if lower_is_better else score >= required
    # Round-off in `champion + epsilon` must not flip a tie the printed numbers show as passing.
    return ok or math.isclose(score, required, rel_tol=0.0, abs_tol=1e-12)


def gate(
    champion: Candidate | None,
    challenger: Candidate,
    metric: str,
    epsilon: float,
    paired: PairedDiff | None = None,
) -> GateDecision:
    """Promote iff the challenger beats the champion by at least `epsilon` on `metric`.

    For metrics where lower is better (log_loss) the challenger must be at most champion - epsilon.
    With `paired` (both scored on one holdout) the bootstrap interval of the difference must also
    lie on the better side of 0 (`interval_passes`). With no champion (cold start) the
    challenger is promoted.

    A tie (both score the holdout identically: difference 0, interval [0, 0]) is refused with
    epsilon > 0 (it is not better by epsilon) and promoted with epsilon 0 ("at least as good"),
    so an identical retrain can take over when a team asks for that.
    """
    if champion is None:
        return GateDecision(True, metric, epsilon, None, challenger, None, paired)
    lower = metric in LOWER_IS_BETTER
    required = champion.score - epsilon if lower else champion.score + epsilon
    ok = _meets(challenger.score, required, lower)
    if paired is not None:
        ok = ok and interval_passes(paired, epsilon, lower)
    return GateDecision(ok, metric, epsilon, champion, challenger, required, paired)


def interval_passes(paired: PairedDiff, epsilon: float, lower_is_better: bool) -> bool:
    """The interval rule. epsilon > 0 ("better by epsilon"): the interval must exclude 0,
    lower bound > 0 (upper bound < 0 when lower is better). epsilon 0 ("at least as good"):
    it may touch 0, lower bound >= 0 (upper bound <= 0): no resample found the challenger
    worse, so a tie, [0, 0], passes and a difference that may be negative still does not."""
    bound = -paired.high if lower_is_better else paired.low
    return bound >= 0.0 if epsilon == 0 else bound > 0.0


def format_decision_header(d: GateDecision) -> list[str]:
    m = d.metric
    champ = (
        f"champion   : v{d.champion.version}  {m}={d.champion.score:.4f}"
        if d.champion
        else "champion   : none (cold start)"
    )
    return [champ, f"challenger : v{d.challenger.version}  {m}={d.challenger.score:.4f}"]


def _signed(x: float) -> str:
    """`+0.0123`; a difference that rounds to zero is `+0.0000`, never `-0.0000`."""
    return f"{round(x, 4) + 0.0:+.4f}"


def format_paired(d: GateDecision) -> str:
    """`paired diff auc=+0.0123  95% CI [+0.0071, +0.0176] (1000 bootstrap resamples, ...)`."""
    p = d.paired
    if p is None:
        raise ValueError("no paired evaluation in this decision")
    interval = f"{p.confidence:.0%} CI [{_signed(p.low)}, {_signed(p.high)}]"
    return (
        f"paired diff {d.metric}={_signed(p.diff)}  {interval} "
        f"({p.resamples} bootstrap resamples, {p.rows:,} holdout rows)"
    )


def format_refusal(d: GateDecision) -> str:
    op = "<=" if d.lower_is_better else ">="
    if d.margin_met and d.paired is not None:
        strict = d.epsilon != 0
        bound = "upper" if d.lower_is_better else "lower"
        side = ("<" if d.lower_is_better else ">") + ("" if strict else "=") + " 0"
        value = d.paired.high if d.lower_is_better else d.paired.low
        return (
            f"GATE FAILED: {d.paired.confidence:.0%} CI {bound} bound {_signed(value)} is not "
            f"{side} (the difference may be noise). No change."
        )
    return f"GATE FAILED: needs {op} {d.required:.4f}. No change."


# ---------------------------------------------------------------------------------------------
# Reading the registry.


def version_score(client: MlflowClient, version: int, metric: str, alias: str) -> Candidate:
    """The metric as logged by the version's source run (never a number from anywhere else)."""
    mv = client.get_model_version(MODEL_NAME, str(version))
    run = client.get_run(str(mv.run_id))
    if metric not in run.data.metrics:
        raise RegistryStateError(
            f"run {mv.run_id} (@{alias}, v{version}) has no metric '{metric}': "
            f"choose a logged metric with --metric"
        )
    return Candidate(version, float(run.data.metrics[metric]))


def _recheck(client: MlflowClient, expected: dict[str, int | None]) -> None:
    now = aliases(client)
    moved = {a: (v, now.get(a)) for a, v in expected.items() if now.get(a) != v}
    if moved:
        detail = ", ".join(
            f"@{a} {_v(old)} -> {_v(new)}" for a, (old, new) in sorted(moved.items())
        )
        raise RegistryStateError(
            f"the registry changed while deciding ({detail}); nothing was changed: run again"
        )


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "unset"


# ---------------------------------------------------------------------------------------------
# The registry lock: one writer of the aliases at a time.

# MLflow has no compare-and-set on aliases: two writers that each re-check and then write can
# interleave (A re-checks, B re-checks, A writes, B writes over it), leaving @champion and
# @prev-champion from two different decisions. Creating a registered model is atomic in every
# store (the name is unique), so a model with this name is the mutex. It is visible in the UI
# while held (MLflow has no atomic create that the UI hides); its description says it is a
# lock, who holds it and when it may be deleted.
LOCK_NAME = f"{MODEL_NAME}.lock"
# Writes under the lock take seconds; a lock this old was left by a run that died.
LOCK_STALE_S = 120.0
# What a create of a lock (or takeover marker) answers when another run holds that name. MLflow's
# SQL store reads the existing model to word its "already exists", so a name deleted between the
# insert and that read (its holder just released it) answers "does not exist": a lost race too.
_TAKEN = frozenset({"RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"})


@contextlib.contextmanager
def registry_lock(
    client: MlflowClient, holder: str, stale_after_s: float = LOCK_STALE_S
) -> Iterator[None]:
    """Hold the right to move the aliases of `churn` for the block, or raise RegistryStateError
    (changing nothing) when another run holds it. A stale lock (its process is gone, or it is
    older than `stale_after_s`) is taken over, and the move it declared settled first.
    A block that ends in MoveInterrupted keeps the lock: it carries the unfinished move."""
    token = uuid.uuid4().hex
    who = f"{holder}, pid {os.getpid()} on {socket.gethostname()}"
    for attempt in (1, 2):
        if _create_lock(client, who, token, stale_after_s):
            break
        held = _held_lock(client)
        if held is None:  # released between our attempt and our read: try once more
            continue
        if held.token == token:  # our create landed; its answer was lost
            break
        if not held.stale(stale_after_s) or attempt == 2:
            raise _in_progress(held.held_by, held.age_s)
        _take_over(client, held, stale_after_s)
    else:
        raise RegistryStateError(
            f"the registry lock '{LOCK_NAME}' keeps changing hands; nothing was changed: run again"
        )
    keep = False
    try:
        yield
    except moves.MoveInterrupted:
        keep = True
        raise
    finally:
        if not keep:
            _release(client)


def _create_lock(client: MlflowClient, who: str, token: str, stale_after_s: float) -> bool:
    """Create the lock model; False if it exists. A create whose answer is lost may have landed:
    the caller's read of the lock tells (its token is ours)."""
    from mlflow.exceptions import MlflowException

    pid, host = str(os.getpid()), socket.gethostname()
    try:
        client.create_registered_model(
            LOCK_NAME,
            tags={"held_by": who, "token": token, "pid": pid, "host": host},
            description=lock_description(who, stale_after_s),
        )
        return True
    except MlflowException as exc:
        if exc.error_code in _TAKEN:
            return False
        with contextlib.suppress(Exception):
            held = _held_lock(client)
            if held is not None and held.token == token:
                return True
        raise


@dataclass(frozen=True)
class _Lock:
    """One holding of the lock: a lock model is never re-created with the same creation time
    and holder, so these identify it."""

    held_by: str
    created_ms: int
    age_s: float
    token: str = ""
    pid: int | None = None
    host: str = ""
    intent: str | None = None  # the move it declared (churn.moves), JSON

    @property
    def takeover_name(self) -> str:
        return f"{LOCK_NAME}.takeover.{self.created_ms}"

    @property
    def gone(self) -> bool:
        """Its process is known to be gone: on this host, another pid, and none such runs."""
        if self.pid is None or self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, someone else's
            return False
        return False

    def stale(self, stale_after_s: float) -> bool:
        return self.age_s > stale_after_s or self.gone

    @property
    def why_stale(self) -> str:
        return "its process is gone" if self.gone else f"{self.age_s:.0f} s old"


def _take_over(client: MlflowClient, stale: _Lock, stale_after_s: float) -> None:
    """Settle the move the stale lock `stale` declared and delete it, unless another run is
    taking it over (then raise).

    Deleting "the" lock is not safe on its own: two runs that both saw it stale would both
    delete it, and the second delete would remove the lock the first has just created. So the
    right to settle and delete this one holding is itself taken by creating a model named after
    it (atomic: names are unique), and the lock is deleted only if it is still that holding. The
    marker is deleted afterwards; a run that creates it later finds a different lock (or none)
    and deletes nothing. If settling fails (the store fails), the stale lock stays for the next
    run. Returns with no lock held: the caller creates its own."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            stale.takeover_name,
            description=f"Taking over the stale lock '{LOCK_NAME}' of {stale.held_by}.",
        )
    except MlflowException as exc:
        if exc.error_code not in _TAKEN:
            raise
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return  # another run has just taken it over and is done: the caller tries again
        marker = client.get_registered_model(stale.takeover_name)
        if time.time() - (marker.creation_timestamp or 0) / 1000 > stale_after_s:
            # The run taking it over died too: only a person can tell that no change is running.
            raise RegistryStateError(
                f"the registry lock '{LOCK_NAME}' was left by {stale.held_by}, and so was a "
                f"takeover of it; if no change to '{MODEL_NAME}' is running, delete the models "
                f"'{LOCK_NAME}' and '{stale.takeover_name}' (mlflow ui) and run again"
            ) from None
        raise _in_progress(
            f"another run is taking over the stale lock of {stale.held_by}", stale.age_s
        ) from None
    try:
        now = _held_lock(client)
        if now is not None and (now.held_by, now.created_ms) == (stale.held_by, stale.created_ms):
            account = "it declared no alias move"
            if now.intent:
                _, account = moves.settle(client, moves.Move.from_json(now.intent))
            log.warning(
                "took over the registry lock of %s (%s): %s",
                stale.held_by,
                stale.why_stale,
                account,
            )
            client.delete_registered_model(LOCK_NAME)
        elif now is not None and not now.stale(stale_after_s):
            # Another run took it over first and holds it now.
            raise _in_progress(now.held_by, now.age_s)
    finally:
        _drop(client, stale.takeover_name)


def recover(client: MlflowClient, stale_after_s: float = LOCK_STALE_S) -> None:
    """Settle the move of a lock left by a run that died (see `_take_over`) before reading the
    aliases: they may be that move half-done (e.g. @champion == @challenger)."""
    held = _held_lock(client)
    if held is not None and held.stale(stale_after_s):
        with registry_lock(client, "recovery", stale_after_s):
            pass


def _drop(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            log.warning("could not delete '%s' (%s): delete it by hand", name, _first_line(exc))


def _in_progress(held_by: str, age_s: float) -> RegistryStateError:
    return RegistryStateError(
        f"another change to '{MODEL_NAME}' is in progress ({held_by}, for {age_s:.1f} s);"
        f" nothing was changed: run again when it has finished"
    )


def _not_mid_change(client: MlflowClient, seen: dict[str, int]) -> None:
    """Before refusing on aliases that should never coincide, make sure they are not another
    run's change half-done (MLflow moves aliases one at a time): say so instead."""
    held = _held_lock(client)
    if held is not None:
        raise _in_progress(held.held_by, held.age_s)
    _recheck(client, {alias: seen.get(alias) for alias in (CHAMPION, CHALLENGER, PREV_CHAMPION)})


def _held_lock(client: MlflowClient) -> _Lock | None:
    from mlflow.exceptions import MlflowException

    try:
        lock = client.get_registered_model(LOCK_NAME)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    created_ms = int(lock.creation_timestamp or 0)
    age_s = max(0.0, time.time() - created_ms / 1000)
    tags = lock.tags or {}
    pid = tags.get("pid", "")
    return _Lock(
        tags.get("held_by", "unknown holder"),
        created_ms,
        age_s,
        token=tags.get("token", ""),
        pid=int(pid) if pid.isdigit() else None,
        host=tags.get("host", ""),
        intent=tags.get(moves.INTENT_TAG),
    )


def _release(client: MlflowClient) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(LOCK_NAME)
    except Exception as exc:
        if isinstance(exc, MlflowException) and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return
        # The change itself is done and settled; the lock is taken over once stale.
        log.warning(
            "could not release the registry lock '%s' (%s): it expires in %.0f s, "
            "or delete that model by hand",
            LOCK_NAME,
            _first_line(exc),
            LOCK_STALE_S,
        )


# ---------------------------------------------------------------------------------------------
# Carrying out a move (churn.moves): declared, recorded, written, settled if cut.

# MLflow error codes for a request the store refused (not one that failed to arrive or answer).
_REFUSED = frozenset(
    {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS",
     "INVALID_STATE", "NOT_FOUND"}
)  # fmt: skip


def store_outage(exc: BaseException) -> bool:
    """The store failed to answer (or answered an error of its own), as opposed to refusing."""
    from churn.tracking import is_store_error

    if isinstance(exc, ChurnError):
        return False
    if getattr(exc, "error_code", None) in _REFUSED:
        return False
    return is_store_error(exc) or isinstance(exc, (ConnectionError, TimeoutError))


def _failure(exc: BaseException, message: str) -> ChurnError:
    if getattr(exc, "error_code", None) in _REFUSED:
        return RegistryStateError(message)
    return TrackingUnavailableError(message)


def _carry_out(
    client: MlflowClient, move: moves.Move, uri: str | None, record: ledger.Record | None
) -> str | None:
    """Declare `move` on the lock, open its ledger record, write it, close the record; returns
    the record's run id. A failed or unanswered write is settled at once (re-read, then finished
    or undone): finished, this returns; undone, it raises; with the store not answering the
    re-read, MoveInterrupted (the lock keeps the move for the next run)."""
    from churn import ledger

    try:
        client.set_registered_model_tag(LOCK_NAME, moves.INTENT_TAG, move.to_json())
    except Exception as exc:
        raise _failure(
            exc, f"{move.what} failed before any alias was written ({_first_line(exc)}): run again"
        ) from exc
    run_id = None
    try:
        if record is not None and uri is not None:
            run_id = ledger.append(client, uri, record, ledger.INTENT, move.move_id).run_id
        moves.write_steps(client, move)
        if run_id is not None:
            client.set_tag(run_id, f"{ledger.TAG}state", ledger.DONE)
        return run_id
    except Exception as exc:
        cause = _first_line(exc)
        try:
            outcome, account = moves.settle(client, move)
        except Exception as again:
            raise moves.MoveInterrupted(
                f"{move.what}: the store failed at a write ({cause}) and then at the re-read "
                f"({_first_line(again)}), so which aliases moved is unknown; the registry lock "
                f"keeps the move, and the next promote.py, rollback.py or register.py --alias "
                f"finishes or undoes it"
            ) from exc
        if outcome == "done":
            log.warning(
                "a write failed (%s), then re-read: %s", cause, account.removeprefix("its ")
            )
            return run_id
        raise _failure(
            exc, f"{move.what} failed ({cause}); re-read: {account.removeprefix('its ')}: run again"
        ) from exc


def loads(what_next: str) -> Callable[[int], None]:
    """A check for promote/rollback: the target version loads (churn.loading), or exit 3.
    `what_next` may name the version as {version}."""

    def check(version: int) -> None:
        from churn.loading import load_verified

        load_verified(MODEL_NAME, version, what_next.format(version=version))

    return check


# ---------------------------------------------------------------------------------------------
# Promote.


@dataclass(frozen=True)
class PromoteResult:
    decision: GateDecision | None  # None: nothing to promote
    promoted: bool
    dry_run: bool
    ledger_run: str | None = None  # the move's record (churn.ledger)


# (champion version, challenger version) -> both scored on one holdout with the paired interval,
# or None to gate on the logged metrics instead.
Reevaluator = Callable[[int, int], tuple[Candidate, Candidate, PairedDiff] | None]


def promote(
    client: MlflowClient,
    metric: str,
    epsilon: float,
    dry_run: bool = False,
    reevaluate: Reevaluator | None = None,
    verify: Callable[[int], None] | None = None,
    uri: str | None = None,
) -> PromoteResult:
    """Gate @challenger against @champion and move the aliases if it passes. `verify` checks
    that a challenger the re-evaluation did not load loads (see `loads`); with `uri` the move is
    on the ledger (opened before the first alias write)."""
    if not dry_run:
        recover(client)
    before = aliases(client)
    chal_v = before.get(CHALLENGER)
    if chal_v is None:
        return PromoteResult(None, False, dry_run)
    champ_v = before.get(CHAMPION)
    if champ_v == chal_v:
        _not_mid_change(client, before)
        raise RegistryStateError(
            f"@{CHAMPION} and @{CHALLENGER} both point at v{chal_v}: retire the challenger "
            'with churn retire --reason "why", or train a new one'
        )
    fresh = reevaluate(champ_v, chal_v) if reevaluate is not None and champ_v is not None else None
    champion: Candidate | None
    if fresh is not None:
        champion, challenger, paired = fresh
        decision = gate(champion, challenger, metric, epsilon, paired)
    else:
        challenger = version_score(client, chal_v, metric, CHALLENGER)
        champion = version_score(client, champ_v, metric, CHAMPION) if champ_v is not None else None
        decision = gate(champion, challenger, metric, epsilon)
        if decision.promote and verify is not None:
            verify(chal_v)
    if not decision.promote or dry_run:
        return PromoteResult(decision, False, dry_run)

    with registry_lock(client, "promote"):
        _recheck(client, {a: before.get(a) for a in (CHAMPION, CHALLENGER, PREV_CHAMPION)})
        over = f"v{champ_v} ({metric}={champion.score:.4f})" if champion else "cold-start"
        # @prev-champion first (the escape hatch), @champion the commit point, then @challenger.
        keep = ((PREV_CHAMPION, champ_v),) if champ_v is not None else ()
        move = moves.Move(
            "promote", CHAMPION, chal_v, before,
            (*keep, (CHAMPION, chal_v), (CHALLENGER, None)),
            ((chal_v, "promoted_over", over), (chal_v, "validated_by", "promote.py")),
        )  # fmt: skip
        record = _record(uri, lambda ledger: ledger.promotion_record(decision, promoted=True))
        run = _carry_out(client, move, uri, record)
    return PromoteResult(decision, True, False, run)


def _record(uri: str | None, build: Callable[[Any], ledger.Record]) -> ledger.Record | None:
    if uri is None:
        return None
    from churn import ledger

    return build(ledger)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Rollback.


@dataclass(frozen=True)
class RollbackResult:
    champion_before: int
    prev_before: int
    dry_run: bool
    ledger_run: str | None = None


def rollback(
    client: MlflowClient,
    dry_run: bool = False,
    verify: Callable[[int], None] | None = None,
    uri: str | None = None,
    reason: str | None = None,
) -> RollbackResult:
    """Swap @champion and @prev-champion, read together before either is written. `verify` and
    `uri` as in `promote`."""
    if not dry_run:
        recover(client)
    before = aliases(client)
    for alias in (CHAMPION, PREV_CHAMPION):
        if alias not in before:
            raise RegistryStateError(
                f"alias @{alias} not set on '{MODEL_NAME}': cannot roll back"
                + (
                    " (nothing has been promoted over a champion yet)"
                    if alias == PREV_CHAMPION
                    else ""
                )
            )
    champ_v, prev_v = before[CHAMPION], before[PREV_CHAMPION]
    if champ_v == prev_v:
        _not_mid_change(client, before)
        raise RegistryStateError(
            f"@{CHAMPION} and @{PREV_CHAMPION} both point at v{champ_v}: nothing to roll back to"
        )
    if verify is not None:
        verify(prev_v)
    if dry_run:
        return RollbackResult(champ_v, prev_v, True)
    with registry_lock(client, "rollback"):
        _recheck(client, {CHAMPION: champ_v, PREV_CHAMPION: prev_v})
        # The restored champion is no longer "rolled back": keep the tags telling the truth.
        move = moves.Move(
            "rollback", CHAMPION, prev_v, before,
            ((CHAMPION, prev_v), (PREV_CHAMPION, champ_v)),
            ((champ_v, "rolled_back", "true"), (prev_v, "rolled_back", None)),
        )  # fmt: skip
        record = _record(uri, lambda ledger: ledger.rollback_record(champ_v, prev_v, reason))
        run = _carry_out(client, move, uri, record)
    return RollbackResult(champ_v, prev_v, False, run)


def format_rollback(r: RollbackResult) -> list[str]:
    head = "DRY RUN: would roll back" if r.dry_run else "ROLLBACK:"
    pad = " " * len(head)
    return [
        f"{head} @{CHAMPION}      v{r.champion_before} -> v{r.prev_before}",
        f"{pad} @{PREV_CHAMPION} v{r.prev_before} -> v{r.champion_before}",
    ]


# ---------------------------------------------------------------------------------------------
# Register.


def best_run(client: MlflowClient, experiment_id: str, metric: str) -> str:
    """The finished run of the experiment with the best `metric` (lowest for log_loss)."""
    order = "ASC" if metric in LOWER_IS_BETTER else "DESC"
    found = client.search_runs(
        [experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=[f"metrics.`{metric}` {order}"],
        max_results=50,
    )
    runs = [r for r in found if metric in r.data.metrics]
    if not runs:
        raise RegistryStateError(
            f"no finished run in the experiment has metric '{metric}': train first (make pipeline)"
        )
    return str(runs[0].info.run_id)


@dataclass(frozen=True)
class Registration:
    version: int
    run_id: str
    alias: str | None = None
    # With alias champion: the champion it replaced, now @prev-champion (None: cold start).
    prev_champion: int | None = None

    def lines(self) -> list[str]:
        out = [f"registered {MODEL_NAME} v{self.version}, source run {self.run_id}"]
        if self.prev_champion is not None:
            out.append(f"@{PREV_CHAMPION} -> v{self.prev_champion}")
        if self.alias is not None:
            out.append(f"@{self.alias} -> v{self.version}")
        return out


class GateBypassError(RegistryStateError):
    """@champion asked to move outside the gate without the override and its reason."""


def check_override(alias: str | None, force: bool, reason: str | None) -> None:
    """@champion moves outside the gate only with `force` and a reason (GateBypassError)."""
    if alias == CHAMPION and not (force and reason):
        raise GateBypassError(
            f"--alias {CHAMPION} moves @{CHAMPION} outside the gate: register as "
            f'@{CHALLENGER} and run promote.py, or pass --force --reason "why" to do it '
            f"on the record"
        )


def register(
    client: MlflowClient,
    run_id: str,
    alias: str | None = None,
    uri: str | None = None,
    reason: str | None = None,
    force: bool = False,
) -> Registration:
    """Register runs:/<run_id>/model as a new version of `churn`, and point `alias` at it.

    With an alias the whole change happens under the registry lock, like promote and rollback:
    a run that cannot take it registers nothing (RegistryStateError, exit 3), and the aliases are
    read under it; with `uri` the move is on the ledger, `reason` included. @champion moves here
    only with `force` and a reason (else GateBypassError, nothing registered): it skips the gate.
    The champion it replaces becomes @prev-champion first (so rollback.py undoes it)."""
    check_override(alias, force, reason)
    if alias is None:
        version, source = _register(client, run_id)
        return Registration(version, source)
    _check_run(client, run_id)  # a bad id is a usage problem, not a reason to take the lock
    with registry_lock(client, "register"):
        try:
            before = aliases(client)
        except RegistryStateError:  # the first version of the model
            before = {}
        version, source = _register(client, run_id)
        old = before.get(alias)
        prev = before.get(CHAMPION) if alias == CHAMPION else None
        keep = ((PREV_CHAMPION, prev),) if prev is not None else ()
        tags: tuple[tuple[int, str, str | None], ...] = ()
        if alias == CHAMPION:
            over = f"v{prev}" if prev is not None else "cold-start"
            tags = ((version, "promoted_over", f"{over} (register.py --force, no gate)"),)
        move = moves.Move("register", alias, version, before, (*keep, (alias, version)), tags)
        record = _record(
            uri,
            lambda ledger: ledger.register_record(
                alias, old, version, source, reason, forced=alias == CHAMPION
            ),
        )
        _carry_out(client, move, uri, record)
        log.info("@%s: %s -> v%d", alias, _v(old), version)
    return Registration(version, source, alias, prev)


def set_challenger(
    client: MlflowClient, version: int, uri: str, source_run: str, metric: str
) -> str:
    """train.py's @challenger -> `version`, on the ledger; returns the record's run id.

    Not under the registry lock: a training run of minutes must not fail because a promotion
    holds it for seconds, and promote re-checks @challenger under the lock before it moves
    anything. The record is opened before the write and closed after it; a write that fails
    leaves it flagged incomplete in `history`."""
    from churn import ledger

    before = aliases(client).get(CHALLENGER)
    score = client.get_run(source_run).data.metrics.get(metric)
    record = ledger.train_record(before, version, source_run, metric, score)
    opened = ledger.append(client, uri, record, ledger.INTENT)
    assert opened.run_id is not None
    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, str(version))
    client.set_tag(opened.run_id, f"{ledger.TAG}state", ledger.DONE)
    return opened.run_id


# ---------------------------------------------------------------------------------------------
# Retire.


@dataclass(frozen=True)
class RetireResult:
    version: int  # the version @challenger was removed from (tagged retired)
    reason: str
    dry_run: bool
    ledger_run: str | None = None


def retire(
    client: MlflowClient, reason: str, dry_run: bool = False, uri: str | None = None
) -> RetireResult | None:
    """Remove @challenger (a refused or unwanted candidate), tag its version `retired` with
    `reason`, and with `uri` record it on the ledger. None: there is no @challenger."""
    if not dry_run:
        recover(client)
    before = aliases(client)
    chal_v = before.get(CHALLENGER)
    if chal_v is None:
        return None
    if dry_run:
        return RetireResult(chal_v, reason, True)
    with registry_lock(client, "retire"):
        _recheck(client, {CHALLENGER: chal_v})
        move = moves.Move(
            "retire", CHALLENGER, chal_v, before,
            ((CHALLENGER, None),), ((chal_v, "retired", reason),),
        )  # fmt: skip
        record = _record(uri, lambda ledger: ledger.retire_record(chal_v, reason))
        run = _carry_out(client, move, uri, record)
    return RetireResult(chal_v, reason, False, run)


def _check_run(client: MlflowClient, run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryStateError(f"run '{run_id}' not found: check the id (mlflow ui)") from exc
        raise


def _register(client: MlflowClient, run_id: str) -> tuple[int, str]:
    """Register runs:/<run_id>/model as a new version of `churn`; returns (version, run_id)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    _check_run(client, run_id)
    try:
        mv = mlflow.register_model(f"runs:/{run_id}/model", MODEL_NAME)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryStateError(
                f"run '{run_id}' has no logged model named 'model': nothing to register"
            ) from exc
        raise
    run = client.get_run(run_id)
    for key in ("data_md5", "training_data"):
        if key in run.data.tags:
            client.set_model_version_tag(MODEL_NAME, mv.version, key, run.data.tags[key])
    describe_version(client, int(mv.version), run_id)
    return int(mv.version), str(mv.run_id)
