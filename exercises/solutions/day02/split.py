"""Day 2 reference solution: sklearn's stratified split, seeded locally."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split


def split(df: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): reproducible for a seed, stratified on Churn."""
    n_test = round(len(df) * test_size)  # an int: sklearn then rounds nothing itself
    train, test = train_test_split(df, test_size=n_test, random_state=seed, stratify=df["Churn"])
    return train, test
