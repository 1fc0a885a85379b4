"""Registry operations on model `churn`: promote, rollback, register, retire, set @challenger.

The gate they apply is churn.gate (pure), the lock they hold churn.registry_lock, the alias moves
they write churn.moves; recording and reporting a promotion is churn.promotion.

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

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from churn import moves
from churn.describe import describe_version
from churn.errors import ChurnError, RegistryStateError, TrackingUnavailableError, first_line
from churn.gate import Candidate, GateDecision, Reevaluator, gate
from churn.registry_lock import LOCK_NAME, not_mid_change, recheck, recover, registry_lock
from churn.registry_reads import aliases
from churn.settings import CHALLENGER, CHAMPION, LOWER_IS_BETTER, MODEL_NAME, PREV_CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn import ledger

log = logging.getLogger(__name__)


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
            exc, f"{move.what} failed before any alias was written ({first_line(exc)}): run again"
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
        cause = first_line(exc)
        try:
            outcome, account = moves.settle(client, move)
        except Exception as again:
            raise moves.MoveInterrupted(
                f"{move.what}: the store failed at a write ({cause}) and then at the re-read "
                f"({first_line(again)}), so which aliases moved is unknown; the registry lock "
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
    move: moves.Move | None = None  # the alias moves and version tags written


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
        not_mid_change(client, before)
        raise RegistryStateError(
            f"@{CHAMPION} and @{CHALLENGER} both point at v{chal_v}: retire the challenger "
            'with churn retire --reason "why", or train a new one'
        )
    decision = _decide(client, champ_v, chal_v, metric, epsilon, reevaluate, verify)
    if not decision.promote or dry_run:
        return PromoteResult(decision, False, dry_run)

    with registry_lock(client, "promote"):
        recheck(client, {a: before.get(a) for a in (CHAMPION, CHALLENGER, PREV_CHAMPION)})
        champion = decision.champion
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
    return PromoteResult(decision, True, False, run, move)


def _decide(
    client: MlflowClient,
    champ_v: int | None,
    chal_v: int,
    metric: str,
    epsilon: float,
    reevaluate: Reevaluator | None,
    verify: Callable[[int], None] | None,
) -> GateDecision:
    """The gate on fresh scores when `reevaluate` gives them, else on the logged metrics (then
    `verify` checks that a challenger about to be promoted loads)."""
    fresh = reevaluate(champ_v, chal_v) if reevaluate is not None and champ_v is not None else None
    if fresh is not None:
        champion, challenger, paired = fresh
        return gate(champion, challenger, metric, epsilon, paired)
    logged = version_score(client, chal_v, metric, CHALLENGER)
    held = version_score(client, champ_v, metric, CHAMPION) if champ_v is not None else None
    decision = gate(held, logged, metric, epsilon)
    if decision.promote and verify is not None:
        verify(chal_v)
    return decision


def _record(uri: str | None, build: Callable[[Any], ledger.Record]) -> ledger.Record | None:
    if uri is None:
        return None
    from churn import ledger

    return build(ledger)


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
        not_mid_change(client, before)
        raise RegistryStateError(
            f"@{CHAMPION} and @{PREV_CHAMPION} both point at v{champ_v}: nothing to roll back to"
        )
    if verify is not None:
        verify(prev_v)
    if dry_run:
        return RollbackResult(champ_v, prev_v, True)
    with registry_lock(client, "rollback"):
        recheck(client, {CHAMPION: champ_v, PREV_CHAMPION: prev_v})
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
        log.info("@%s: %s -> v%s", alias, old if old is not None else "unset", version)
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
        recheck(client, {CHALLENGER: chal_v})
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
