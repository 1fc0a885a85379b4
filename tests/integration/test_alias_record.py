"""No alias move off the record (issue 26): every command that sets or removes @champion,
@prev-champion or @challenger writes a ledger record, @champion moves outside the gate only with
--force and a reason, `churn retire` removes a challenger, and `history --at` names the right
champion right before and right after each kind of move. Against a real SQLite registry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import promote
import register
import rollback
from churn import ledger
from churn.__main__ import main as churn_main
from churn.training import train
from tests.conftest import Store, small_params

pytestmark = pytest.mark.integration


def _just_before() -> datetime:
    """A time that every record of a command started afterwards is later than: records keep
    milliseconds (truncated), so one millisecond below this one."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(milliseconds=1)


def _champion_at(at: datetime, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert churn_main(["history", "--at", at.isoformat()]) == 0
    return capsys.readouterr().out.splitlines()[0].split(": ", 1)[1]


def _move(
    store: Store, capsys: pytest.CaptureFixture[str], command: Callable[[], int]
) -> tuple[str, str, ledger.Record]:
    """Run `command` (exit 0): the champion per `history --at` right before and right after
    it, and the ledger record it wrote."""
    count = len(ledger.history(store.client))
    before = _just_before()
    assert command() == 0
    after = datetime.now(UTC)
    records = ledger.history(store.client)
    assert len(records) == count + 1, records[: len(records) - count]
    return _champion_at(before, capsys), _champion_at(after, capsys), records[0]


def test_every_kind_of_move_is_on_the_record_and_history_at_follows_it(
    store: Store,
    small_data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = store.client
    # train.py: @challenger -> v1, with its run and metric as the evidence.
    result: list[object] = []
    was, now, r = _move(
        store,
        capsys,
        lambda: result.append(train(small_params(), client, store.uri, small_data, None)) or 0,
    )
    run_id = result[0].run_id  # type: ignore[attr-defined]
    assert (r.action, r.decision, r.alias, r.from_version, r.to_version) == (
        "train", "set", "challenger", None, 1,
    )  # fmt: skip
    assert (r.source_run, r.metric, r.state) == (run_id, "auc", ledger.DONE)
    assert r.challenger_score == result[0].metrics["auc"]  # type: ignore[attr-defined]
    assert r.by and r.git_commit and r.reason == "a new model trained (train.py)"
    assert was == now == "no @champion yet"

    # register.py --alias challenger: set outside the gate, on the record with its reason.
    was, now, r = _move(
        store,
        capsys,
        lambda: register.main(["--run-id", run_id, "--alias", "challenger", "--reason", "again"]),
    )
    assert (r.action, r.decision, r.alias, r.from_version, r.to_version, r.reason) == (
        "register", "set", "challenger", 1, 2, "again",
    )  # fmt: skip
    assert store.aliases() == {"challenger": 2}
    assert was == now == "no @champion yet"

    # promote.py (cold start; both score the same logged metric: the tie needs no champion).
    monkeypatch.setattr("churn.loading.load_verified", lambda *args: None)
    was, now, r = _move(store, capsys, lambda: promote.main(["--no-reevaluate"]))
    assert (r.action, r.decision, r.to_version) == ("cold-start", "promoted", 2)
    assert was.startswith("no @champion yet (the first promotion was at ")
    assert now == "@champion was churn v2"

    # register.py --alias champion without the override: refused, nothing registered.
    capsys.readouterr()
    assert register.main(["--run-id", run_id, "--alias", "champion"]) == 3
    assert capsys.readouterr().err == (
        "register.py: error: --alias champion moves @champion outside the gate: register as "
        '@challenger and run promote.py, or pass --force --reason "why" to do it on the record\n'
    )
    with pytest.raises(SystemExit) as exit_info:
        register.main(["--run-id", run_id, "--alias", "champion", "--force"])
    assert exit_info.value.code == 2
    assert 'argument --force: needs --reason "why"' in capsys.readouterr().err
    assert len(client.search_model_versions("name='churn'")) == 2
    assert store.aliases() == {"champion": 2}

    # ... with --force --reason: moved, recorded as forced, the old champion kept as the hatch.
    reason = "hotfix for INC-42"
    was, now, r = _move(
        store,
        capsys,
        lambda: register.main(
            ["--run-id", run_id, "--alias", "champion", "--force", "--reason", reason]
        ),
    )
    assert (r.action, r.decision, r.from_version, r.to_version, r.reason, r.source_run) == (
        "register", "forced", 2, 3, reason, run_id,
    )  # fmt: skip
    assert (was, now) == ("@champion was churn v2", "@champion was churn v3")
    assert store.aliases() == {"champion": 3, "prev-champion": 2}
    assert store.tags(3)["promoted_over"] == "v2 (register.py --force, no gate)"

    # rollback.py undoes the forced move.
    was, now, r = _move(store, capsys, lambda: rollback.main(["--reason", "INC-42 fixed"]))
    assert (r.action, r.decision, r.from_version, r.to_version) == ("rollback", "rolled-back", 3, 2)
    assert r.reason == "INC-42 fixed"
    assert (was, now) == ("@champion was churn v3", "@champion was churn v2")

    # churn retire: @challenger removed from a new version, the version tagged, on the record.
    assert register.main(["--run-id", run_id, "--alias", "challenger"]) == 0
    was, now, r = _move(
        store, capsys, lambda: churn_main(["retire", "--reason", "trained on a bad month"])
    )
    assert (r.action, r.decision, r.alias, r.to_version, r.reason) == (
        "retire", "retired", "challenger", 4, "trained on a bad month",
    )  # fmt: skip
    assert was == now == "@champion was churn v2"
    assert store.aliases() == {"champion": 2, "prev-champion": 3}
    assert store.tags(4)["retired"] == "trained on a bad month"

    # history lists every move, the other aliases' ones named, with the reasons.
    assert churn_main(["history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[2:4] for line in out[1:]] == [
        ["retire", "retired"], ["register", "set"], ["rollback", "rolled-back"],
        ["register", "forced"], ["cold-start", "promoted"], ["register", "set"], ["train", "set"],
    ]  # fmt: skip
    assert "@challenger v4 removed" in out[1] and out[1].endswith("reason: trained on a bad month")
    assert "@challenger -> v4" in out[2] and "v2 -> v3" in out[4] and reason in out[4]


def test_retire_prints_what_it_did_and_versions_shows_the_mark(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion",), auc=0.85)
    store.add_version(("challenger",), auc=0.84)
    assert churn_main(["retire", "--reason", "refused twice", "--dry-run"]) == 0
    assert (
        capsys.readouterr().out == "DRY RUN: would retire @challenger v2 removed (refused twice)\n"
    )
    assert (
        store.aliases() == {"champion": 1, "challenger": 2} and ledger.history(store.client) == []
    )
    assert churn_main(["retire", "--reason", "refused twice"]) == 0
    assert capsys.readouterr().out == "RETIRED: @challenger v2 removed (refused twice)\n"
    assert store.aliases() == {"champion": 1}
    assert churn_main(["versions", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)["versions"]
    assert rows[0]["version"] == 2 and rows[0]["marks"] == ["retired: refused twice"]
    # Nothing left to retire: exit 0, says so; a blank reason is a usage error.
    assert churn_main(["retire", "--reason", "again"]) == 0
    assert capsys.readouterr().out == "no @challenger alias set: nothing to retire\n"
    assert churn_main(["retire", "--reason", "  "]) == 2
    assert capsys.readouterr().err == (
        'churn retire: error: --reason: say why, e.g. --reason "refused by the gate twice"\n'
    )


def test_champion_and_challenger_on_one_version_is_fixed_by_retire(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion", "challenger"), auc=0.86)
    assert promote.main([]) == 3
    assert capsys.readouterr().err == (
        "promote.py: error: @champion and @challenger both point at v1: retire the challenger "
        'with churn retire --reason "why", or train a new one\n'
    )
    assert churn_main(["retire", "--reason", "same as the champion"]) == 0
    assert store.aliases() == {"champion": 1}
    assert promote.main([]) == 0
    assert capsys.readouterr().out.endswith("no @challenger alias set: nothing to promote\n")
