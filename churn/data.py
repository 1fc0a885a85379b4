"""The data layer: a seeded generator in the IBM Telco layout, and validated ingestion.

`generate` writes the raw layout exactly as the public CSV has it (TotalCharges a string, blank
for new customers; Churn "Yes"/"No"), so generated data and the real file take the same
`normalise` path and nothing downstream can tell which one it was given. `normalise` collects
every problem before raising, so a bad file is reported in one message, not one fix at a time.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from churn import schema
from churn.errors import ChurnError
from churn.schema import Column, Kind

BASE_SNAPSHOT = "2026-07"
_SNAPSHOT_RE = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
# The real file has 11 tenure-0 rows in 7,043 (0.16%); a little more keeps a few in small samples.
_NEW_CUSTOMER_SHARE = 0.005
_MAX_EXAMPLES = 3

# Categories come from the schema, unpacked so that a change there fails here loudly.
_YES, _NO = schema.YES_NO
_NO_PHONE = schema.PHONE_DEPENDENT[2]
_NO_INTERNET = schema.INTERNET_DEPENDENT[2]
_FEMALE, _MALE = schema.BY_NAME["gender"].categories
_DSL, _FIBER, _NO_NET = schema.BY_NAME["InternetService"].categories
_MONTHLY, _ONE_YEAR, _TWO_YEAR = schema.BY_NAME["Contract"].categories
_ECHECK, _MAILED, _BANK, _CARD = schema.BY_NAME["PaymentMethod"].categories
_SECURITY, _BACKUP, _PROTECTION, _SUPPORT, _TV, _MOVIES = (
    c.name for c in schema.COLUMNS if c.categories == schema.INTERNET_DEPENDENT
)


class DataValidationError(ChurnError, ValueError):
    """The frame does not fit the schema, or cannot be trained on. `problems` maps each wrong
    column to what is wrong. Scripts report it as one line and exit 1."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        n = len(self.problems)
        detail = "; ".join(f"{name}: {what}" for name, what in self.problems.items())
        super().__init__(f"bad data in {n} column{'' if n == 1 else 's'}: {detail}")

    def __reduce__(self) -> tuple[type[DataValidationError], tuple[dict[str, str]]]:
        # The message is derived, so rebuild from the problems (pickling, multiprocessing).
        return (type(self), (self.problems,))


class DataFileError(ChurnError, ValueError):
    """A data file that cannot be read at all (truncated, corrupt, not the format its name
    says). Scripts report it as one line and exit 1, as bad data."""


# ---------------------------------------------------------------------------------------------
# Generator


def _months_since_base(snapshot: str) -> int:
    match = _SNAPSHOT_RE.fullmatch(snapshot) if isinstance(snapshot, str) else None
    if match is None:
        raise ValueError(f"snapshot must be a month as YYYY-MM (e.g. 2026-07), got {snapshot!r}")
    base_year, base_month = (int(part) for part in BASE_SNAPSHOT.split("-"))
    return (int(match[1]) - base_year) * 12 + int(match[2]) - base_month


def _drift(months: int) -> float:
    # About one unit per month for the first few months, then saturating at 12, so a snapshot
    # years away is still a plausible population rather than all-fiber with 99% churn.
    return 12.0 * math.tanh(months / 12.0)


def _rng(seed: int, snapshot: str) -> np.random.Generator:
    # hashlib, not hash(): str hashes are salted per process and would break reproducibility.
    digest = hashlib.sha256(f"churn-mlops/{seed}/{snapshot}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest, "big")))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _choose(rng: np.random.Generator, options: tuple[str, ...], logits: np.ndarray) -> np.ndarray:
    """One draw per row from a softmax over `logits` (rows x options)."""
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(len(logits)) * cumulative[:, -1]
    index = np.minimum((u[:, None] > cumulative).sum(axis=1), len(options) - 1)
    return np.asarray(options, dtype=object)[index]


def _yes_no(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, _YES, _NO).astype(object)


def _customer_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unique ids shaped like the real ones: four digits, a dash, five capitals (7590-VHVEG)."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), dtype=object)
    # Sampling codes without replacement is what makes the ids unique.
    codes = rng.choice(10_000 * 26**5, size=n, replace=False)
    digits, rest = np.divmod(codes, 26**5)
    ids = np.array([f"{d:04d}-" for d in digits.tolist()], dtype=object)
    for power in (4, 3, 2, 1, 0):
        ids = ids + letters[(rest // 26**power) % 26]
    return ids


def _charges_text(values: np.ndarray) -> np.ndarray:
    # The real file prints totals without trailing zeros: "1889.5", "108.15", "20".
    return np.array([f"{v:.2f}".rstrip("0").rstrip(".") for v in values.tolist()], dtype=object)


@dataclass(frozen=True)
class _Draw:
    """The month's random stream, one value per customer per call. Every call consumes it, so
    the order of the calls below is part of the data: reordering them changes every file."""

    rng: np.random.Generator
    n: int

    def chance(self, p: np.ndarray | float) -> np.ndarray:
        return np.asarray(self.rng.random(self.n) < p)

    def normal(self, mean: float, sd: float) -> np.ndarray:
        return self.rng.normal(mean, sd, self.n)


@dataclass(frozen=True)
class _Customers:
    """Everything drawn about the customers except whether they left (boolean masks as such)."""

    male: np.ndarray
    senior: np.ndarray
    partner: np.ndarray
    dependents: np.ndarray
    tenure: np.ndarray
    contract: np.ndarray
    phone: np.ndarray
    internet: np.ndarray
    multiple: np.ndarray
    has: dict[str, np.ndarray]  # add-on name -> taken (False for customers without internet)
    paperless: np.ndarray
    payment: np.ndarray
    monthly: np.ndarray
    total_text: np.ndarray


def _household(draw: _Draw) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Male, senior, partner and dependents flags."""
    male = draw.chance(0.505)
    senior = draw.chance(0.162)
    partner = draw.chance(0.48)
    dependents = draw.chance(np.where(partner, 0.50, 0.12) * np.where(senior, 0.5, 1.0))
    return male, senior, partner, dependents


def _tenure(draw: _Draw) -> np.ndarray:
    # Tenure is U-shaped in the real file: many new customers and a pile-up at the 72 cap.
    rng, n = draw.rng, draw.n
    short_lived = draw.chance(0.33)
    short = 1 + np.floor(rng.exponential(5.0, n))
    long = 1 + np.floor(75.0 * rng.beta(1.25, 0.85, n))
    tenure = np.clip(np.where(short_lived, short, long), 1, 72).astype(np.int64)
    tenure[rng.choice(n, size=max(1, round(n * _NEW_CUSTOMER_SHARE)), replace=False)] = 0
    return tenure


def _contract(
    draw: _Draw,
    senior: np.ndarray,
    partner: np.ndarray,
    dependents: np.ndarray,
    tenure: np.ndarray,
) -> np.ndarray:
    return _choose(
        draw.rng,
        (_MONTHLY, _ONE_YEAR, _TWO_YEAR),
        np.column_stack(
            [
                1.3 + 0.5 * senior - 0.25 * partner - 0.3 * dependents,
                -0.6 + 0.035 * tenure,
                -2.0 + 0.062 * tenure,
            ]
        ),
    )


def _lines(
    draw: _Draw, t: float, senior: np.ndarray, tenure: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phone service, internet service and multiple lines."""
    n = draw.n
    phone = draw.chance(0.903)
    internet = _choose(
        draw.rng,
        (_DSL, _FIBER, _NO_NET),
        np.column_stack(
            [np.zeros(n), 0.6 + 0.5 * senior + 0.07 * t, -0.12 - 0.4 * senior - 0.03 * t]
        ),
    )
    # Every customer takes at least one service; in the real file phone-less ones all have DSL.
    internet[~phone] = _DSL
    fiber = internet == _FIBER
    multiple = np.where(
        phone, _yes_no(draw.chance(0.25 + 0.45 * tenure / 72 + 0.12 * fiber)), _NO_PHONE
    ).astype(object)
    return phone, internet, multiple


def _addons(
    draw: _Draw, tenure: np.ndarray, contract: np.ndarray, internet: np.ndarray
) -> dict[str, np.ndarray]:
    """Which add-ons each customer takes (never without internet)."""
    n = draw.n
    fiber, dsl, offline = internet == _FIBER, internet == _DSL, internet == _NO_NET
    # A shared engagement term makes add-ons cluster, as bundles do in the real data.
    engagement = 0.03 * (tenure - 32) + 0.5 * (contract == _TWO_YEAR) + draw.normal(0, 0.8)
    addon_logits = {
        _SECURITY: -0.55 + 0.45 * dsl - 0.3 * fiber,
        _BACKUP: np.full(n, -0.25),
        _PROTECTION: -0.25 + 0.1 * fiber,
        _SUPPORT: -0.55 + 0.45 * dsl - 0.3 * fiber,
        _TV: 0.6 * fiber - 0.7 * dsl,
        _MOVIES: 0.6 * fiber - 0.7 * dsl,
    }
    return {
        name: ~offline & draw.chance(_sigmoid(engagement + lg)) for name, lg in addon_logits.items()
    }


def _billing(
    draw: _Draw,
    t: float,
    senior: np.ndarray,
    internet: np.ndarray,
    contract: np.ndarray,
    tenure: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Paperless billing and the payment method."""
    fiber, offline = internet == _FIBER, internet == _NO_NET
    paperless = draw.chance(_sigmoid(0.35 + 0.5 * fiber - 1.0 * offline + 0.4 * senior))
    payment = _choose(
        draw.rng,
        (_ECHECK, _MAILED, _BANK, _CARD),
        np.column_stack(
            [
                -0.45 + 0.9 * (contract == _MONTHLY) + 0.5 * paperless + 0.05 * t,
                -0.6 + 1.0 * offline + 0.6 * ~paperless,
                -0.5 + 0.012 * tenure,
                -0.5 + 0.012 * tenure,
            ]
        ),
    )
    return paperless, payment


def _charges(
    draw: _Draw,
    t: float,
    tenure: np.ndarray,
    list_price: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """MonthlyCharges (float) and TotalCharges as the raw file's text."""
    monthly = list_price * (1.0 + 0.008 * t) + draw.normal(0.0, 1.5)
    # Whole nickels, like the real file's 29.85 and 56.95.
    monthly = np.round(np.round(np.maximum(monthly, 18.25) * 20.0) / 20.0, 2)
    # Past bills differed a little (promotions, price changes), so the total is only roughly
    # tenure x monthly; after one month it is exactly the one bill.
    total = np.where(tenure == 1, monthly, tenure * monthly * draw.normal(1.0, 0.04))
    total = np.round(np.round(np.maximum(total, monthly) * 20.0) / 20.0, 2)
    total_text = _charges_text(total)
    total_text[tenure == 0] = " "  # the real file's blank for customers with no bill yet
    return monthly, total_text


def _list_price(
    phone: np.ndarray, multiple: np.ndarray, internet: np.ndarray, has: dict[str, np.ndarray]
) -> np.ndarray:
    # The price list: the bill is the sum of the services taken (a rise in later months is
    # applied by _charges).
    return (
        20.0 * phone
        + 5.0 * (multiple == _YES)
        + 25.0 * (internet == _DSL)
        + 55.0 * (internet == _FIBER)
        + 5.0 * (has[_SECURITY] + has[_BACKUP] + has[_PROTECTION] + has[_SUPPORT])
        + 10.0 * (has[_TV].astype(np.int64) + has[_MOVIES])
    )


def _customers(draw: _Draw, t: float) -> _Customers:
    """Every customer attribute, drawn in the generator's fixed order."""
    male, senior, partner, dependents = _household(draw)
    tenure = _tenure(draw)
    contract = _contract(draw, senior, partner, dependents, tenure)
    phone, internet, multiple = _lines(draw, t, senior, tenure)
    has = _addons(draw, tenure, contract, internet)
    paperless, payment = _billing(draw, t, senior, internet, contract, tenure)
    list_price = _list_price(phone, multiple, internet, has)
    monthly, total_text = _charges(draw, t, tenure, list_price)
    return _Customers(
        male=male,
        senior=senior,
        partner=partner,
        dependents=dependents,
        tenure=tenure,
        contract=contract,
        phone=phone,
        internet=internet,
        multiple=multiple,
        has=has,
        paperless=paperless,
        payment=payment,
        monthly=monthly,
        total_text=total_text,
    )


def _churn_logit(draw: _Draw, t: float, c: _Customers) -> np.ndarray:
    fiber, offline = c.internet == _FIBER, c.internet == _NO_NET
    streams = c.has[_TV].astype(np.float64) + c.has[_MOVIES]
    return np.asarray(
        -0.32
        - 0.3 * t
        + np.select(
            [c.contract == _ONE_YEAR, c.contract == _TWO_YEAR],
            [-1.3 + 0.1 * t, -2.6 + 0.1 * t],
            0.0,
        )
        + (-0.6 + 0.05 * t) * np.log1p(c.tenure)
        + (1.0 + 0.04 * t) * fiber
        - 0.55 * offline
        + (0.6 - 0.12 * t) * (c.payment == _ECHECK)
        + 0.010 * (c.monthly - 65.0)
        + 0.45 * (~offline & ~c.has[_SECURITY])
        + (0.45 - 0.05 * t) * (~offline & ~c.has[_SUPPORT])
        + 0.2 * t * streams
        + 0.3 * c.senior
        + 0.25 * c.paperless
        - 0.1 * c.partner
        - 0.2 * c.dependents
        # What the data never shows (service outages, a rival's offer): caps the attainable AUC.
        + draw.normal(0.0, 0.8)
    )


def _churned(draw: _Draw, t: float, c: _Customers) -> np.ndarray:
    churn = draw.chance(_sigmoid(_churn_logit(draw, t, c)))
    churn ^= draw.chance(0.01)  # mislabelled rows, as any CRM export has
    churn[c.tenure == 0] = False  # customers who joined this month cannot have left yet
    return churn


def _raw_frame(ids: np.ndarray, c: _Customers, churn: np.ndarray) -> pd.DataFrame:
    """The customers in the raw Telco layout, columns in schema order."""
    offline = c.internet == _NO_NET
    addons = {
        name: np.where(offline, _NO_INTERNET, _yes_no(flags)).astype(object)
        for name, flags in c.has.items()
    }
    columns: dict[str, np.ndarray] = {
        schema.ID_COLUMN: ids,
        "gender": np.where(c.male, _MALE, _FEMALE).astype(object),
        "SeniorCitizen": c.senior.astype(np.int64),
        "Partner": _yes_no(c.partner),
        "Dependents": _yes_no(c.dependents),
        "tenure": c.tenure,
        "PhoneService": _yes_no(c.phone),
        "MultipleLines": c.multiple,
        "InternetService": c.internet,
        **addons,
        "Contract": c.contract,
        "PaperlessBilling": _yes_no(c.paperless),
        "PaymentMethod": c.payment,
        "MonthlyCharges": c.monthly.astype(np.float64),
        "TotalCharges": c.total_text,
        schema.LABEL_COLUMN: _yes_no(churn),
    }
    if set(columns) != set(schema.COLUMN_NAMES):
        raise RuntimeError(f"generator out of step with the schema: {sorted(columns)}")
    return pd.DataFrame({name: columns[name] for name in schema.COLUMN_NAMES})


def generate(rows: int = 20_000, seed: int = 42, snapshot: str = BASE_SNAPSHOT) -> pd.DataFrame:
    """Synthetic customers in the raw IBM Telco layout; same arguments, identical frame.

    The base month (2026-07) resembles the real file: ~26% churn, driven by month-to-month
    contracts, fiber optic, electronic check, short tenure, high charges, no tech support or
    online security, and age, plus an unobserved dissatisfaction and a little label noise so a
    linear model reaches an AUC in the low-to-mid 0.80s. Later months drift: more fiber and
    electronic-check customers, higher prices, and changed drivers (streaming customers start
    leaving; contracts, tenure and payment method matter less), so a model trained on one month
    degrades on the next ones. Earlier months drift the other way.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    t = _drift(_months_since_base(snapshot))
    draw = _Draw(_rng(seed, snapshot), rows)
    customers = _customers(draw, t)
    churn = _churned(draw, t, customers)
    return _raw_frame(_customer_ids(draw.rng, rows), customers, churn)


# ---------------------------------------------------------------------------------------------
# Validation and normalisation


def _show(value: object) -> str:
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return repr(value)


def _rows(positions: np.ndarray) -> str:
    shown = ", ".join(str(p) for p in positions[:_MAX_EXAMPLES])
    more = f", {len(positions)} rows in all" if len(positions) > _MAX_EXAMPLES else ""
    return f"row{'s' if len(positions) > 1 else ''} {shown}{more}"


def _examples(values: pd.Series, mask: np.ndarray) -> str:
    """Up to three distinct offending values, each with the first row it is on."""
    positions = np.flatnonzero(mask)
    bad = pd.Series(values.to_numpy()[positions], index=positions)
    first = bad[~bad.duplicated()].head(_MAX_EXAMPLES)
    shown = ", ".join(f"{_show(v)} (row {i})" for i, v in first.items())
    return shown + (f", {len(positions)} rows in all" if len(positions) > len(first) else "")


def _text(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Stripped strings (object dtype) and a mask of missing or blank cells."""
    text = raw.astype("string").str.strip()
    missing = np.asarray(text.isna() | (text == ""), dtype=bool)
    return text.astype(object), missing


def _numbers(raw: pd.Series) -> tuple[pd.Series, pd.Series, np.ndarray, np.ndarray]:
    """Floats, the cells as shown in messages, and masks of missing/blank and non-number cells."""
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.astype("float64")
        missing = np.asarray(values.isna(), dtype=bool)
        return values, values, missing, ~missing & ~np.isfinite(values.to_numpy())
    text, missing = _text(raw)
    parsed = pd.to_numeric(text.where(~missing), errors="coerce").astype("float64")
    return parsed, text, missing, ~missing & ~np.isfinite(parsed.to_numpy())


def _bounds(col: Column) -> str:
    if col.minimum is not None and col.maximum is not None:
        return f"out of range {col.minimum:g}..{col.maximum:g}"
    if col.minimum is not None:
        return f"below minimum {col.minimum:g}"
    return f"above maximum {col.maximum:g}"


def _normalise_column(col: Column, raw: pd.Series) -> tuple[pd.Series, list[str]]:
    """The column in its normalised dtype, and what is wrong with it (empty if nothing)."""
    if col.kind in (Kind.ID, Kind.CATEGORY):
        return _normalise_text(col, raw)
    if col.kind is Kind.LABEL:
        return _normalise_label(col, raw)
    return _normalise_number(col, raw)


def _missing(missing: np.ndarray) -> str:
    return f"missing values in {_rows(np.flatnonzero(missing))}"


def _normalise_text(col: Column, raw: pd.Series) -> tuple[pd.Series, list[str]]:
    """An id or category column: stripped strings; no blanks, unknown categories or repeated ids."""
    problems: list[str] = []
    text, missing = _text(raw)
    if missing.any():
        problems.append(_missing(missing))
    if col.kind is Kind.CATEGORY:
        unknown = ~missing & ~np.asarray(text.isin(col.categories), dtype=bool)
        if unknown.any():
            problems.append(f"unknown values {_examples(text, unknown)}")
    else:
        repeated = ~missing & np.asarray(text.duplicated(keep=False), dtype=bool)
        if repeated.any():
            problems.append(f"duplicate values {_duplicates(text, repeated)}")
    return text, problems


def _duplicates(text: pd.Series, repeated: np.ndarray) -> str:
    """Up to three repeated values, each with the rows it is on."""
    groups = pd.Series(np.flatnonzero(repeated)).groupby(text.to_numpy()[repeated], sort=False)
    return ", ".join(f"{v!r} ({_rows(r.to_numpy())})" for v, r in list(groups)[:_MAX_EXAMPLES])


def _normalise_label(col: Column, raw: pd.Series) -> tuple[pd.Series, list[str]]:
    """The label as int64 1/0. Raw files say Yes/No; an already-normalised frame holds 0/1."""
    problems: list[str] = []
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        numbers = raw.astype("float64")
        missing = np.asarray(numbers.isna(), dtype=bool)
        wrong = ~missing & ~np.asarray(numbers.isin([0.0, 1.0]), dtype=bool)
        label = numbers.fillna(0.0)
        what = "not 0/1"
    else:
        text, missing = _text(raw)
        wrong = ~missing & ~np.asarray(text.isin(col.categories), dtype=bool)
        label = text.isin([_YES]).astype("float64")
        numbers = text  # for the examples
        what = f"not {'/'.join(col.categories)}"
    if missing.any():
        problems.append(_missing(missing))
    if wrong.any():
        problems.append(f"{what}: {_examples(numbers, wrong)}")
    return label.where(~wrong, 0.0).astype("int64"), problems


def _normalise_number(col: Column, raw: pd.Series) -> tuple[pd.Series, list[str]]:
    """A flag, integer (int64) or float column, checked for numbers, whole numbers and bounds."""
    problems: list[str] = []
    values, as_given, missing, not_numbers = _numbers(raw)
    if missing.any() and not col.nullable:
        problems.append(_missing(missing))
    if not_numbers.any():
        problems.append(f"not a number: {_examples(as_given, not_numbers)}")
    ok = ~missing & ~not_numbers
    v = values.to_numpy()
    whole = col.kind in (Kind.FLAG, Kind.INTEGER)
    if whole:
        fractional = ok & (np.floor(np.where(ok, v, 0.0)) != np.where(ok, v, 0.0))
        if fractional.any():
            problems.append(f"not a whole number: {_examples(values, fractional)}")
        ok &= ~fractional
    low = -np.inf if col.minimum is None else col.minimum
    high = np.inf if col.maximum is None else col.maximum
    outside = ok & ((np.where(ok, v, low) < low) | (np.where(ok, v, high) > high))
    if outside.any():
        problems.append(f"{_bounds(col)}: {_examples(values, outside)}")
    if whole:
        return values.where(ok, 0.0).astype("int64"), problems
    return values.where(~missing & ~not_numbers), problems


def normalise(raw: pd.DataFrame) -> pd.DataFrame:
    """Validate a frame in the Telco layout and return it typed, as the rest of the code uses it.

    Columns come back in schema order with the schema's dtypes, on a fresh 0..n-1 index: strings
    stripped, TotalCharges float (blank -> NaN), Churn 1/0. Column order in `raw` does not matter.
    An already-normalised frame passes unchanged. Raises DataValidationError naming every wrong
    column (missing, unexpected, duplicated, or with bad values; rows counted from 0).
    """
    problems: dict[str, str] = {}
    out: dict[str, pd.Series] = {}
    frame = raw.reset_index(drop=True)
    counts = pd.Series(list(frame.columns), dtype=object).value_counts(sort=False)
    for col in schema.COLUMNS:
        if col.name not in counts:
            problems[col.name] = "missing column"
        elif counts[col.name] > 1:
            problems[col.name] = f"column appears {counts[col.name]} times"
        else:
            values, wrong = _normalise_column(col, frame[col.name])
            if wrong:
                problems[col.name] = " and ".join(wrong)
            out[col.name] = values.astype(np.dtype(col.pandas_dtype))
    for name in counts.index:
        if name not in schema.BY_NAME:
            problems[str(name)] = "unexpected column"
    if problems:
        raise DataValidationError(problems)
    return pd.DataFrame(out, columns=list(schema.COLUMN_NAMES))


# ---------------------------------------------------------------------------------------------
# Sources and files


def load_source(source: str, rows: int, seed: int, snapshot: str, root: Path) -> pd.DataFrame:
    """`data.source` from params.yaml: "generator", or a CSV in the Telco layout (path relative
    to `root` unless absolute). `rows`, `seed` and `snapshot` only apply to the generator."""
    if source == "generator":
        return normalise(generate(rows=rows, seed=seed, snapshot=snapshot))
    path = Path(source) if Path(source).is_absolute() else root / source
    if not path.is_file():
        raise FileNotFoundError(
            f"data source {path} not found: data.source in params.yaml is either "
            f'"generator" or the path (relative to {root}) of a CSV in the Telco layout'
        )
    # All columns as text, blanks kept as "": the raw file's " " TotalCharges and any
    # "NA"-like category must reach normalise as written, not as pandas' guess.
    # utf-8-sig: a CSV saved from a spreadsheet starts with a BOM that would rename customerID.
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ChurnError(f"data source {path} is empty: no header row, no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataFileError(
            f"data source {path} is not a readable CSV ({_reason(exc)}): fix or replace the file"
        ) from None
    return normalise(raw)


def _reason(exc: BaseException, drop: str = "") -> str:
    """The first line of a reader's error without `drop` (the path it repeats), short: it names
    the damage, not our code."""
    text = str(exc).strip().replace(drop, "") if drop else str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text if len(text) <= 160 else text[:160] + "…"


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Same frame, same bytes (DVC hashes the file), and never a half-written file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    df.to_parquet(partial, engine="pyarrow", compression="snappy", index=False)
    os.replace(partial, path)


def read_parquet(path: Path) -> pd.DataFrame:
    """The prepared data, normalised again so a stale or hand-edited file cannot slip through."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: build it with `dvc repro` (or `make pipeline`), which runs the "
            "prepare stage"
        )
    import pyarrow as pa

    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except (pa.ArrowException, OSError) as exc:
        # Truncated (a copy cut short, a full disk) or not parquet at all.
        reason = _reason(exc, drop=f"Could not open Parquet input source '{path}': ")
        raise DataFileError(
            f"{path} is not a readable parquet file ({reason}): rebuild it with "
            "`dvc repro` (or `make pipeline`), or pass a good file"
        ) from None
    return normalise(frame)


def check_trainable(df: pd.DataFrame) -> None:
    """What training needs beyond the schema: rows, and both classes in the label, at least two
    of each (the stratified split puts one in each part). Raises DataValidationError."""
    label = schema.LABEL_COLUMN
    if len(df) == 0:
        raise DataValidationError({label: "no rows, so nothing to train on"})
    counts = np.bincount(df[label].to_numpy(dtype=np.int64), minlength=2)  # [No, Yes]
    names = (_NO, _YES)
    if counts.min() == 0:
        only = names[int(counts.argmax())]
        raise DataValidationError(
            {
                label: f"only one class ({only!r} in all {len(df):,} rows); training needs "
                "customers who churned and customers who did not"
            }
        )
    if counts.min() < 2:
        rare = names[int(counts.argmin())]
        raise DataValidationError(
            {label: f"only 1 row is {rare!r}; the stratified split needs at least 2 of each class"}
        )


def features(df: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs: every column but the id and the label, in schema order."""
    return df[list(schema.FEATURE_NAMES)].copy()


def labels(df: pd.DataFrame) -> np.ndarray:
    """Churn as an int64 array of 1/0 (from a normalised frame)."""
    return df[schema.LABEL_COLUMN].to_numpy(dtype=np.int64)
