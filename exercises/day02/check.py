"""Day 2 checks: the learner's split() on real generated customers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from churn import data
from exercises.harness import Report, function, load

FILE = "split.py"
ROWS, TEST_SIZE = 1000, 0.2


def _ids(frame: pd.DataFrame) -> list[str]:
    return [str(x) for x in frame["customerID"]]


def run(path: Path, report: Report) -> None:
    split = function(load(path), "split")
    checks = _Checks(split, data.normalise(data.generate(rows=ROWS, seed=11)))
    named: dict[str, Callable[[], str | None]] = {
        "rule 1, sizes and coverage": checks.sizes,
        "rule 2, same seed": checks.same_seed,
        "rule 3, other seed": checks.other_seed,
        "rule 4, stratified": checks.stratified,
        "rule 5, no global state": checks.no_global_state,
    }
    for name, check in named.items():
        report.run(name, check)


class _Checks:
    """The five rules on one frame; each seed's split is computed once and shared."""

    def __init__(self, split: Callable[..., object], df: pd.DataFrame) -> None:
        self.split, self.df = split, df
        self.results: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}

    def once(self, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        if seed not in self.results:
            out = self.split(self.df.copy(), TEST_SIZE, seed)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("split must return a tuple (train, test)")
            self.results[seed] = (out[0], out[1])
        return self.results[seed]

    def sizes(self) -> str | None:
        train, test = self.once(42)
        if (len(train), len(test)) != (800, 200):
            return (
                f"split(1000 rows, 0.2) must give 800 + 200 rows: gave {len(train)} + {len(test)}"
            )
        if set(_ids(train)) & set(_ids(test)):
            return "train and test must not share a customer: some customerIDs are in both"
        if sorted(_ids(train) + _ids(test)) != sorted(_ids(self.df)):
            return "train + test must be every row of the input exactly once"
        return None

    def same_seed(self) -> str | None:
        again = self.split(self.df.copy(), TEST_SIZE, 42)
        assert isinstance(again, tuple)
        if _ids(again[1]) != _ids(self.once(42)[1]):
            return "the same seed must give the same test rows, in the same order: it did not"
        return None

    def other_seed(self) -> str | None:
        if set(_ids(self.once(7)[1])) == set(_ids(self.once(42)[1])):
            return "seeds 7 and 42 gave the same test rows: the seed must drive the shuffle"
        return None

    def stratified(self) -> str | None:
        train, test = self.once(42)
        gap = abs(float(train["Churn"].mean()) - float(test["Churn"].mean()))
        if gap > 0.01:
            return f"the churn rate of train and test differ by {gap:.1%}: stratify on Churn"
        return None

    def no_global_state(self) -> str | None:
        saved = np.random.get_state()
        try:
            np.random.seed(0)
            expected = np.random.random()
            np.random.seed(0)
            self.split(self.df.copy(), TEST_SIZE, 3)
            drawn = np.random.random()
        finally:
            np.random.set_state(saved)  # the checker leaves the process as it found it
        if drawn != expected:
            return "split changed numpy's global random state: use a local generator"
        return None
