"""Day 1 checks: the learner's validate() on real generated customers, clean and with planted
errors (one kind at a time, so each message is checked on its own)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from churn import data
from exercises.harness import Report, function, load

FILE = "validate.py"


def _clean() -> pd.DataFrame:
    return data.normalise(data.generate(rows=400, seed=7))


def _first(df: pd.DataFrame, mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0])


def run(path: Path, report: Report) -> None:
    validate = function(load(path), "validate")

    def finds(plant: Callable[[pd.DataFrame], tuple[str, list[str]]]) -> str | None:
        df = _clean()
        what, words = plant(df)
        found = validate(df)
        if not isinstance(found, list):
            return f"validate must return a list of messages: returned {type(found).__name__}"
        hits = [m for m in found if all(w in str(m) for w in words)]
        if not hits:
            return f"validate must report {what}: no message names {' and '.join(words)}"
        if len(found) != 1:
            return f"validate must report only {what} (one message): returned {len(found)}"
        return None

    def clean() -> str | None:
        found = validate(_clean())
        if not isinstance(found, list) or found:
            return f"validate must return [] for clean data: returned {str(found)[:160]}"
        return None

    def duplicate(df: pd.DataFrame) -> tuple[str, list[str]]:
        cid = str(df.at[2, "customerID"])
        df.at[5, "customerID"] = cid
        return "a repeated customerID", ["customerID", cid, "2 times"]

    def blank_total(df: pd.DataFrame) -> tuple[str, list[str]]:
        row = _first(df, df["tenure"] > 0)
        df.loc[row, "TotalCharges"] = np.nan
        tenure = str(df.loc[row, "tenure"])
        return f"row {row}'s blank TotalCharges (tenure {tenure})", [f"row {row}", "TotalCharges"]

    def addon(df: pd.DataFrame) -> tuple[str, list[str]]:
        row = _first(df, df["InternetService"] == "No")
        df.loc[row, "TechSupport"] = "Yes"
        return f"row {row}'s TechSupport 'Yes' without internet", [f"row {row}", "TechSupport"]

    report.run("clean data", clean)
    report.run("rule 1, unique customerID", lambda: finds(duplicate))
    report.run("rule 2, blank TotalCharges", lambda: finds(blank_total))
    report.run("rule 3, add-ons without internet", lambda: finds(addon))
