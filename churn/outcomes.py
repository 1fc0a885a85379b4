"""Outcomes: who churned, read from a labels file, checked, stored beside the prediction log and
joined to the prediction that was in force when the outcome was observed.

A labels file (CSV or Parquet) has three columns:
    customerID   the id the service scored under
    churned      yes/no, true/false or 1/0
    observed_at  when the churn (or the lack of it) was observed, ISO time (UTC unless an
                 offset is given)
A file with any bad row is refused whole, naming the first rows and what is wrong with each:
ingesting half a file would bias every figure computed from it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from churn import predlog, schema
from churn.data import DataFileError, _reason

OUTCOME_COLUMNS = (schema.ID_COLUMN, "churned", "observed_at")
_TRUE = {"yes", "true", "1", "y", "t"}
_FALSE = {"no", "false", "0", "n", "f"}
_SHOWN = 5  # bad rows named in the error


class OutcomeFileError(DataFileError):
    """A labels file that cannot be ingested: missing, unreadable, wrong columns or bad rows."""


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise OutcomeFileError(f"--labels {path}: no such file")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # a reader's own error names the damage, not our code
        raise OutcomeFileError(
            f"--labels {path}: not a readable CSV or Parquet file ({_reason(exc)})"
        ) from None


def _flags(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(churned as bool, mask of values that are not a yes/no)."""
    text = raw.astype(str).str.strip().str.lower()
    known = text.isin(_TRUE | _FALSE)
    return text.isin(_TRUE), ~known


def _problems(frame: pd.DataFrame, bad_flag: pd.Series, bad_time: pd.Series) -> list[str]:
    ids = frame[schema.ID_COLUMN].astype(str).str.strip()
    problems = []
    for i in range(len(frame)):
        row = i + 2  # as a spreadsheet numbers it: header on row 1
        if ids.iat[i] in ("", "nan", "None"):
            problems.append(f"row {row}: {schema.ID_COLUMN} is empty")
        if bad_flag.iat[i]:
            value = frame["churned"].iat[i]
            problems.append(f"row {row}: churned {value!r} is not yes/no, true/false or 1/0")
        if bad_time.iat[i]:
            value = frame["observed_at"].iat[i]
            problems.append(f"row {row}: observed_at {value!r} is not an ISO time")
    return problems


def read_labels(path: Path) -> pd.DataFrame:
    """The labels file, checked: customerID (str), churned (bool), observed_at (UTC)."""
    frame = _read_table(path)
    missing = [c for c in OUTCOME_COLUMNS if c not in frame.columns]
    if missing:
        raise OutcomeFileError(
            f"--labels {path}: missing column(s) {', '.join(missing)}; a labels file has "
            f"{', '.join(OUTCOME_COLUMNS)}"
        )
    if frame.empty:
        raise OutcomeFileError(f"--labels {path}: no rows")
    churned, bad_flag = _flags(frame["churned"])
    observed = pd.to_datetime(frame["observed_at"], utc=True, errors="coerce", format="ISO8601")
    problems = _problems(frame, bad_flag, observed.isna())
    if problems:
        shown = "; ".join(problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise OutcomeFileError(
            f"--labels {path}: {len(problems)} bad value(s), nothing ingested: {shown}{more}"
        )
    return pd.DataFrame(
        {
            schema.ID_COLUMN: frame[schema.ID_COLUMN].astype(str).str.strip(),
            "churned": churned.to_numpy(dtype=bool),
            "observed_at": observed,
        }
    )


def from_generator(
    snapshot: str, rows: int, seed: int, observed_at: datetime | None = None
) -> pd.DataFrame:
    """The outcomes of a generated month's customers, as a labels file would carry them: the
    generator knows who churns. Observed at the end of the following month, when a CRM would
    report that a customer scored during `snapshot` has left (or not), unless `observed_at`."""
    from churn.data import generate

    customers = generate(rows=rows, seed=seed, snapshot=snapshot)
    start = pd.Timestamp(f"{snapshot}-01", tz="UTC")
    end_of_next_month = start + pd.DateOffset(months=2) - pd.Timedelta(seconds=1)
    observed = end_of_next_month if observed_at is None else pd.Timestamp(observed_at)
    return pd.DataFrame(
        {
            schema.ID_COLUMN: customers[schema.ID_COLUMN],
            "churned": customers[schema.LABEL_COLUMN],  # Yes / No
            "observed_at": observed.isoformat(),
        }
    )


def ingest(path: Path, loc: predlog.Location) -> tuple[int, str]:
    """Check `path` and store its rows as one new file under the log's outcomes/ folder."""
    labels = read_labels(path)
    return len(labels), predlog.write_frame(loc, predlog.OUTCOMES_DIR, labels)


def join(log: pd.DataFrame, outcomes: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """Each outcome with, per role, the customer's latest prediction at or before the moment it
    was observed and no older than `window`: the prediction that was in force. A customer scored
    by both a served role and the shadow appears once per role."""
    key = schema.ID_COLUMN
    if log.empty or outcomes.empty:
        return pd.DataFrame(columns=[*predlog.META_COLUMNS, "churned", "observed_at"])
    # One time unit on both sides: merge_asof refuses keys of different units, and a log or a
    # labels file written elsewhere may carry nanoseconds where ours carry microseconds.
    outcomes = outcomes.assign(observed_at=outcomes["observed_at"].dt.as_unit("us"))
    log = log.assign(ts=log["ts"].dt.as_unit("us"))
    # A customer observed twice keeps the latest outcome (a correction wins).
    latest = outcomes.sort_values("observed_at").drop_duplicates(key, keep="last")
    latest = latest.sort_values("observed_at")
    joined = []
    for _, scored in log.sort_values("ts").groupby("role", sort=True):
        matched = pd.merge_asof(
            latest,
            scored[list(predlog.META_COLUMNS)],
            left_on="observed_at",
            right_on="ts",
            by=key,
            direction="backward",
            tolerance=pd.Timedelta(window),
        )
        joined.append(matched.dropna(subset=["ts"]))
    out = pd.concat(joined, ignore_index=True)
    out["version"] = out["version"].astype(np.int64)
    out["label"] = out["churned"].astype(np.int64)
    return out
