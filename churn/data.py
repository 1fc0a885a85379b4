"""The data layer: a seeded generator in the IBM Telco layout, and validated ingestion.

`generate` produces the raw layout exactly as the public CSV has it (TotalCharges as a string,
blank for new customers; Churn as Yes/No), so the generated file and the real one go through the
same `normalise` path. `normalise` collects every problem before raising, so a bad file is
reported in one message naming each wrong column with a few offending values.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from churn import schema
from churn.schema import Column, Kind

BASE_SNAPSHOT = "2026-07"
_SNAPSHOT_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_MAX_EXAMPLES = 3


class DataValidationError(ValueError):
    """The data does not fit the schema; the message names every wrong column."""


# ---------------------------------------------------------------------------------------------
# Generator


def _months_since_base(snapshot: str) -> int:
    match = _SNAPSHOT_RE.match(snapshot)
    if not match:
        raise ValueError(f"snapshot must look like 2026-07 (YYYY-MM), got {snapshot!r}")
    base_year, base_month = (int(x) for x in BASE_SNAPSHOT.split("-"))
    return (int(match[1]) - base_year) * 12 + int(match[2]) - base_month


def _rng(seed: int, snapshot: str) -> np.random.Generator:
    # hashlib, not hash(): Python salts str hashes per process, which would break determinism.
    month_key = int.from_bytes(hashlib.sha256(snapshot.encode()).digest()[:8], "big")
    return np.random.default_rng([seed, month_key])


def _customer_ids(rng: np.random.Generator, rows: int) -> np.ndarray:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    codes = rng.choice(10_000 * 26**5, size=rows, replace=False)
    digits, rest = np.divmod(codes, 26**5)
    parts = [np.char.zfill(digits.astype(str), 4), np.full(rows, "-")]
    for power in range(4, -1, -1):
        parts.append(letters[(rest // 26**power) % 26])
    out = parts[0]
    for part in parts[1:]:
        out = np.char.add(out, part)
    return out


def _pick(rng: np.random.Generator, options: tuple[str, ...], p: np.ndarray) -> np.ndarray:
    """Vectorised categorical draw with per-row probabilities `p` (rows x len(options))."""
    cumulative = np.cumsum(p, axis=1)
    u = rng.random(len(p))[:, None]
    index = np.minimum((u > cumulative).sum(axis=1), len(options) - 1)
    return np.asarray(options, dtype=object)[index]


def generate(rows: int = 20_000, seed: int = 42, snapshot: str = BASE_SNAPSHOT) -> pd.DataFrame:
    """Synthetic customers in the raw Telco layout. Same seed + snapshot => identical frame.

    Later snapshots drift: more fiber optic and electronic-check customers, higher charges, and
    churn driven harder by price, so a model trained on an earlier month degrades on a later one.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    m = _months_since_base(snapshot)
    rng = _rng(seed, snapshot)
    n = rows

    def yes(p: np.ndarray | float) -> np.ndarray:
        return rng.random(n) < p

    gender = np.where(yes(0.5), "Male", "Female")
    senior = yes(0.16).astype(np.int64)
    partner = yes(0.48)
    dependents = yes(np.where(partner, 0.45, 0.10))

    contract_p = np.tile([0.55, 0.21, 0.24], (n, 1))
    contract_p[:, 0] += np.where(senior == 1, 0.12, 0.0)
    contract_p /= contract_p.sum(axis=1, keepdims=True)
    contract = _pick(rng, ("Month-to-month", "One year", "Two year"), contract_p)
    # Tenure: short for month-to-month, long for two-year contracts (the real file's U shape).
    a = np.select([contract == "Month-to-month", contract == "One year"], [0.7, 1.6], 3.0)
    b = np.select([contract == "Month-to-month", contract == "One year"], [2.2, 1.2], 0.8)
    tenure = np.clip(np.rint(1 + 71 * rng.beta(a, b)), 1, 72).astype(np.int64)
    tenure[yes(0.006)] = 0  # brand-new customers: no bill yet, TotalCharges blank

    phone = yes(0.90)
    multiple = np.where(
        phone, np.where(yes(0.30 + 0.35 * tenure / 72), "Yes", "No"), "No phone service"
    )
    fiber_share = min(0.44 + 0.01 * m, 0.70)
    internet = _pick(
        rng,
        ("DSL", "Fiber optic", "No"),
        np.tile([0.78 - fiber_share - 0.0, fiber_share, 0.22], (n, 1)),
    )
    has_net = internet != "No"
    addon_base = {
        "OnlineSecurity": 0.22,
        "OnlineBackup": 0.30,
        "DeviceProtection": 0.30,
        "TechSupport": 0.22,
        "StreamingTV": 0.38,
        "StreamingMovies": 0.38,
    }
    addons: dict[str, np.ndarray] = {}
    for name, base in addon_base.items():
        p = base + 0.30 * tenure / 72 + np.where(internet == "Fiber optic", 0.10, 0.0)
        addons[name] = np.where(has_net, np.where(yes(p), "Yes", "No"), "No internet service")

    paperless = yes(0.59 + np.where(internet == "Fiber optic", 0.12, 0.0))
    pay_p = np.tile([0.30 + 0.005 * m, 0.25, 0.23, 0.22], (n, 1))
    pay_p[:, 0] += np.where(contract == "Month-to-month", 0.15, 0.0)
    pay_p /= pay_p.sum(axis=1, keepdims=True)
    payment = _pick(
        rng,
        (
            "Electronic check",
            "Mailed check",
            "Bank transfer (automatic)",
            "Credit card (automatic)",
        ),
        pay_p,
    )

    # Price follows the services taken, plus a monthly price rise after the base snapshot.
    n_addons = sum((v == "Yes").astype(float) for v in addons.values())
    monthly = (
        np.where(phone, 20.0, 0.0)
        + np.where(multiple == "Yes", 5.0, 0.0)
        + np.select([internet == "DSL", internet == "Fiber optic"], [25.0, 48.0], 0.0)
        + 6.5 * n_addons
        + rng.normal(0.0, 2.0, n)
    ) * (1 + 0.01 * max(m, 0))
    monthly = np.round(np.clip(monthly, 18.25, 125.0), 2)
    total = np.round(np.maximum(tenure * monthly * rng.normal(1.0, 0.04, n), monthly), 2)
    total_str = np.array([f"{v:.2f}".rstrip("0").rstrip(".") for v in total], dtype=object)
    total_str[tenure == 0] = " "

    # Churn: logistic in the known drivers plus a latent "satisfaction" term the data never
    # shows, which keeps the problem learnable but not trivial (AUC in the 0.80s).
    # Drift after the base month: fiber and price matter more, electronic check less, and
    # streaming customers start leaving (a competitor's bundle): drivers change, not just scale.
    d = max(m, 0)
    streaming = (addons["StreamingTV"] == "Yes").astype(float) + (
        addons["StreamingMovies"] == "Yes"
    ).astype(float)
    logit = (
        -1.38
        - 0.10 * d
        + np.select([contract == "Month-to-month", contract == "One year"], [1.6, 0.4], -0.9)
        + (0.80 + 0.10 * d) * (internet == "Fiber optic")
        - 0.45 * (internet == "No")
        + (0.55 - 0.10 * d) * (payment == "Electronic check")
        - 2.0 * np.sqrt(tenure / 72)
        + (0.50 + 0.04 * d) * (monthly - 65) / 30
        - (0.50 - 0.05 * d) * (addons["TechSupport"] == "Yes")
        - 0.50 * (addons["OnlineSecurity"] == "Yes")
        + 0.15 * d * streaming
        + 0.30 * senior
        + 0.25 * paperless
        - 0.20 * partner
        - 0.20 * dependents
        + rng.normal(0.0, 0.55, n)
    )
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))

    def yn(flag: np.ndarray) -> np.ndarray:
        return np.where(flag, "Yes", "No").astype(object)

    frame = pd.DataFrame(
        {
            "customerID": _customer_ids(rng, n).astype(object),
            "gender": gender.astype(object),
            "SeniorCitizen": senior,
            "Partner": yn(partner),
            "Dependents": yn(dependents),
            "tenure": tenure,
            "PhoneService": yn(phone),
            "MultipleLines": multiple.astype(object),
            "InternetService": internet,
            **{k: v.astype(object) for k, v in addons.items()},
            "Contract": contract,
            "PaperlessBilling": yn(paperless),
            "PaymentMethod": payment,
            "MonthlyCharges": monthly,
            "TotalCharges": total_str,
            "Churn": yn(churn),
        }
    )
    return frame[list(schema.COLUMN_NAMES)]


# ---------------------------------------------------------------------------------------------
# Validation and normalisation


def _examples(values: pd.Series, mask: pd.Series | np.ndarray) -> str:
    bad = values[np.asarray(mask)]
    shown = ", ".join(f"{v!r} (row {i})" for i, v in bad.head(_MAX_EXAMPLES).items())
    more = len(bad) - _MAX_EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


def _numeric(raw: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(values as float, blank mask, unparseable mask) for a column that may hold strings."""
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.astype("float64")
        blank = values.isna()
        return values, blank, pd.Series(False, index=raw.index)
    text = raw.astype("string").str.strip()
    blank = text.isna() | (text == "")
    values = pd.to_numeric(text.where(~blank), errors="coerce").astype("float64")
    return values, blank, values.isna() & ~blank


def _check_column(col: Column, raw: pd.Series) -> tuple[pd.Series | None, list[str]]:
    problems: list[str] = []
    if col.kind in (Kind.ID, Kind.CATEGORY):
        text = raw.astype("string").str.strip()
        missing = text.isna() | (text == "")
        if missing.any():
            problems.append(f"missing values {_examples(raw, missing)}")
        if col.kind is Kind.CATEGORY:
            unknown = ~text.isin(col.categories) & ~missing
            if unknown.any():
                allowed = ", ".join(repr(c) for c in col.categories)
                problems.append(f"unknown values {_examples(raw, unknown)} (allowed: {allowed})")
        elif text[~missing].duplicated().any():
            dupes = text.duplicated(keep=False) & ~missing
            problems.append(f"duplicate ids {_examples(raw, dupes)}")
        return text.astype(object), problems

    if col.kind is Kind.LABEL:
        if pd.api.types.is_numeric_dtype(raw):
            values = raw.astype("float64")
            bad = ~values.isin([0.0, 1.0])
            out = values.where(~bad, 0).astype("int64")
        else:
            text = raw.astype("string").str.strip()
            bad = ~text.isin(col.categories)
            out = (text == "Yes").astype("int64")
        if bad.any():
            problems.append(f"labels must be 'Yes' or 'No': {_examples(raw, bad)}")
        return out, problems

    values, blank, unparseable = _numeric(raw)
    if unparseable.any():
        problems.append(f"not a number: {_examples(raw, unparseable)}")
    if blank.any() and not col.nullable:
        problems.append(f"missing values {_examples(raw, blank)}")
    present = ~blank & ~unparseable
    if col.kind in (Kind.FLAG, Kind.INTEGER):
        fractional = present & (values != np.floor(values))
        if fractional.any():
            problems.append(f"not a whole number: {_examples(raw, fractional)}")
    lo = col.minimum if col.minimum is not None else -np.inf
    hi = col.maximum if col.maximum is not None else np.inf
    out_of_range = present & ((values < lo) | (values > hi))
    if out_of_range.any():
        bounds = f"{lo:g}..{hi:g}" if np.isfinite(hi) else f">= {lo:g}"
        problems.append(f"out of range {bounds}: {_examples(raw, out_of_range)}")
    if col.kind in (Kind.FLAG, Kind.INTEGER):
        return values.fillna(0).astype("int64"), problems
    return values, problems


def normalise(raw: pd.DataFrame) -> pd.DataFrame:
    """Validate a frame in the Telco layout and return it typed: the frame the rest uses.

    Idempotent, so an already-normalised frame (float TotalCharges, 0/1 Churn) passes unchanged.
    """
    problems: dict[str, list[str]] = {}
    missing = [c for c in schema.COLUMN_NAMES if c not in raw.columns]
    extra = [str(c) for c in raw.columns if c not in schema.BY_NAME]
    if missing:
        problems["missing columns"] = [", ".join(missing)]
    if extra:
        problems["unexpected columns"] = [", ".join(extra)]
    frame = raw.reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    for col in schema.COLUMNS:
        if col.name not in frame.columns:
            continue
        values, col_problems = _check_column(col, frame[col.name])
        if col_problems:
            problems[col.name] = col_problems
        if values is not None:
            out[col.name] = values
    if problems:
        n = len(problems)
        detail = "; ".join(f"{name}: {', '.join(msgs)}" for name, msgs in problems.items())
        raise DataValidationError(f"bad data in {n} column{'s' if n > 1 else ''}: {detail}")
    result = pd.DataFrame(out)[list(schema.COLUMN_NAMES)]
    return result.astype({c.name: c.pandas_dtype for c in schema.COLUMNS})


# ---------------------------------------------------------------------------------------------
# Sources and files


def load_source(source: str, rows: int, seed: int, snapshot: str, root: Path) -> pd.DataFrame:
    """`data.source` from params.yaml: "generator", or a CSV path (relative to the repo root)."""
    if source == "generator":
        return normalise(generate(rows=rows, seed=seed, snapshot=snapshot))
    path = (root / source) if not Path(source).is_absolute() else Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"data source {path} not found: data.source in params.yaml is either "
            f'"generator" or the path of a CSV in the Telco layout'
        )
    return normalise(pd.read_csv(path, dtype=str, keep_default_na=False))


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, engine="pyarrow", compression="snappy", index=False)


def read_parquet(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: build it with `dvc repro prepare` (or `make pipeline`)"
        )
    return normalise(pd.read_parquet(path, engine="pyarrow"))


def features(df: pd.DataFrame) -> pd.DataFrame:
    return df[list(schema.FEATURE_NAMES)].copy()


def labels(df: pd.DataFrame) -> np.ndarray:
    return df[schema.LABEL_COLUMN].to_numpy(dtype=np.int64)
