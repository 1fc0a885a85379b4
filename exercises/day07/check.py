"""Day 7 checks: the learner's tests pass on the correct gate and catch each planted bug."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from exercises.day07.gate import passes_gate
from exercises.harness import LearnerFileError, Report, load

FILE = "test_gate.py"
Gate = Callable[..., bool]


def _ge(champion: float | None, challenger: float, epsilon: float = 0.0) -> bool:
    return champion is None or challenger - champion >= epsilon


def _no_epsilon(champion: float | None, challenger: float, epsilon: float = 0.0) -> bool:
    return champion is None or challenger > champion


def _first_refused(champion: float | None, challenger: float, epsilon: float = 0.0) -> bool:
    return champion is not None and challenger - champion > epsilon


def _swapped(champion: float | None, challenger: float, epsilon: float = 0.0) -> bool:
    return champion is None or champion - challenger > epsilon


BUGS: dict[str, Gate] = {
    "`>=` instead of `>` (a tie or a gain of exactly epsilon promotes)": _ge,
    "epsilon ignored": _no_epsilon,
    "the first model (no champion) is refused": _first_refused,
    "champion and challenger swapped": _swapped,
}


def _failing(module: ModuleType, gate: Gate) -> list[str]:
    """Names of the module's tests that fail with `passes_gate` replaced by `gate`."""
    vars(module)["passes_gate"] = gate  # what the learner's tests call, by name
    failed = []
    for name in sorted(n for n in vars(module) if n.startswith("test")):
        test = getattr(module, name)
        if not callable(test):
            continue
        try:
            test()
        except Exception:  # an assert, or anything the bug makes the test raise
            failed.append(name)
    return failed


def run(path: Path, report: Report) -> None:
    module = load(path)
    tests = [n for n in vars(module) if n.startswith("test") and callable(getattr(module, n))]
    if not tests:
        raise LearnerFileError(f"{path} has no test functions (def test_...():)")

    def correct() -> str | None:
        failed = _failing(module, passes_gate)
        if failed:
            return f"these tests fail on the CORRECT gate, so they test the wrong thing: {failed}"
        return None

    def catches(bug: str, gate: Gate) -> str | None:
        if not _failing(module, gate):
            return f"no test catches the planted bug: {bug}"
        return None

    report.run("the correct gate", correct)
    for bug, gate in BUGS.items():
        report.run(bug, lambda b=bug, g=gate: catches(b, g))  # type: ignore[misc]
