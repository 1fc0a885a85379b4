"""The paired bootstrap gate: weighted metrics, resampling, and the lines promote.py prints."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from churn import evaluate
from churn.evaluate import bootstrap_weights, paired_bootstrap, weighted_metric
from churn.gate import Candidate, PairedDiff, format_paired, format_refusal, gate
from churn.training import evaluate as sklearn_metrics


def _scores(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    weak = np.clip(0.15 * y + 0.85 * rng.random(n), 0, 1)
    # Rounded: many tied scores, which the AUC must count as one half.
    strong = np.round(np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1), 2)
    return y, weak, strong


@pytest.mark.parametrize("metric", ["auc", "f1", "precision", "recall", "accuracy", "log_loss"])
def test_unit_weights_give_sklearn_numbers(metric: str) -> None:
    y, weak, strong = _scores()
    for proba in (weak, strong):
        got = weighted_metric(metric, y, proba, np.ones((1, len(y))), 0.5)[0]
        assert got == pytest.approx(sklearn_metrics(y, proba, 0.5)[metric], abs=1e-12)


@pytest.mark.parametrize("metric", ["auc", "f1", "log_loss"])
def test_each_resample_matches_sklearn_with_the_same_sample_weights(metric: str) -> None:
    y, _, strong = _scores(n=300)
    (w,) = bootstrap_weights(len(y), 20, seed=3)
    got = weighted_metric(metric, y, strong, w, 0.5)
    for row, value in zip(w, got, strict=True):
        if metric == "auc":
            want = skm.roc_auc_score(y, strong, sample_weight=row)
        elif metric == "f1":
            want = skm.f1_score(y, strong >= 0.5, sample_weight=row, zero_division=0)
        else:
            want = skm.log_loss(y, strong, sample_weight=row, labels=[0, 1])
        assert value == pytest.approx(want, abs=1e-10)


def test_bootstrap_weights_are_resamples_and_do_not_depend_on_the_block_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = np.vstack(list(bootstrap_weights(50, 40, seed=9)))
    assert whole.shape == (40, 50) and (whole.sum(axis=1) == 50).all()
    monkeypatch.setattr(evaluate, "_BLOCK_CELLS", 7 * 50)  # blocks of 7 resamples
    blocks = list(bootstrap_weights(50, 40, seed=9))
    assert [len(b) for b in blocks] == [7, 7, 7, 7, 7, 5]
    np.testing.assert_array_equal(np.vstack(blocks), whole)


def test_identical_models_differ_by_exactly_zero() -> None:
    y, weak, _ = _scores()
    d = paired_bootstrap("auc", y, weak, weak.copy(), resamples=200, seed=1)
    assert (d.diff, d.low, d.high, d.resamples, d.rows) == (0.0, 0.0, 0.0, 200, 600)


def test_clearly_better_has_an_interval_above_zero_and_is_seeded() -> None:
    y, weak, strong = _scores()
    d = paired_bootstrap("auc", y, weak, strong, resamples=500, seed=1)
    assert d.diff == pytest.approx(skm.roc_auc_score(y, strong) - skm.roc_auc_score(y, weak))
    assert 0 < d.low < d.diff < d.high
    assert paired_bootstrap("auc", y, weak, strong, resamples=500, seed=1) == d
    # Lower is better: the challenger's log loss is lower, so the whole interval is below 0.
    ll = paired_bootstrap("log_loss", y, weak, np.clip(strong, 0.01, 0.99), resamples=300)
    assert ll.high < 0


def test_paired_gate_needs_the_margin_and_an_interval_that_excludes_zero() -> None:
    champ, chal = Candidate(3, 0.8000), Candidate(4, 0.8123)
    sure = PairedDiff(0.0123, 0.0071, 0.0176, 1000, 4000)
    d = gate(champ, chal, "auc", 0.002, sure)
    assert d.promote
    assert format_paired(d) == (
        "paired diff auc=+0.0123  95% CI [+0.0071, +0.0176] "
        "(1000 bootstrap resamples, 4,000 holdout rows)"
    )
    noisy = PairedDiff(0.0123, -0.0012, 0.0250, 1000, 4000)
    d = gate(champ, chal, "auc", 0.002, noisy)
    assert not d.promote
    assert format_refusal(d) == (
        "GATE FAILED: 95% CI lower bound -0.0012 is not > 0 (the difference may be noise). "
        "No change."
    )
    # Below the margin, the margin is what the refusal names (as without re-evaluation).
    d = gate(champ, Candidate(4, 0.8010), "auc", 0.002, PairedDiff(0.001, 0.0005, 0.002, 1000, 9))
    assert format_refusal(d) == "GATE FAILED: needs >= 0.8020. No change."


def test_paired_gate_flips_for_lower_is_better() -> None:
    champ = Candidate(1, 0.45)
    better = gate(
        champ, Candidate(2, 0.40), "log_loss", 0.002, PairedDiff(-0.05, -0.07, -0.03, 1000, 10)
    )
    assert better.promote
    noisy = gate(
        champ, Candidate(2, 0.40), "log_loss", 0.002, PairedDiff(-0.05, -0.09, 0.01, 1000, 10)
    )
    assert not noisy.promote
    assert format_refusal(noisy).startswith("GATE FAILED: 95% CI upper bound +0.0100 is not < 0")
