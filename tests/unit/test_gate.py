"""The promotion gate, branch by branch, and the exact lines promote.py prints for each."""

from __future__ import annotations

import pytest

from churn.gate import (
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


# The tie: both versions score the holdout identically (difference 0, interval [0, 0]).
TIE = PairedDiff(0.0, 0.0, 0.0, 1000, 800)


@pytest.mark.parametrize("metric", ["auc", "log_loss"])
def test_a_tie_on_the_holdout_is_promoted_with_zero_epsilon(metric: str) -> None:
    d = gate(Candidate(3, 0.85), Candidate(4, 0.85), metric, 0.0, TIE)
    assert d.promote and d.margin_met


@pytest.mark.parametrize(("metric", "side"), [("auc", "lower"), ("log_loss", "upper")])
def test_a_tie_on_the_holdout_is_refused_with_positive_epsilon(metric: str, side: str) -> None:
    d = gate(Candidate(3, 0.85), Candidate(4, 0.85), metric, 0.002, TIE)
    assert not d.promote
    op = ">=" if metric == "auc" else "<="
    target = 0.852 if metric == "auc" else 0.848
    assert format_refusal(d) == f"GATE FAILED: needs {op} {target:.4f}. No change."


def test_zero_epsilon_still_refuses_an_interval_that_reaches_below_zero() -> None:
    """epsilon 0 is "at least as good", not "anything goes": a challenger some resamples
    found worse is refused even though its point estimate is not lower."""
    maybe_worse = PairedDiff(0.001, -0.0004, 0.003, 1000, 800)
    d = gate(Candidate(3, 0.850), Candidate(4, 0.851), "auc", 0.0, maybe_worse)
    assert not d.promote
    assert format_refusal(d) == (
        "GATE FAILED: 95% CI lower bound -0.0004 is not >= 0 (the difference may be noise). "
        "No change."
    )
    worse_point = gate(Candidate(3, 0.850), Candidate(4, 0.849), "auc", 0.0, TIE)
    assert not worse_point.promote  # the margin rule still applies: 0.849 < 0.850
    ll = gate(
        Candidate(3, 0.40), Candidate(4, 0.40), "log_loss", 0.0, PairedDiff(0, -0.01, 0.002, 10, 9)
    )
    assert not ll.promote
    assert format_refusal(ll).startswith("GATE FAILED: 95% CI upper bound +0.0020 is not <= 0")


@pytest.mark.parametrize(
    ("metric", "chal", "touching", "line"),
    [
        ("auc", 0.853, PairedDiff(0.003, 0.0, 0.006, 9, 9), "lower bound +0.0000 is not > 0"),
        (
            "log_loss",
            0.397,
            PairedDiff(-0.003, -0.006, 0.0, 9, 9),
            "upper bound +0.0000 is not < 0",
        ),
    ],
)
def test_an_interval_touching_zero_passes_with_zero_epsilon_only(
    metric: str, chal: float, touching: PairedDiff, line: str
) -> None:
    champ = Candidate(3, 0.850 if metric == "auc" else 0.400)
    assert gate(champ, Candidate(4, chal), metric, 0.0, touching).promote
    # Any positive epsilon means "better": the interval must exclude 0, not touch it.
    d = gate(champ, Candidate(4, chal), metric, 0.001, touching)
    assert d.margin_met and not d.promote
    assert (
        format_refusal(d) == f"GATE FAILED: 95% CI {line} (the difference may be noise). No change."
    )
