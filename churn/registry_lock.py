"""The registry lock: one writer of the aliases of model `churn` at a time.

Every alias move (churn.registry) is written while holding it, after re-reading the aliases under
it (`recheck`): a run that lost a race changes nothing and says so (RegistryStateError, exit 3).
A lock left by a run that died is taken over, and the move it declared (churn.moves) settled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from churn import moves
from churn.describe import lock_description
from churn.errors import RegistryStateError, first_line
from churn.registry_reads import aliases
from churn.settings import CHALLENGER, CHAMPION, MODEL_NAME, PREV_CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

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
            raise in_progress(held.held_by, held.age_s)
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
        raise in_progress(
            f"another run is taking over the stale lock of {stale.held_by}", stale.age_s
        ) from None
    try:
        _settle_and_delete(client, stale, stale_after_s)
    finally:
        _drop(client, stale.takeover_name)


def _settle_and_delete(client: MlflowClient, stale: _Lock, stale_after_s: float) -> None:
    """With the takeover marker held: if the lock is still the stale holding, settle the move it
    declared and delete it; if another run took it over first and holds it, say so."""
    now = _held_lock(client)
    if now is not None and (now.held_by, now.created_ms) == (stale.held_by, stale.created_ms):
        account = "it declared no alias move"
        if now.intent:
            _, account = moves.settle(client, moves.Move.from_json(now.intent))
        log.warning(
            "took over the registry lock of %s (%s): %s", stale.held_by, stale.why_stale, account
        )
        client.delete_registered_model(LOCK_NAME)
    elif now is not None and not now.stale(stale_after_s):
        raise in_progress(now.held_by, now.age_s)


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
            log.warning("could not delete '%s' (%s): delete it by hand", name, first_line(exc))


def in_progress(held_by: str, age_s: float) -> RegistryStateError:
    return RegistryStateError(
        f"another change to '{MODEL_NAME}' is in progress ({held_by}, for {age_s:.1f} s);"
        f" nothing was changed: run again when it has finished"
    )


def not_mid_change(client: MlflowClient, seen: dict[str, int]) -> None:
    """Before refusing on aliases that should never coincide, make sure they are not another
    run's change half-done (MLflow moves aliases one at a time): say so instead."""
    held = _held_lock(client)
    if held is not None:
        raise in_progress(held.held_by, held.age_s)
    recheck(client, {alias: seen.get(alias) for alias in (CHAMPION, CHALLENGER, PREV_CHAMPION)})


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
            first_line(exc),
            LOCK_STALE_S,
        )


def recheck(client: MlflowClient, expected: dict[str, int | None]) -> None:
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
