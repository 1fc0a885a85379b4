"""Day 7 exercise: tests that catch bugs before they ship.

exercises/day07/gate.py holds `passes_gate`, the promotion rule (read its docstring). Write
tests for it here: plain `def test_...():` functions with `assert`. `make check DAY=7` runs them
against the correct gate, where they must all pass, and against four copies of it, each with one
planted bug a tired engineer could write. Each planted bug must make at least one of your tests
fail. (You can also run them with `python -m pytest exercises/day07/test_gate.py`.)

Think about: a clear win; a loss; an exact tie; a gain equal to epsilon, and just above it;
the very first model (no champion).
"""

from __future__ import annotations

from exercises.day07.gate import passes_gate


def test_a_clear_win_promotes() -> None:
    assert passes_gate(0.80, 0.85)


# TODO: more tests, until every planted bug is caught
