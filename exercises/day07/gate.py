"""The function under test on Day 7 (correct as given: do not edit it, test it)."""

from __future__ import annotations


def passes_gate(champion_auc: float | None, challenger_auc: float, epsilon: float = 0.0) -> bool:
    """Promote the challenger when there is no champion yet, or when it beats the champion's AUC
    by MORE than `epsilon` (a tie, or a gain of exactly epsilon, keeps the champion)."""
    if champion_auc is None:
        return True
    return challenger_auc - champion_auc > epsilon
