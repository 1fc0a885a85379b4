"""Day 9 checks: the learner's psi() against the project's (churn.drift) on real generated
months, its edge cases, and level()'s thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from churn import data, drift
from churn.settings import DriftParams
from exercises.harness import Report, function, load

FILE = "psi.py"
BASE, LATER = "2026-07", ("2026-10", "2027-07")


def _charges(snapshot: str, seed: int) -> np.ndarray:
    frame = data.normalise(data.generate(rows=2000, seed=seed, snapshot=snapshot))
    return frame["MonthlyCharges"].to_numpy(dtype=np.float64)


def run(path: Path, report: Report) -> None:
    module = load(path)
    psi, level = function(module, "psi"), function(module, "level")
    reference = _charges(BASE, seed=1)

    def same() -> str | None:
        value = psi(reference, reference.copy())
        if not isinstance(value, float) or abs(value) > 1e-9:
            return f"the PSI of a sample against itself must be 0.0: got {value!r}"
        return None

    def matches(snapshot: str) -> str | None:
        current = _charges(snapshot, seed=2)
        want = drift.numeric_drift("MonthlyCharges", reference, current, DriftParams()).psi
        got = psi(reference, current)
        if not isinstance(got, float) or abs(got - want) > 1e-6:
            return f"PSI of MonthlyCharges, {BASE} vs {snapshot}: got {got!r}, expected {want:.4f}"
        return None

    def empty_bin() -> str | None:
        # Every current value above the reference's top edge: 9 empty bins, must stay finite.
        value = psi(reference, reference + 1000.0)
        if not isinstance(value, float) or not np.isfinite(value) or value < 5:
            return (
                "with empty bins PSI must be large and finite (floor shares at 1e-4): "
                f"got {value!r}"
            )
        return None

    def levels() -> str | None:
        cases = {0.0: "ok", 0.0999: "ok", 0.1: "warn", 0.2499: "warn", 0.25: "alert", 3.0: "alert"}
        wrong = {v: level(v) for v, want in cases.items() if level(v) != want}
        if wrong:
            v, got = next(iter(wrong.items()))
            return f"level({v}) must be {cases[v]!r} (warn from 0.1, alert from 0.25): got {got!r}"
        return None

    report.run("identical samples", same)
    for snapshot in LATER:
        report.run(f"MonthlyCharges {snapshot}", lambda s=snapshot: matches(s))  # type: ignore[misc]
    report.run("empty bins", empty_bin)
    report.run("levels", levels)
