"""Day 1 exercise: a data validation rule the schema cannot express.

`churn.data.normalise` already checks each column on its own (types, ranges, categories). Some
errors only show across columns or rows. Write `validate(df)` for a normalised frame (the layout
of data/customers.parquet) that returns one message per problem, [] when the data is clean:

  1. customerID is unique. For each repeated id: "customerID 1234-ABCDE appears 2 times".
  2. TotalCharges may be blank (NaN) only for a new customer (tenure 0). For each other row:
     "row 7: TotalCharges is blank but tenure is 12".
  3. A customer without internet (InternetService "No") has "No internet service" in each
     add-on column (INTERNET_ADDONS). For each row and column that says otherwise:
     "row 4: OnlineSecurity is 'Yes' but InternetService is 'No'".

Rows are counted from 0 (the frame's position). `make check DAY=1` plants each kind of error in
real generated data and checks that you find it, and only it.
"""

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
    problems: list[str] = []
    # TODO rule 1: df["customerID"].value_counts()
    # TODO rule 2: rows where TotalCharges is NaN and tenure != 0
    # TODO rule 3: rows where InternetService == "No" and an add-on != "No internet service"
    raise NotImplementedError
    return problems
