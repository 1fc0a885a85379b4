"""The promotion ledger: every decision recorded in the tracking store, queryable by time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import promote
import rollback
from churn import ledger
from churn.__main__ import main as churn_main
from tests.conftest import Store
from tests.integration.test_registry_scripts import versions_load  # noqa: F401  (autouse)

pytestmark = pytest.mark.integration


def _stamp() -> datetime:
    now = datetime.now(UTC)
    time.sleep(0.01)  # decisions a few ms apart, so "between" instants exist
    return now


def test_promote_refuse_rollback_promote_gives_four_records_in_order(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("challenger",), auc=0.80)
    t0 = _stamp()
    assert promote.main([]) == 0  # cold start: -> v1
    t1 = _stamp()
    store.add_version(("challenger",), auc=0.801)
    assert promote.main([]) == 1  # refused: v1 kept
    t2 = _stamp()
    store.add_version(("challenger",), auc=0.85)
    assert promote.main([]) == 0  # v1 -> v3
    t3 = _stamp()
    assert rollback.main([]) == 0  # v3 -> v1
    t4 = _stamp()
    assert promote.main(["--dry-run"]) == 0  # dry runs are not recorded (and nothing to do)

    records = ledger.history(store.client)
    assert [(r.action, r.decision, r.from_version, r.to_version) for r in records] == [
        ("rollback", "rolled-back", 3, 1),
        ("promote", "promoted", 1, 3),
        ("promote", "kept", 1, 1),
        ("cold-start", "promoted", None, 1),
    ]
    kept = records[2]
    assert (kept.metric, kept.champion_score, kept.challenger_score) == ("auc", 0.8, 0.801)
    assert (kept.epsilon, kept.challenger_version) == (0.002, 2)
    assert all(r.by and r.decided_at and r.run_id for r in records)

    assert ledger.champion_at(records, t0) is None
    assert ledger.champion_at(records, t1).to_version == 1  # type: ignore[union-attr]
    assert ledger.champion_at(records, t2).to_version == 1  # type: ignore[union-attr]
    assert ledger.champion_at(records, t3).to_version == 3  # type: ignore[union-attr]
    assert ledger.champion_at(records, t4).to_version == 1  # type: ignore[union-attr]

    # decision.json travels with each record.
    import json

    path = store.client.download_artifacts(records[0].run_id, "decision.json")
    assert json.loads(Path(path).read_text())["action"] == "rollback"

    capsys.readouterr()
    assert churn_main(["history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ledger.HEADER
    assert [line.split()[2:5] for line in out[1:]] == [
        ["rollback", "rolled-back", "v3"],
        ["promote", "promoted", "v1"],
        ["promote", "kept", "v1"],
        ["cold-start", "promoted", "->"],
    ]

    assert churn_main(["history", "--at", t2.isoformat()]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"at {t2:%Y-%m-%d %H:%M:%S} UTC: @champion was churn v1"
    assert "cold-start" in out[3]

    assert churn_main(["history", "--at", "2000-01-01T00:00"]) == 0
    assert capsys.readouterr().out.startswith("at 2000-01-01 00:00:00 UTC: no @champion yet")


def test_history_survives_across_processes(store: Store) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    store.add_version(("challenger",), auc=0.8)
    assert promote.main([]) == 0  # in this process: its version has no model files to load
    proc = subprocess.run(
        [sys.executable, "-m", "churn", "history"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[2:4] == ["cold-start", "promoted"]


def test_a_ledger_that_cannot_record_stops_the_move_before_any_alias_moves(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("challenger",), auc=0.8)
    # Someone deleted the ledger experiment in the UI: records can no longer be written.
    client = store.client
    client.delete_experiment(client.create_experiment(ledger.LEDGER_EXPERIMENT))
    assert promote.main([]) == 3
    out, err = capsys.readouterr()
    assert "PROMOTED" not in out
    assert err.startswith("promote.py: error: promote (@champion -> v1) failed (")
    assert err.rstrip().endswith(
        "re-read: promote (@champion -> v1) had not reached @champion: undone "
        "(@champion=unset, @challenger=v1): run again"
    )
    assert store.aliases() == {"challenger": 1}  # no move without its record
    assert "churn.lock" not in [m.name for m in client.search_registered_models()]


def test_bad_history_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in (
        (
            ["--at", "yesterday"],
            "'yesterday' is not an ISO time like 2026-11-20 or 2026-11-20T14:00",
        ),
        (["--limit", "0"], "must be a whole number >= 1, got '0'"),
    ):
        with pytest.raises(SystemExit) as exc:
            churn_main(["history", *args])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
