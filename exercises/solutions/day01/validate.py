"""Day 1 reference solution: three cross-column rules on a normalised frame."""

from __future__ import annotations

import pandas as pd

INTERNET_ADDONS = (
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
)


def validate(df: pd.DataFrame) -> list[str]:
    """Every cross-column problem in `df`, one message each; [] when clean."""
    frame = df.reset_index(drop=True)
    problems: list[str] = []
    counts = frame["customerID"].value_counts()
    for cid, n in counts[counts > 1].items():
        problems.append(f"customerID {cid!s} appears {n} times")
    blank = frame["TotalCharges"].isna() & (frame["tenure"] != 0)
    for row in frame.index[blank]:
        problems.append(
            f"row {row}: TotalCharges is blank but tenure is {frame.at[row, 'tenure']!s}"
        )
    offline = frame["InternetService"] == "No"
    for col in INTERNET_ADDONS:
        for row in frame.index[offline & (frame[col] != "No internet service")]:
            problems.append(
                f"row {row}: {col} is {frame.at[row, col]!r} but InternetService is 'No'"
            )
    return problems
