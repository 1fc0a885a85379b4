"""Racing changes to one registry: two promote.py runs and a rollback.py at the same time;
register.py --alias champion racing them; a stale lock seen stale by several runs at once.

Protection proved: every alias write (promote, rollback, register --alias) happens under the
registry lock (churn/registry_lock.py) after a read under it. Without the lock a run
that re-checked before another run's writes still writes over them; the deterministic
interleavings below then leave @champion and @prev-champion from two different decisions while
both runs report success. A stale lock is taken over by one run only (`_take_over`).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

import promote
import register
import rollback
from churn import ledger, registry
from churn.registry_lock import LOCK_NAME, LOCK_STALE_S, registry_lock
from tests.conftest import Store
from tests.integration.test_registry_scripts import versions_load  # noqa: F401  (autouse)
from tests.reliability.conftest import Stack

pytestmark = pytest.mark.integration


class InterruptedClient(MlflowClient):
    """A client that runs `meanwhile` once, right before its first alias write: the moment a
    concurrent run is most dangerous (it has decided and re-checked, and writes next)."""

    def __init__(self, uri: str, meanwhile: Callable[[], None]) -> None:
        super().__init__(tracking_uri=uri, registry_uri=uri)
        self._meanwhile: Callable[[], None] | None = meanwhile

    def set_registered_model_alias(self, *args: Any, **kwargs: Any) -> None:
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        super().set_registered_model_alias(*args, **kwargs)


def three_versions(store: Store) -> None:
    """v1 was champion before v2; v3 is a better challenger."""
    store.add_version(("prev-champion",), auc=0.80)
    store.add_version(("champion",), auc=0.82)
    store.add_version(("challenger",), auc=0.85)


def run_script(
    main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_rollback_during_a_promotion_loses_and_changes_nothing(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    three_versions(store)
    seen: list[tuple[int, str, str]] = []
    client = InterruptedClient(
        store.uri, lambda: seen.append(run_script(rollback.main, [], capsys))
    )
    result = registry.promote(client, "auc", epsilon=0.0)

    assert result.promoted
    [(code, out, err)] = seen
    assert (code, out) == (3, "")
    assert err.startswith("rollback.py: error: another change to 'churn' is in progress (promote, ")
    assert err.endswith("nothing was changed: run again when it has finished\n")
    assert err.count("\n") == 1
    # Exactly the promotion's outcome: nothing of the rollback, and the lock released.
    assert store.aliases() == {"champion": 3, "prev-champion": 2}
    assert "rolled_back" not in store.tags(2)
    assert [m.name for m in store.client.search_registered_models()] == ["churn"]
    assert ledger.history(store.client) == []  # the library call records nothing; the loser neither


def test_a_promotion_during_a_rollback_loses_and_changes_nothing(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    three_versions(store)
    seen: list[tuple[int, str, str]] = []
    client = InterruptedClient(
        store.uri,
        lambda: seen.append(
            run_script(promote.main, ["--no-reevaluate", "--epsilon", "0"], capsys)
        ),
    )
    result = registry.rollback(client)

    assert (result.champion_before, result.prev_before) == (2, 1)
    [(code, out, err)] = seen
    # The loser claims nothing on stdout and says why on one line of stderr.
    assert (code, out) == (3, "")
    assert err.startswith("promote.py: error: another change to 'churn' is in progress (rollback, ")
    assert err.count("\n") == 1
    assert store.aliases() == {"champion": 1, "prev-champion": 2, "challenger": 3}
    assert "promoted_over" not in store.tags(3)
    assert ledger.history(store.client) == []


def test_of_two_promotions_at_once_one_promotes_and_the_other_changes_nothing(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    three_versions(store)
    seen: list[tuple[int, str, str]] = []
    client = InterruptedClient(
        store.uri,
        lambda: seen.append(
            run_script(promote.main, ["--no-reevaluate", "--epsilon", "0"], capsys)
        ),
    )
    assert registry.promote(client, "auc", epsilon=0.0).promoted
    [(code, _out, err)] = seen
    assert code == 3 and "another change to 'churn' is in progress (promote, " in err
    assert store.aliases() == {"champion": 3, "prev-champion": 2}
    # The loser left no ledger record claiming a promotion.
    assert ledger.history(store.client) == []


def test_a_run_that_decided_before_another_finished_rechecks_under_the_lock(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lock serialises the writes; the re-read under it catches a run that completed
    between our read and our lock (here: a whole rollback)."""
    three_versions(store)

    def reevaluate(champ: int, chal: int) -> None:
        # Called after the aliases were read and before the lock is taken.
        assert run_script(rollback.main, [], capsys)[0] == 0

    with pytest.raises(registry.RegistryStateError) as excinfo:
        registry.promote(store.client, "auc", 0.0, reevaluate=reevaluate)  # type: ignore[arg-type]
    assert str(excinfo.value) == (
        "the registry changed while deciding (@champion v2 -> v1, @prev-champion v1 -> v2); "
        "nothing was changed: run again"
    )
    assert store.aliases() == {"champion": 1, "prev-champion": 2, "challenger": 3}


def test_a_lock_left_by_a_dead_run_is_taken_over_once_stale(store: Store) -> None:
    three_versions(store)
    store.client.create_registered_model(LOCK_NAME, tags={"held_by": "promote, pid 1 on gone"})
    with pytest.raises(registry.RegistryStateError, match=r"in progress \(promote, pid 1 on gone"):
        registry.rollback(store.client)
    assert store.aliases() == {"champion": 2, "prev-champion": 1, "challenger": 3}
    with registry_lock(store.client, "test", stale_after_s=0.0):
        held = store.client.get_registered_model(LOCK_NAME)
        assert held.tags["held_by"].startswith("test, pid ")
    assert [m.name for m in store.client.search_registered_models()] == ["churn"]


def _backdate(db: Path, name: str, age_s: float) -> None:
    """Move a registered model's creation time back (the registry API cannot)."""
    import sqlite3

    conn = sqlite3.connect(db, timeout=30)
    with contextlib.closing(conn), conn:
        conn.execute(
            "UPDATE registered_models SET creation_time = creation_time - ? WHERE name = ?",
            (int(age_s * 1000), name),
        )


def test_a_takeover_left_by_a_dead_run_is_reported_not_repeated(store: Store) -> None:
    three_versions(store)
    client = store.client
    client.create_registered_model(LOCK_NAME, tags={"held_by": "promote, pid 1 on gone"})
    _backdate(store.path, LOCK_NAME, LOCK_STALE_S + 60)
    created = client.get_registered_model(LOCK_NAME).creation_timestamp
    marker = f"{LOCK_NAME}.takeover.{created}"
    client.create_registered_model(marker)
    _backdate(store.path, marker, LOCK_STALE_S + 30)
    with pytest.raises(registry.RegistryStateError) as excinfo:
        registry.rollback(client)
    assert str(excinfo.value) == (
        f"the registry lock '{LOCK_NAME}' was left by promote, pid 1 on gone, and so was a "
        f"takeover of it; if no change to 'churn' is running, delete the models '{LOCK_NAME}' "
        f"and '{marker}' (mlflow ui) and run again"
    )
    assert store.aliases() == {"champion": 2, "prev-champion": 1, "challenger": 3}
    # Once a person has deleted them, the next run goes ahead.
    client.delete_registered_model(marker)
    client.delete_registered_model(LOCK_NAME)
    assert registry.rollback(client).champion_before == 2


# ---------------------------------------------------------------------------------------------
# Real processes, really at the same time, against the real `mlflow server`.

ROUNDS = 4
RUNS = ("promote", "promote", "rollback")
PROMOTED = re.compile(r"^PROMOTED: @champion -> v(\d+)$", re.M)
READ = re.compile(r"^(champion|challenger) +: v(\d+) ", re.M)
ROLLED = re.compile(r"^ROLLBACK: @champion +v(\d+) -> v(\d+)$", re.M)
REGISTERED = re.compile(r"^registered churn v(\d+), source run \w+$", re.M)
REPLACED = re.compile(r"^@prev-champion -> v(\d+)$", re.M)
LOST = ("another change to 'churn' is in progress", "the registry changed while deciding")


@dataclass(frozen=True)
class Run:
    script: str
    code: int
    out: str
    err: str

    def apply(self, state: dict[str, int]) -> dict[str, int] | None:
        """The aliases after this run, if what it reports could have happened on `state`."""
        if self.code == 3:  # lost the race: changed nothing, claimed nothing
            return state if self.out == "" and self.lost() else None
        if self.code != 0:
            return None
        if self.script == "register":
            [new] = REGISTERED.findall(self.out)
            replaced = [int(v) for v in REPLACED.findall(self.out)]
            if replaced != ([state["champion"]] if "champion" in state else []):
                return None  # it claims to have replaced a champion that was not there
            after = {**state, "champion": int(new)}
            if replaced:
                after["prev-champion"] = replaced[0]
            return after
        if self.script == "rollback":
            [(champ, prev)] = ROLLED.findall(self.out)
            if (state.get("champion"), state.get("prev-champion")) != (int(champ), int(prev)):
                return None
            return {**state, "champion": int(prev), "prev-champion": int(champ)}
        if self.out == "no @challenger alias set: nothing to promote\n":
            return state if "challenger" not in state else None
        read = {alias: int(v) for alias, v in READ.findall(self.out)}
        [to] = PROMOTED.findall(self.out)
        if {a: state.get(a) for a in ("champion", "challenger")} != read or int(to) != read[
            "challenger"
        ]:
            return None
        after = {**state, "champion": int(to), "prev-champion": read["champion"]}
        del after["challenger"]
        return after

    def lost(self) -> bool:
        lines = self.err.splitlines()
        return (
            len(lines) == 1
            and lines[0].startswith(f"{self.script}.py: error: ")
            and any(reason in lines[0] for reason in LOST)
        )

    def changed(self) -> bool:
        return self.code == 0 and ("PROMOTED" in self.out or "ROLLBACK" in self.out)


def serial_outcomes(initial: dict[str, int], runs: list[Run]) -> list[dict[str, int]]:
    """Final aliases of every order in which the runs could have happened one after another."""
    outcomes = []
    for order in itertools.permutations(runs):
        state: dict[str, int] | None = initial
        for run in order:
            state = run.apply(state) if state is not None else None
        if state is not None:
            outcomes.append(state)
    return outcomes


def test_two_promotions_and_a_rollback_at_once_end_in_a_legitimate_state(stack: Stack) -> None:
    prev, champion, challenger = stack.good  # worst to best: every promotion passes the gate
    uri = ["--tracking-uri", stack.uri]
    argv = {"promote": [*uri, "--no-reevaluate", "--epsilon", "0"], "rollback": uri}
    racers = stack.racers
    assert racers.scripts == RUNS
    client = stack.client()
    rng = random.Random()
    lost = 0
    histories: list[str] = []
    stack.set_aliases(prev_champion=prev, champion=champion, challenger=challenger)
    dry = {script: [*args, "--dry-run"] for script, args in argv.items()}
    assert [a["code"] for a in racers.run(dry, [0.0] * len(RUNS))] == [0] * len(RUNS)

    for _ in range(ROUNDS):
        stack.set_aliases(prev_champion=prev, champion=champion, challenger=challenger)
        initial = {"prev-champion": prev, "champion": champion, "challenger": challenger}
        decisions = len(ledger.history(client))
        # All three within a few hundred milliseconds, in varying order: the rollback (the
        # quickest to reach its writes) starts up to 0.3 s later, so that each side wins.
        start = time.time() + 0.2
        at = [start + rng.uniform(0.0, 0.05), start + rng.uniform(0.0, 0.05)]
        at.append(start + rng.uniform(0.0, 0.3))
        runs = [
            Run(script, a["code"], a["out"], a["err"])
            for script, a in zip(RUNS, racers.run(argv, at), strict=True)
        ]
        final = stack_aliases(stack)
        report = [(r.script, r.code, r.out.strip().splitlines()[-1:], r.err) for r in runs]
        # Each run either did exactly what it reports or exited 3 having done nothing,
        # and the registry is what some serial order of the successful runs gives.
        assert final in serial_outcomes(initial, runs), (initial, final, report)
        assert "prev-champion" in final and final["prev-champion"] != final["champion"]
        # The ledger holds one record per change, none for a run that lost.
        assert len(ledger.history(client)) - decisions == sum(r.changed() for r in runs)
        assert LOCK_NAME not in [m.name for m in client.search_registered_models()]
        lost += sum(r.code == 3 for r in runs)
        histories.append(" ".join(f"{r.script}={r.code}" for r in runs) + f" -> {final}")
    print(f"\nrace: {ROUNDS} rounds, {lost} runs lost a race (exit 3):")
    print("  " + "\n  ".join(histories))
    assert lost > 0  # the runs did overlap: otherwise this proved nothing
    stack.serve(stack.good[0])


def stack_aliases(stack: Stack) -> dict[str, int]:
    return registry.aliases(stack.client())


# ---------------------------------------------------------------------------------------------
# A stale lock, seen stale by three processes at the same moment.


def _leave_stale_lock(stack: Stack, age_s: float) -> None:
    """The lock a run that died `age_s` ago leaves (its creation time moved back in the store:
    the registry API cannot backdate it)."""
    stack.client().create_registered_model(LOCK_NAME, tags={"held_by": "promote, pid 1 on gone"})
    _backdate(stack.server.work / "mlflow.db", LOCK_NAME, age_s)


def test_a_stale_lock_seen_by_three_processes_at_once_is_taken_over_by_one(
    stack: Stack, tmp_path: Path
) -> None:
    """Protection proved: `_take_over` deletes the stale lock only while holding a marker named
    after that one holding, and only if the lock is still that holding. With a plain delete and
    create (as before), the racers below, paused until all three have seen the lock stale, each
    delete the lock the previous one has just created and all three hold it at once."""
    _leave_stale_lock(stack, age_s=LOCK_STALE_S + 60)
    client = stack.client()
    held = client.get_registered_model(LOCK_NAME)
    assert time.time() - held.creation_timestamp / 1000 > LOCK_STALE_S
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    hold_s = 1.5
    # Each resumes 0.4 s after the previous one: time to delete and re-create the lock.
    commands = [
        ("take-stale-lock", [stack.uri, str(barrier), "3", f"{0.4 * i}", str(hold_s)])
        for i in range(3)
    ]
    answers = stack.racers.run_each(commands, [0.0] * 3)

    report = [(a["code"], a["out"], a["err"]) for a in answers]
    winners = [a for a in answers if a["code"] == 0]
    assert len(winners) == 1, report
    [winner] = winners
    assert re.fullmatch(r"held [\d.]+\nreleased [\d.]+\n", winner["out"]), report
    for loser in (a for a in answers if a["code"] != 0):
        assert (loser["code"], loser["out"]) == (3, ""), report
        [line] = loser["err"].splitlines()
        assert line.startswith("take-stale-lock: error: another change to 'churn' is in progress")
        assert line.endswith("nothing was changed: run again when it has finished"), line
    # The winner took it over and released it; no takeover marker is left.
    assert [m.name for m in client.search_registered_models()] == ["churn"]


# ---------------------------------------------------------------------------------------------
# register.py --alias takes the same lock.


def test_register_with_an_alias_waits_for_no_one_and_changes_nothing_while_locked(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    good = stack.good
    stack.set_aliases(prev_champion=good[0], champion=good[1])
    client = stack.client()
    run_id = client.get_model_version("churn", str(good[2])).run_id
    versions = len(client.search_model_versions("name = 'churn'"))
    argv = ["--tracking-uri", stack.uri, "--run-id", run_id, "--alias", "champion"]
    argv += ["--force", "--reason", "the race test"]
    capsys.readouterr()
    with registry_lock(client, "rollback"):
        code = register.main(argv)
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert err.startswith("register.py: error: another change to 'churn' is in progress (rollback")
    assert err.count("\n") == 1
    assert len(client.search_model_versions("name = 'churn'")) == versions  # nothing registered
    assert stack_aliases(stack) == {"prev-champion": good[0], "champion": good[1]}

    # Unlocked: @champion moves, and the champion it replaced is the escape hatch.
    assert register.main(argv) == 0
    out, _ = capsys.readouterr()
    [new] = re.findall(r"^registered churn v(\d+), source run ", out, re.M)
    assert out.splitlines()[-2:] == [f"@prev-champion -> v{good[1]}", f"@champion -> v{new}"]
    assert stack_aliases(stack) == {"prev-champion": good[1], "champion": int(new)}
    tags = client.get_model_version("churn", new).tags
    assert tags["promoted_over"] == f"v{good[1]} (register.py --force, no gate)"
    assert LOCK_NAME not in [m.name for m in client.search_registered_models()]
    stack.serve(good[0])


REGISTER_ROUNDS = 3


def test_register_alias_champion_racing_a_promotion_and_a_rollback_ends_legitimately(
    stack: Stack,
) -> None:
    """Protection proved: register.py --alias takes the registry lock and reads the aliases under
    it (churn/registry.py `register`). Setting the alias directly, as before, it overwrote
    @champion between a promotion's two writes or a rollback's, with both runs reporting
    success: @prev-champion then no longer is the champion before @champion."""
    prev, champion, challenger = stack.good
    client = stack.client()
    run_id = client.get_model_version("churn", str(challenger)).run_id
    uri = ["--tracking-uri", stack.uri]
    commands = [
        (
            "register",
            [*uri, "--run-id", run_id, "--alias", "champion", "--force", "--reason", "race"],
        ),
        ("promote", [*uri, "--no-reevaluate", "--epsilon", "0"]),
        ("rollback", uri),
    ]
    racers = stack.racers
    rng = random.Random()
    lost = 0
    histories: list[str] = []
    stack.set_aliases(prev_champion=prev, champion=champion, challenger=challenger)
    dry = [(script, [*args, "--dry-run"]) for script, args in commands]
    assert [a["code"] for a in racers.run_each(dry, [0.0] * 3)] == [0, 0, 0]  # warm imports
    for _ in range(REGISTER_ROUNDS):
        stack.set_aliases(prev_champion=prev, champion=champion, challenger=challenger)
        initial = {"prev-champion": prev, "champion": champion, "challenger": challenger}
        versions = len(client.search_model_versions("name = 'churn'"))
        start = time.time() + 0.2
        at = [start + rng.uniform(0.0, 0.05) for _ in commands[:2]]
        at.append(start + rng.uniform(0.0, 0.3))
        runs = [
            Run(script, a["code"], a["out"], a["err"])
            for (script, _), a in zip(commands, racers.run_each(commands, at), strict=True)
        ]
        final = stack_aliases(stack)
        report = [(r.script, r.code, r.out.strip().splitlines()[-1:], r.err) for r in runs]
        assert final in serial_outcomes(initial, runs), (initial, final, report)
        assert "prev-champion" in final and final["prev-champion"] != final["champion"]
        registered = sum(r.script == "register" and r.code == 0 for r in runs)
        assert len(client.search_model_versions("name = 'churn'")) - versions == registered
        assert LOCK_NAME not in [m.name for m in client.search_registered_models()]
        lost += sum(r.code == 3 for r in runs)
        histories.append(" ".join(f"{r.script}={r.code}" for r in runs) + f" -> {final}")
    print(f"\nregister race: {REGISTER_ROUNDS} rounds, {lost} runs lost a race (exit 3):")
    print("  " + "\n  ".join(histories))
    stack.serve(stack.good[0])
