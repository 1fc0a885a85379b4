"""An alias move cut at any write is settled from the aliases as re-read: finished past the
commit point, undone before it, never reported as anything but what is there
(churn.moves, churn.registry._carry_out, shared by promote.py, rollback.py and register.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from churn import moves
from churn.errors import RegistryStateError, TrackingUnavailableError


class _Registry:
    """An MLflow client holding the aliases of `churn`; write number `fail_at` (1-based) fails,
    after landing when `lands` (a lost answer), else before it; `dead_after` writes and reads
    all fail from then on (a stalled server)."""

    def __init__(
        self,
        aliases: dict[str, int],
        fail_at: int = 0,
        lands: bool = False,
        dead_after: int | None = None,
    ) -> None:
        self.aliases = dict(aliases)
        self.writes = 0
        self.fail_at, self.lands, self.dead_after = fail_at, lands, dead_after
        self.tags: dict[tuple[int, str], str] = {}

    def _write(self, apply: Any) -> None:
        self.writes += 1
        if self.dead_after is not None and self.writes > self.dead_after:
            raise ConnectionError("timed out")
        if self.writes == self.fail_at:
            if self.lands:
                apply()
            raise ConnectionError("store went away\nsecond line")
        apply()

    def set_registered_model_alias(self, _name: str, alias: str, version: str) -> None:
        self._write(lambda: self.aliases.__setitem__(alias, int(version)))

    def delete_registered_model_alias(self, _name: str, alias: str) -> None:
        self._write(lambda: self.aliases.pop(alias, None))

    def set_model_version_tag(self, _name: str, version: str, key: str, value: str) -> None:
        self._write(lambda: self.tags.__setitem__((int(version), key), value))

    def delete_model_version_tag(self, _name: str, version: str, key: str) -> None:
        self._write(lambda: self.tags.pop((int(version), key), None))

    def set_registered_model_tag(self, _name: str, key: str, value: str) -> None:
        self._write(lambda: None)

    def get_registered_model(self, _name: str) -> Any:
        if self.dead_after is not None and self.writes >= self.dead_after:
            raise ConnectionError("timed out")
        return SimpleNamespace(aliases={a: str(v) for a, v in self.aliases.items()}, tags={})

    def get_experiment_by_name(self, _name: str) -> None:
        return None  # no ledger here: churn.ledger's part is tested on a real store


START = {"champion": 2, "prev-champion": 1, "challenger": 3}
PROMOTE = moves.Move(
    "promote", "champion", 3, START,
    (("prev-champion", 2), ("champion", 3), ("challenger", None)),
    ((3, "promoted_over", "v2"),),
)  # fmt: skip
DONE = {"champion": 3, "prev-champion": 2}
# Writes of PROMOTE through _carry_out: 1 the declaration on the lock, 2 @prev-champion,
# 3 @champion (the commit point), 4 @challenger deleted, 5 the tag.


def _carry_out(client: _Registry) -> None:
    from churn.registry import _carry_out

    _carry_out(client, PROMOTE, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("fail_at", [2, 3])
def test_a_write_refused_before_the_commit_point_is_undone_and_says_so(fail_at: int) -> None:
    client = _Registry(START, fail_at=fail_at)
    with pytest.raises(TrackingUnavailableError) as err:
        _carry_out(client)
    assert client.aliases == START
    assert str(err.value) == (
        "promote (@champion -> v3) failed (store went away); re-read: promote (@champion -> v3) "
        "had not reached @champion: undone (@champion=v2, @prev-champion=v1, @challenger=v3): "
        "run again"
    )


@pytest.mark.parametrize("fail_at", [3, 4, 5])
def test_a_write_that_landed_but_lost_its_answer_is_finished(fail_at: int) -> None:
    client = _Registry(START, fail_at=fail_at, lands=True)
    _carry_out(client)  # no error: the move is complete
    assert client.aliases == DONE
    assert client.tags == {(3, "promoted_over"): "v2"}


def test_a_refused_write_after_the_commit_point_is_finished() -> None:
    client = _Registry(START, fail_at=4)  # deleting @challenger fails; @champion has moved
    _carry_out(client)
    assert client.aliases == DONE


@pytest.mark.parametrize("dead_after", [1, 2, 3, 4])
def test_a_store_that_stops_answering_keeps_the_move_for_the_next_run(dead_after: int) -> None:
    client = _Registry(START, dead_after=dead_after)
    with pytest.raises(moves.MoveInterrupted) as err:
        _carry_out(client)
    assert "which aliases moved is unknown; the registry lock keeps the move" in str(err.value)
    # The next run settles it from what is there, whichever write was the last to land.
    client.dead_after = None
    outcome, account = moves.settle(client, PROMOTE)  # type: ignore[arg-type]
    assert client.aliases == (DONE if dead_after >= 3 else START)
    assert outcome == ("done" if dead_after >= 3 else "undone")
    assert account.startswith(
        f"its promote (@champion -> v3) had {'' if dead_after >= 3 else 'not '}"
    )


def test_a_failed_declaration_changes_no_alias() -> None:
    client = _Registry(START, fail_at=1)
    with pytest.raises(TrackingUnavailableError) as err:
        _carry_out(client)
    assert client.aliases == START
    assert str(err.value) == (
        "promote (@champion -> v3) failed before any alias was written (store went away): run again"
    )


def test_settle_leaves_a_champion_someone_else_set() -> None:
    client = _Registry({"champion": 7, "prev-champion": 2, "challenger": 3})
    outcome, account = moves.settle(client, PROMOTE)  # type: ignore[arg-type]
    assert outcome == "left"
    assert client.aliases == {"champion": 7, "prev-champion": 2, "challenger": 3}
    assert "found @champion on v7, set by someone else: left as it is" in account


def test_a_move_round_trips_through_the_lock_tag() -> None:
    assert moves.Move.from_json(PROMOTE.to_json()) == PROMOTE


def test_a_refusal_is_exit_3_and_an_outage_exit_4() -> None:
    from churn.registry import _failure, store_outage

    refused = SimpleNamespace(error_code="INVALID_STATE")
    assert isinstance(_failure(refused, "m"), RegistryStateError)  # type: ignore[arg-type]
    assert not store_outage(refused)  # type: ignore[arg-type]
    assert store_outage(ConnectionError("reset"))
    assert not store_outage(RegistryStateError("bad model"))


def test_history_reads_a_cut_or_unfinished_record_flagged_and_never_counts_it() -> None:
    from datetime import UTC, datetime

    from churn import ledger

    at = datetime(2030, 1, 1, tzinfo=UTC)
    fields = {"action": "promote", "decision": "promoted", "alias": "champion",
              "from_version": "1", "to_version": "2",
              "decided_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    tags = {f"ledger.{k}": v for k, v in fields.items()}
    done = ledger._from_run(tags, {}, "a")
    cut = ledger._from_run({}, {}, "b")  # killed between create_run and its fields (old writer)
    unfinished = ledger._from_run({**tags, "ledger.state": "intent"}, {}, "c")
    undone = ledger._from_run({**tags, "ledger.state": "undone"}, {}, "d")
    assert (done.state, cut.state, unfinished.state, undone.state) == (
        "done",
        "damaged",
        "intent",
        "undone",
    )
    assert ledger.champion_at([unfinished, undone, cut], at) is None
    assert ledger.champion_at([unfinished, done], at) == done
    assert ledger.format_record(cut).endswith("[INCOMPLETE: fields missing; ledger run b]")
    assert ledger.format_record(unfinished).endswith(
        "[INCOMPLETE: outcome not recorded; ledger run c]"
    )
    assert ledger._from_run({}, fields, "e").state == "done"  # a record older than the tags


class _RacedStore:
    """A store whose every create meets a name another run has just deleted: MLflow's SQL store
    then answers RESOURCE_DOES_NOT_EXIST (it reads the existing model to word "already exists")."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def create_registered_model(self, name: str, **_: Any) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        message = f"Registered Model with name={name} not found"
        raise MlflowException(message, RESOURCE_DOES_NOT_EXIST)

    def delete_registered_model(self, name: str) -> None:
        self.deleted.append(name)


def test_a_lock_or_takeover_released_during_our_create_is_a_lost_race_not_an_error() -> None:
    from churn import registry_lock

    store = _RacedStore()
    assert registry_lock._create_lock(store, "me", "token", 120.0) is False  # type: ignore[arg-type]
    stale = registry_lock._Lock("promote, pid 1 on gone", created_ms=1, age_s=500.0)
    registry_lock._take_over(store, stale, registry_lock.LOCK_STALE_S)  # type: ignore[arg-type]
    assert store.deleted == []  # someone else took it over: nothing of theirs deleted


# `churn retire`: the commit point removes @challenger (from v3) instead of setting an alias.
RETIRE = moves.Move(
    "retire", "challenger", 3, START, (("challenger", None),), ((3, "retired", "bad month"),)
)
RETIRED = {"champion": 2, "prev-champion": 1}
# Writes through _carry_out: 1 the declaration, 2 @challenger deleted (the commit point), 3 the tag.


@pytest.mark.parametrize("fail_at", [2, 3])
def test_a_retirement_whose_delete_landed_is_finished_tag_included(fail_at: int) -> None:
    from churn.registry import _carry_out

    client = _Registry(START, fail_at=fail_at, lands=True)
    _carry_out(client, RETIRE, None, None)  # type: ignore[arg-type]
    assert client.aliases == RETIRED
    assert client.tags == {(3, "retired"): "bad month"}


def test_a_retirement_cut_before_its_delete_is_undone_and_says_so() -> None:
    from churn.registry import _carry_out

    client = _Registry(START, fail_at=2)
    with pytest.raises(TrackingUnavailableError) as err:
        _carry_out(client, RETIRE, None, None)  # type: ignore[arg-type]
    assert client.aliases == START and client.tags == {}
    assert str(err.value) == (
        "retire (@challenger v3 removed) failed (store went away); re-read: retire (@challenger "
        "v3 removed) had not reached @challenger: undone (@challenger=v3): run again"
    )


def test_a_retirement_settled_after_someone_set_a_new_challenger_leaves_it() -> None:
    client = _Registry({**START, "challenger": 5})
    outcome, _ = moves.settle(client, RETIRE)  # type: ignore[arg-type]
    assert outcome == "left" and client.aliases["challenger"] == 5 and client.tags == {}
