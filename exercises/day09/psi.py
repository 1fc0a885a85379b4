"""Day 9 exercise: a drift check, the Population Stability Index of one feature.

Write `psi(reference, current, bins=10)` as `python -m churn drift` computes it for a numeric
feature (no missing values here):

  1. bin edges: the reference's quantiles at 1/bins, 2/bins, ... (bins-1)/bins, duplicates
     removed (np.quantile, np.unique): bins-1 edges, so `bins` intervals;
  2. each value's bin: np.searchsorted(edges, x, side="right");
  3. the share of rows in each bin, for reference (r) and for current (c); a bin that is empty
     on one side would divide by zero, so floor every share at 1e-4;
  4. PSI = sum over bins of (c - r) * ln(c / r).

Then `level(value)`: "ok" below 0.1, "warn" from 0.1, "alert" from 0.25 (params.yaml, drift:).

`make check DAY=9` compares your number with the project's on real generated months
(MonthlyCharges of 2026-07 against later months, which drift) and checks the edge cases.
"""

from __future__ import annotations

import numpy as np

FLOOR = 1e-4
WARN, ALERT = 0.1, 0.25


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of `current` against `reference` over quantile bins of the reference."""
    # TODO: edges, codes, shares (floored), the sum
    raise NotImplementedError


def level(value: float) -> str:
    """ "ok", "warn" or "alert" for a PSI value."""
    # TODO
    raise NotImplementedError
