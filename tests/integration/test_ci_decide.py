"""`make decide-ci` and `make promote-ci`'s re-check, against a real SQLite registry: the decision
as step outputs and a job summary, changing no alias; the promote step refusing a decision the
registry no longer matches. (The whole workflow runs in tests/e2e/test_workflow_pipeline.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import ci
from tests.conftest import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """GITHUB_OUTPUT and GITHUB_STEP_SUMMARY as Actions sets them, as files in tmp_path."""
    out, summary = tmp_path / "output.txt", tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    for name in ("GATE_EPSILON", "DRY_RUN", "DECIDED_CHAMPION", "DECIDED_CHALLENGER"):
        monkeypatch.delenv(name, raising=False)
    return out, summary


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def _ledger_decisions(store: Store) -> list[str]:
    from churn import ledger

    return [r.decision for r in ledger.history(store.client)]


def test_decide_would_promote_and_moves_nothing(
    store: Store, github: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out, summary = github
    store.add_version(("champion",), auc=0.80)
    store.add_version(("challenger",), auc=0.90)
    assert ci.main(["decide"]) == 0
    assert _outputs(out) == {"decision": "promote", "champion": "1", "challenger": "2"}
    assert store.aliases() == {"champion": 1, "challenger": 2}  # a decision, not a move
    assert _ledger_decisions(store) == []
    assert capsys.readouterr().out.splitlines() == [
        "champion   : v1  auc=0.8000",
        "challenger : v2  auc=0.9000",
        "WOULD PROMOTE: @champion -> v2: the promote job moves it, once approved where the "
        "`production` environment requires reviewers",
    ]
    text = summary.read_text()
    assert text.startswith("### Decision\n**WOULD PROMOTE: @champion -> v2**: the promote job")
    assert "| @champion | v1 | auc=0.8000 |\n| @challenger | v2 | auc=0.9000 |" in text
    assert "### Serving now\n`champion: churn v1 (auc=0.8000, run " in text


def test_decide_refusal_is_green_and_on_the_record_unless_a_dry_run(
    store: Store, github: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, summary = github
    store.add_version(("champion",), auc=0.90)
    store.add_version(("challenger",), auc=0.85)
    monkeypatch.setenv("DRY_RUN", "true")
    assert ci.main(["decide"]) == 0
    assert _outputs(out)["decision"] == "keep"
    assert _ledger_decisions(store) == []  # a dry run leaves no record
    out.unlink()
    monkeypatch.setenv("DRY_RUN", "false")
    assert ci.main(["decide"]) == 0
    assert _outputs(out) == {"decision": "keep", "champion": "1", "challenger": "2"}
    assert _ledger_decisions(store) == ["kept"]
    assert "**champion kept**: GATE FAILED: needs >= 0.9020. No change." in summary.read_text()
    assert store.aliases() == {"champion": 1, "challenger": 2}


def test_decide_with_no_challenger_says_nothing(
    store: Store, github: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = github
    store.add_version(("champion",), auc=0.90)
    monkeypatch.setenv("DRY_RUN", "true")
    assert ci.main(["decide"]) == 0
    assert _outputs(out) == {"decision": "nothing", "champion": "none", "challenger": "none"}


def test_promote_refuses_a_stale_decision_in_one_line(
    store: Store,
    github: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, summary = github
    store.add_version(("champion",), auc=0.80)
    store.add_version(("challenger",), auc=0.90)
    v3 = store.add_version(auc=0.95)
    # The decision saw v1 and v2; while it waited for approval a new challenger was registered.
    store.client.set_registered_model_alias("churn", "challenger", str(v3))
    monkeypatch.setenv("DECIDED_CHAMPION", "1")
    monkeypatch.setenv("DECIDED_CHALLENGER", "2")
    assert ci.main(["promote"]) == 3
    line = (
        "the registry changed since the decision (@challenger v2 -> v3): nothing was promoted; "
        "run the pipeline again to decide on what is there now"
    )
    assert capsys.readouterr().err == f"deploy/ci.py: error: {line}\n"
    assert f"### Promotion\n**REFUSED**: {line}" in summary.read_text()
    assert store.aliases() == {"champion": 1, "challenger": v3}
    # A cold-start decision (no champion then) that finds a champion now is stale too.
    monkeypatch.setenv("DECIDED_CHAMPION", "none")
    monkeypatch.setenv("DECIDED_CHALLENGER", str(v3))
    assert ci.main(["promote"]) == 3
    assert "(@champion unset -> v1)" in capsys.readouterr().err


def test_promote_rejects_a_malformed_decision(
    store: Store, github: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_version(("champion",), auc=0.80)
    monkeypatch.setenv("DECIDED_CHAMPION", "v1")
    monkeypatch.setenv("DECIDED_CHALLENGER", "2")
    assert ci.main(["promote"]) == 2
