"""Day 2 exercise: a train/test split you can reproduce.

Write `split(df, test_size, seed)` that returns (train, test) such that:

  1. test has round(len(df) * test_size) rows, train the rest; together they are every row of
     df exactly once (check by customerID);
  2. the same seed gives the same split, every time, in every process;
  3. a different seed gives a different split;
  4. it is stratified: the churn rate (mean of the Churn column, 1/0) of train and of test are
     within one percentage point of each other;
  5. it touches no global state: do not call np.random.seed / random.seed; use a local
     generator (np.random.default_rng(seed)) or sklearn's random_state=seed.

`make check DAY=2` runs each rule on real generated customers.
Hint: sklearn.model_selection.train_test_split has stratify= and random_state=.
"""

from __future__ import annotations

import pandas as pd


def split(df: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): reproducible for a seed, stratified on Churn."""
    # TODO
    raise NotImplementedError
