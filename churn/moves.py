"""Alias moves that survive a kill, a crashed server or a lost response at any write.

MLflow writes one alias per request and has no transactions, so a move of two aliases and its
ledger record can be cut after any write. Each change is therefore a `Move`: every alias as read
before the first write, the writes in order, and the commit point (the write of `alias` ->
`version`). Before its first alias write the move is declared on the registry lock (a tag of the
lock model) and its ledger record is opened (state "intent"). Whoever finds a move unfinished --
the same run after a failed or unanswered write, or the next run taking over the lock of a dead
one -- re-reads the aliases and settles it: past the commit point it finishes the remaining
writes, before it it puts back what was written, and either way it records the outcome in the
ledger. Every step is written so that doing it twice is harmless.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from churn.errors import TrackingUnavailableError
from churn.settings import MODEL_NAME

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The lock model's tag that holds the declared move.
INTENT_TAG = "intent"


class MoveInterrupted(TrackingUnavailableError):
    """The store stopped answering mid-move: what is there is unknown, so the lock is kept with
    the declared move, and the next command that takes the lock over settles it."""


@dataclass(frozen=True)
class Move:
    op: str  # promote | rollback | register | retire
    # The commit point: `alias` -> `version`, or `alias` removed from `version` (retire).
    alias: str
    version: int
    before: dict[str, int]  # every alias as read before the first write
    # (alias, version) written in order; version None deletes the alias if it is still as read.
    steps: tuple[tuple[str, int | None], ...]
    # Version tags written after the aliases; value None deletes the tag.
    tags: tuple[tuple[int, str, str | None], ...] = ()
    move_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> str:
        fields = ("op", "alias", "version", "before", "steps", "tags", "move_id")
        return json.dumps({name: getattr(self, name) for name in fields})

    @classmethod
    def from_json(cls, text: str) -> Move:
        raw = json.loads(text)
        return cls(
            op=str(raw["op"]),
            alias=str(raw["alias"]),
            version=int(raw["version"]),
            before={str(a): int(v) for a, v in raw["before"].items()},
            steps=tuple((str(a), None if v is None else int(v)) for a, v in raw["steps"]),
            tags=tuple((int(v), str(k), None if t is None else str(t)) for v, k, t in raw["tags"]),
            move_id=str(raw["move_id"]),
        )

    @property
    def removes(self) -> bool:
        """The commit point removes `alias` (from `version`) instead of setting it."""
        return (self.alias, None) in self.steps

    @property
    def what(self) -> str:
        if self.removes:
            return f"{self.op} (@{self.alias} v{self.version} removed)"
        return f"{self.op} (@{self.alias} -> v{self.version})"

    def committed(self, now: dict[str, int]) -> bool | None:
        """True past the commit point, False before it, None if someone else moved `alias`."""
        if now.get(self.alias) == (None if self.removes else self.version):
            return True
        if now.get(self.alias) == self.before.get(self.alias):
            return False
        return None

    def _before_commit(self) -> list[str]:
        written = [alias for alias, _ in self.steps]
        return written[: written.index(self.alias)] if self.alias in written else written


def read_aliases(client: MlflowClient) -> dict[str, int]:
    model = client.get_registered_model(MODEL_NAME)
    return {alias: int(version) for alias, version in (model.aliases or {}).items()}


def _set(client: MlflowClient, alias: str, version: int | None) -> None:
    if version is None:
        client.delete_registered_model_alias(MODEL_NAME, alias)
    else:
        client.set_registered_model_alias(MODEL_NAME, alias, str(version))


def write_steps(client: MlflowClient, move: Move, now: dict[str, int] | None = None) -> None:
    """Every write of `move`, in order; with `now` (the aliases as re-read) only those still
    needed. A delete removes the alias only while it still points where it was read (train.py
    sets @challenger without the lock)."""
    for alias, version in move.steps:
        if version is None:
            if now is None or (alias in now and now.get(alias) == move.before.get(alias)):
                client.delete_registered_model_alias(MODEL_NAME, alias)
        elif now is None or now.get(alias) != version:
            _set(client, alias, version)
    write_tags(client, move)


def write_tags(client: MlflowClient, move: Move) -> None:
    from mlflow.exceptions import MlflowException

    for version, key, value in move.tags:
        if value is not None:
            client.set_model_version_tag(MODEL_NAME, str(version), key, value)
            continue
        try:
            client.delete_model_version_tag(MODEL_NAME, str(version), key)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise


def _undo(client: MlflowClient, move: Move, now: dict[str, int]) -> None:
    for alias in move._before_commit():
        if now.get(alias) != move.before.get(alias):
            _set(client, alias, move.before.get(alias))


def shown(aliases: dict[str, int], names: list[str]) -> str:
    return ", ".join(
        f"@{a}={'v' + str(aliases[a]) if a in aliases else 'unset'}" for a in dict.fromkeys(names)
    )


def settle(client: MlflowClient, move: Move) -> tuple[str, str]:
    """Re-read the aliases and finish or undo `move`; record the outcome in the ledger.
    Returns (outcome, one-line account): outcome is done, undone or left. Store failures
    propagate: the caller keeps the lock so that the next run settles it."""
    from churn import ledger

    now = read_aliases(client)
    state = move.committed(now)
    if state is True:
        write_steps(client, move, now)
        outcome, how = "done", f"had reached @{move.alias}: finished"
    elif state is False:
        _undo(client, move, now)
        outcome, how = "undone", f"had not reached @{move.alias}: undone"
    else:
        outcome = "left"
        how = (
            f"found @{move.alias} on v{now[move.alias]}, set by someone else: left as it is"
            if move.alias in now
            else f"found @{move.alias} unset by someone else: left as it is"
        )
    ledger.close_move(client, move.move_id, outcome)
    after = read_aliases(client)
    names = [move.alias, *(a for a, _ in move.steps)]
    return outcome, f"its {move.what} {how} ({shown(after, names)})"


def declared(client: MlflowClient, lock_name: str) -> Move | None:
    """The move declared on the lock model `lock_name`, if any."""
    tags = client.get_registered_model(lock_name).tags or {}
    text = tags.get(INTENT_TAG)
    return Move.from_json(text) if text else None
