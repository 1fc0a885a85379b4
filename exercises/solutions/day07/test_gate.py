"""Day 7 reference solution: one test per edge of the rule."""

from __future__ import annotations

from exercises.day07.gate import passes_gate


def test_a_clear_win_promotes() -> None:
    assert passes_gate(0.80, 0.85)


def test_a_loss_keeps_the_champion() -> None:
    assert not passes_gate(0.85, 0.80)


def test_a_tie_keeps_the_champion() -> None:
    assert not passes_gate(0.80, 0.80)


def test_a_gain_of_exactly_epsilon_keeps_the_champion() -> None:
    assert not passes_gate(0.75, 0.875, epsilon=0.125)  # exact in binary


def test_a_gain_above_epsilon_promotes() -> None:
    assert passes_gate(0.80, 0.82, epsilon=0.01)


def test_a_gain_below_epsilon_keeps_the_champion() -> None:
    assert not passes_gate(0.80, 0.805, epsilon=0.01)


def test_the_first_model_is_promoted() -> None:
    assert passes_gate(None, 0.5)
