"""Day 9 reference solution: PSI over the reference's quantile bins."""

from __future__ import annotations

import numpy as np

FLOOR = 1e-4
WARN, ALERT = 0.1, 0.25


def _shares(codes: np.ndarray, k: int) -> np.ndarray:
    return np.maximum(np.bincount(codes, minlength=k) / max(len(codes), 1), FLOOR)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of `current` against `reference` over quantile bins of the reference."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    k = len(edges) + 1
    r = _shares(np.searchsorted(edges, ref, side="right"), k)
    c = _shares(np.searchsorted(edges, cur, side="right"), k)
    return float(np.sum((c - r) * np.log(c / r)))


def level(value: float) -> str:
    """ "ok", "warn" or "alert" for a PSI value."""
    return "alert" if value >= ALERT else "warn" if value >= WARN else "ok"
