"""churn.promotion's result reads the same to every caller: promote.py prints `report`, CI's job
summary is built from the same fields (deploy/ci.py), never from printed lines."""

from __future__ import annotations

import pytest

from churn import promotion
from churn.gate import Candidate, PairedDiff, gate
from churn.moves import Move
from churn.promotion import Promotion

CHAMP, CHAL = Candidate(3, 0.80), Candidate(4, 0.85)
PAIRED = PairedDiff(0.05, 0.03, 0.07, 1000, 2000)
PASSED = gate(CHAMP, CHAL, "auc", 0.002, PAIRED)
REFUSED = gate(CHAMP, Candidate(4, 0.801), "auc", 0.002)
MOVE = Move(
    "promote", "champion", 4, {"champion": 3, "challenger": 4},
    (("prev-champion", 3), ("champion", 4), ("challenger", None)),
    ((4, "promoted_over", "v3 (auc=0.8000)"),),
)  # fmt: skip


@pytest.mark.parametrize(
    ("result", "outcome", "code", "last_line"),
    [
        (Promotion(PASSED, True, False, move=MOVE), promotion.PROMOTED, 0,
         "PROMOTED: @champion -> v4"),
        (Promotion(PASSED, False, True), promotion.WOULD_PROMOTE, 0,
         "DRY RUN: would move @champion -> v4"),
        (Promotion(REFUSED, False, False), promotion.KEPT, 1,
         "GATE FAILED: needs >= 0.8020. No change."),
        (Promotion(None, False, False), promotion.NOTHING, 0,
         "no @challenger alias set: nothing to promote"),
        (Promotion(gate(None, CHAL, "auc", 0.002), True, False), promotion.PROMOTED, 0,
         "PROMOTED: @champion -> v4 (cold start)"),
    ],
)  # fmt: skip
def test_outcome_exit_code_and_verdict(
    result: Promotion, outcome: str, code: int, last_line: str
) -> None:
    assert result.outcome == outcome
    assert result.exit_code == code
    assert promotion.report(result)[-1] == last_line == promotion.verdict(result)


def test_the_report_has_both_scores_and_the_paired_interval_before_the_verdict() -> None:
    lines = promotion.report(Promotion(PASSED, True, False, move=MOVE))
    assert lines[:2] == ["champion   : v3  auc=0.8000", "challenger : v4  auc=0.8500"]
    assert lines[2].startswith("paired diff auc=+0.0500  95% CI [+0.0300, +0.0700]")


def test_alias_moves_say_each_alias_from_and_to_in_write_order() -> None:
    p = Promotion(PASSED, True, False, move=MOVE)
    assert p.alias_moves == [
        ("prev-champion", None, 3),
        ("champion", 3, 4),
        ("challenger", 4, None),
    ]
    assert (p.champion, p.challenger) == (3, 4)
    assert Promotion(PASSED, False, True).alias_moves == []  # a dry run moves nothing


def test_score_table_is_markdown_with_cold_start_spelled_out() -> None:
    assert promotion.score_table(PASSED).splitlines()[2:] == [
        "| @champion | v3 | auc=0.8000 |",
        "| @challenger | v4 | auc=0.8500 |",
    ]
    cold = promotion.score_table(gate(None, CHAL, "auc", 0.0))
    assert "| @champion | none (cold start) | - |" in cold
