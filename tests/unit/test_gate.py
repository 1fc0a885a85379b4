"""The promotion gate, branch by branch, and the exact lines promote.py prints for each."""

from __future__ import annotations

import pytest

from churn.registry import (
    Candidate,
    PairedDiff,
    format_decision_header,
    format_paired,
    format_refusal,
    gate,
)


def test_cold_start_promotes_without_a_champion() -> None:
    d = gate(None, Candidate(1, 0.80), "auc", 0.002)
    assert d.promote and d.required is None
    assert format_decision_header(d) == [
        "champion   : none (cold start)",
        "challenger : v1  auc=0.8000",
    ]


def test_better_by_more_than_epsilon_promotes() -> None:
    d = gate(Candidate(3, 0.86), Candidate(4, 0.88), "auc", 0.002)
    assert d.promote
    assert format_decision_header(d) == [
        "champion   : v3  auc=0.8600",
        "challenger : v4  auc=0.8800",
    ]


def test_better_by_less_than_epsilon_is_refused() -> None:
    d = gate(Candidate(3, 0.86), Candidate(4, 0.861), "auc", 0.002)
    assert not d.promote
    assert format_refusal(d) == "GATE FAILED: needs >= 0.8620. No change."


def test_exactly_epsilon_better_promotes_despite_float_round_off() -> None:
    # 0.1 + 0.2 != 0.3 in binary; the printed numbers say it passes, so it must pass.
    assert gate(Candidate(1, 0.1), Candidate(2, 0.3), "auc", 0.2).promote


def test_worse_is_refused_and_equal_is_refused_with_positive_epsilon() -> None:
    assert not gate(Candidate(1, 0.85), Candidate(2, 0.84), "auc", 0.002).promote
    assert not gate(Candidate(1, 0.85), Candidate(2, 0.85), "auc", 0.002).promote


def test_equal_passes_with_zero_epsilon() -> None:
    assert gate(Candidate(1, 0.85), Candidate(2, 0.85), "auc", 0.0).promote


@pytest.mark.parametrize(
    ("champion", "challenger", "promote"),
    [(0.40, 0.35, True), (0.40, 0.399, False), (0.40, 0.45, False)],
)
def test_lower_is_better_metrics_gate_the_other_way(
    champion: float, challenger: float, promote: bool
) -> None:
    d = gate(Candidate(1, champion), Candidate(2, challenger), "log_loss", 0.002)
    assert d.promote is promote
    if not promote:
        assert format_refusal(d) == "GATE FAILED: needs <= 0.3980. No change."


def test_a_difference_that_rounds_to_zero_prints_without_a_minus_sign() -> None:
    paired = PairedDiff(diff=-1e-6, low=-0.00004, high=0.01234, resamples=1000, rows=4000)
    d = gate(Candidate(1, 0.86), Candidate(2, 0.86), "auc", 0.002, paired)
    assert format_paired(d) == (
        "paired diff auc=+0.0000  95% CI [+0.0000, +0.0123] "
        "(1000 bootstrap resamples, 4,000 holdout rows)"
    )
    refused = gate(Candidate(1, 0.86), Candidate(2, 0.8625), "auc", 0.002, paired)
    assert format_refusal(refused).startswith("GATE FAILED: 95% CI lower bound +0.0000 is not > 0")
