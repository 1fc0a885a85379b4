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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from churn.errors import RegistryStateError, TrackingUnavailableError
from churn.settings import CHALLENGER, CHAMPION, LOWER_IS_BETTER, MODEL_NAME, PREV_CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

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
    exclude 0 on the better side: lower bound > 0, or upper bound < 0 when lower is better.
    With no champion (cold start) the challenger is promoted.
    """
    if champion is None:
        return GateDecision(True, metric, epsilon, None, challenger, None, paired)
    lower = metric in LOWER_IS_BETTER
    required = champion.score - epsilon if lower else champion.score + epsilon
    ok = _meets(challenger.score, required, lower)
    if paired is not None:
        ok = ok and (paired.high < 0.0 if lower else paired.low > 0.0)
    return GateDecision(ok, metric, epsilon, champion, challenger, required, paired)


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
        bound, side = ("upper", "< 0") if d.lower_is_better else ("lower", "> 0")
        value = d.paired.high if d.lower_is_better else d.paired.low
        return (
            f"GATE FAILED: {d.paired.confidence:.0%} CI {bound} bound {_signed(value)} is not "
            f"{side} (the difference may be noise). No change."
        )
    return f"GATE FAILED: needs {op} {d.required:.4f}. No change."


# ---------------------------------------------------------------------------------------------
# Reading the registry.


def aliases(client: MlflowClient, name: str = MODEL_NAME) -> dict[str, int]:
    """Every alias of `name` -> version, in one read. Raises RegistryStateError if no such model."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryStateError(
                f"model '{name}' is not in the registry: train one first (make pipeline)"
            ) from exc
        raise
    return {alias: int(version) for alias, version in (model.aliases or {}).items()}


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
# while held; its description says who holds it.
LOCK_NAME = f"{MODEL_NAME}.lock"
# Writes under the lock take seconds; a lock this old was left by a run that died.
LOCK_STALE_S = 120.0


@contextlib.contextmanager
def registry_lock(
    client: MlflowClient, holder: str, stale_after_s: float = LOCK_STALE_S
) -> Iterator[None]:
    """Hold the right to move the aliases of `churn` for the block, or raise RegistryStateError
    (changing nothing) when another run holds it."""
    from mlflow.exceptions import MlflowException

    who = f"{holder}, pid {os.getpid()} on {socket.gethostname()}"
    for attempt in (1, 2):
        try:
            client.create_registered_model(
                LOCK_NAME,
                tags={"held_by": who},
                description=f"Held by {who}: changes to the aliases of '{MODEL_NAME}' wait "
                f"for it. Delete this model only if that process is gone.",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        held = _held_lock(client)
        if held is None:  # released between our attempt and our read: try once more
            continue
        if held.age_s <= stale_after_s or attempt == 2:
            raise _in_progress(held.held_by, held.age_s)
        _take_over(client, held, stale_after_s)
    else:
        raise RegistryStateError(
            f"the registry lock '{LOCK_NAME}' keeps changing hands; nothing was changed: run again"
        )
    try:
        yield
    finally:
        _release(client)


@dataclass(frozen=True)
class _Lock:
    """One holding of the lock: a lock model is never re-created with the same creation time
    and holder, so these identify it."""

    held_by: str
    created_ms: int
    age_s: float

    @property
    def takeover_name(self) -> str:
        return f"{LOCK_NAME}.takeover.{self.created_ms}"


def _take_over(client: MlflowClient, stale: _Lock, stale_after_s: float) -> None:
    """Delete the stale lock `stale`, unless another run is taking it over (then raise).

    Deleting "the" lock is not safe on its own: two runs that both saw it stale would both
    delete it, and the second delete would remove the lock the first has just created. So the
    right to delete this one holding is itself taken by creating a model named after it (atomic:
    names are unique), and the lock is deleted only if it is still that holding. The marker is
    deleted afterwards; a run that creates it later finds a different lock (or none) and deletes
    nothing. Returns with no lock held: the caller creates its own."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            stale.takeover_name,
            description=f"Taking over the stale lock '{LOCK_NAME}' of {stale.held_by}.",
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
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
            log.warning(
                "taking over the registry lock left %.0f s ago by %s", stale.age_s, stale.held_by
            )
            client.delete_registered_model(LOCK_NAME)
        elif now is not None and now.age_s <= stale_after_s:
            # Another run took it over first and holds it now.
            raise _in_progress(now.held_by, now.age_s)
    finally:
        _drop(client, stale.takeover_name)


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
    return _Lock((lock.tags or {}).get("held_by", "unknown holder"), created_ms, age_s)


def _release(client: MlflowClient) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(LOCK_NAME)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return
        # The change itself is done; the lock expires after LOCK_STALE_S.
        log.warning(
            "could not release the registry lock '%s' (%s): it expires in %.0f s, "
            "or delete that model by hand",
            LOCK_NAME,
            _first_line(exc),
            LOCK_STALE_S,
        )


# ---------------------------------------------------------------------------------------------
# Promote.


@dataclass(frozen=True)
class PromoteResult:
    decision: GateDecision | None  # None: nothing to promote
    promoted: bool
    dry_run: bool


# (champion version, challenger version) -> both scored on one holdout with the paired interval,
# or None to gate on the logged metrics instead.
Reevaluator = Callable[[int, int], tuple[Candidate, Candidate, PairedDiff] | None]


def promote(
    client: MlflowClient,
    metric: str,
    epsilon: float,
    dry_run: bool = False,
    reevaluate: Reevaluator | None = None,
) -> PromoteResult:
    before = aliases(client)
    chal_v = before.get(CHALLENGER)
    if chal_v is None:
        return PromoteResult(None, False, dry_run)
    champ_v = before.get(CHAMPION)
    if champ_v == chal_v:
        _not_mid_change(client, before)
        raise RegistryStateError(
            f"@{CHAMPION} and @{CHALLENGER} both point at v{chal_v}: "
            f"delete @{CHALLENGER} or point it at a new version"
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
    if not decision.promote or dry_run:
        return PromoteResult(decision, False, dry_run)

    prev_before = before.get(PREV_CHAMPION)
    with registry_lock(client, "promote"):
        _recheck(client, {CHAMPION: champ_v, CHALLENGER: chal_v, PREV_CHAMPION: prev_before})
        _move(
            client, CHAMPION, chal_v, champ_v, prev_before,
            f"promotion of v{chal_v} failed before @{CHAMPION} moved ({{cause}}); "
            "aliases restored: run promote.py again",
        )  # fmt: skip
        # @champion has moved: the promotion happened. What follows is bookkeeping.
        # train.py sets @challenger without the lock: remove it only if it is still ours.
        if aliases(client).get(CHALLENGER) == chal_v:
            client.delete_registered_model_alias(MODEL_NAME, CHALLENGER)
        over = f"v{champ_v} ({metric}={champion.score:.4f})" if champion else "cold-start"
        client.set_model_version_tag(MODEL_NAME, str(chal_v), "promoted_over", over)
        client.set_model_version_tag(MODEL_NAME, str(chal_v), "validated_by", "promote.py")
    return PromoteResult(decision, True, False)


def _move(
    client: MlflowClient,
    alias: str,
    version: int,
    keep: int | None,
    prev_before: int | None,
    failure: str,
) -> None:
    """@prev-champion -> `keep` (when not None), then @`alias` -> `version`. If the second write
    fails, @prev-champion is put back to `prev_before` and TrackingUnavailableError says
    `failure` (its `{cause}` filled in): nothing is left half-moved."""
    wrote_prev = False
    try:
        if keep is not None:
            client.set_registered_model_alias(MODEL_NAME, PREV_CHAMPION, str(keep))
            wrote_prev = True
        client.set_registered_model_alias(MODEL_NAME, alias, str(version))
    except Exception as exc:
        if wrote_prev:
            _restore_alias(client, PREV_CHAMPION, prev_before)
        raise TrackingUnavailableError(failure.format(cause=_first_line(exc))) from exc


def _restore_alias(client: MlflowClient, alias: str, version: int | None) -> None:
    try:
        if version is None:
            client.delete_registered_model_alias(MODEL_NAME, alias)
        else:
            client.set_registered_model_alias(MODEL_NAME, alias, str(version))
    except Exception as exc:  # the store is failing: say exactly what is left to fix
        raise TrackingUnavailableError(
            f"could not restore @{alias} to {_v(version)} ({_first_line(exc)}): "
            f"set it by hand once the store is back"
        ) from exc


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


def rollback(client: MlflowClient, dry_run: bool = False) -> RollbackResult:
    """Swap @champion and @prev-champion, read together before either is written."""
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
    if dry_run:
        return RollbackResult(champ_v, prev_v, True)
    with registry_lock(client, "rollback"):
        _recheck(client, {CHAMPION: champ_v, PREV_CHAMPION: prev_v})
        try:
            client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(prev_v))
        except Exception as exc:
            raise TrackingUnavailableError(
                f"rollback failed before @{CHAMPION} moved ({_first_line(exc)}); nothing changed"
            ) from exc
        try:
            client.set_registered_model_alias(MODEL_NAME, PREV_CHAMPION, str(champ_v))
        except Exception as exc:
            _restore_alias(client, CHAMPION, champ_v)
            raise TrackingUnavailableError(
                f"rollback failed while moving @{PREV_CHAMPION} ({_first_line(exc)}); "
                f"@{CHAMPION} restored to v{champ_v}: run rollback.py again"
            ) from exc
        client.set_model_version_tag(MODEL_NAME, str(champ_v), "rolled_back", "true")
        # The restored champion is no longer "rolled back": keep the tags telling the truth.
        restored = client.get_model_version(MODEL_NAME, str(prev_v))
        if "rolled_back" in (restored.tags or {}):
            client.delete_model_version_tag(MODEL_NAME, str(prev_v), "rolled_back")
    return RollbackResult(champ_v, prev_v, False)


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


def register(client: MlflowClient, run_id: str, alias: str | None = None) -> Registration:
    """Register runs:/<run_id>/model as a new version of `churn`, and point `alias` at it.

    With an alias the whole change happens under the registry lock, like promote and rollback:
    a run that cannot take it registers nothing (RegistryStateError, exit 3), and the aliases are
    read under it. Pointing @champion at the new version keeps the escape hatch: the champion it
    replaces becomes @prev-champion first (so rollback.py undoes it)."""
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
        prev_before = before.get(PREV_CHAMPION)
        _move(
            client, alias, version, prev if prev != version else None, prev_before,
            f"registered v{version}, but setting @{alias} failed ({{cause}}); "
            f"aliases restored: set @{alias} with register.py or the UI",
        )  # fmt: skip
        if alias == CHAMPION:
            over = f"v{prev}" if prev is not None else "cold-start"
            client.set_model_version_tag(
                MODEL_NAME, str(version), "promoted_over", f"{over} (register.py, no gate)"
            )
        log.info("@%s: %s -> v%d", alias, _v(old), version)
    return Registration(version, source, alias, prev if prev != version else None)


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
    return int(mv.version), str(mv.run_id)
