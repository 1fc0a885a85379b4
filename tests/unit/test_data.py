"""The data layer: a reproducible, realistic generator; strict normalisation; file I/O."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churn import data, schema
from churn.schema import Kind

BASE = "2026-07"
INTERNET_ADDONS = [c.name for c in schema.COLUMNS if c.categories == schema.INTERNET_DEPENDENT]


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """The default data set, raw: 20,000 rows, seed 42, the base month."""
    return data.generate(rows=20_000, seed=42, snapshot=BASE)


@pytest.fixture(scope="module")
def typed(raw: pd.DataFrame) -> pd.DataFrame:
    return data.normalise(raw)


@pytest.fixture
def small() -> pd.DataFrame:
    """A small raw frame as a CSV reads it: every cell a string."""
    return data.generate(rows=20, seed=1).astype(str)


def churn_rate(df: pd.DataFrame, mask: pd.Series | np.ndarray) -> float:
    return float(df.loc[np.asarray(mask), schema.LABEL_COLUMN].mean())


# --------------------------------------------------------------------------------------------
# Reproducibility


def test_same_seed_and_snapshot_give_the_same_frame() -> None:
    pd.testing.assert_frame_equal(data.generate(2_000, 7), data.generate(2_000, 7))
    later = "2026-12"
    pd.testing.assert_frame_equal(data.generate(2_000, 7, later), data.generate(2_000, 7, later))


def test_parquet_bytes_are_identical_across_writes(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "customers.parquet", tmp_path / "b" / "customers.parquet"
    data.write_parquet(data.normalise(data.generate(3_000, 7)), first)
    data.write_parquet(data.normalise(data.generate(3_000, 7)), second)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["customers.parquet"]


def test_different_seed_gives_different_data() -> None:
    a, b = data.generate(2_000, 7), data.generate(2_000, 8)
    assert not a.equals(b)
    assert set(a[schema.ID_COLUMN]).isdisjoint(b[schema.ID_COLUMN])


def test_parquet_round_trip_gives_back_the_normalised_frame(
    typed: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "customers.parquet"
    data.write_parquet(typed, path)
    pd.testing.assert_frame_equal(data.read_parquet(path), typed)


# --------------------------------------------------------------------------------------------
# The raw layout


def test_raw_frame_has_the_telco_layout(raw: pd.DataFrame) -> None:
    assert tuple(raw.columns) == schema.COLUMN_NAMES
    ids = raw[schema.ID_COLUMN]
    assert ids.str.fullmatch(r"\d{4}-[A-Z]{5}").all()
    assert ids.is_unique
    for col in schema.COLUMNS:
        if col.kind in (Kind.CATEGORY, Kind.LABEL):
            assert set(raw[col.name]) <= set(col.categories), col.name
    assert raw["SeniorCitizen"].dtype == np.int64
    assert set(raw["SeniorCitizen"]) == {0, 1}
    assert raw["tenure"].dtype == np.int64
    assert raw["tenure"].between(0, 72).all()
    assert raw["tenure"].max() == 72
    monthly = raw["MonthlyCharges"]
    assert monthly.dtype == np.float64
    assert np.allclose(monthly, monthly.round(2))
    assert 15 <= monthly.min() < 25
    assert 100 < monthly.max() <= 125


def test_total_charges_is_text_blank_exactly_for_new_customers(raw: pd.DataFrame) -> None:
    total = raw["TotalCharges"]
    assert all(isinstance(v, str) for v in total)
    new = raw["tenure"] == 0
    assert ((total == " ") == new).all()
    assert 0.002 <= new.mean() <= 0.01
    # Printed like the real file: no trailing zeros ("1889.5", "20"), never "1889.50".
    printed = total[~new]
    assert printed.str.fullmatch(r"\d+(\.\d?[1-9])?").all()
    numbers = printed.astype(float)
    product = raw.loc[~new, "tenure"] * raw.loc[~new, "MonthlyCharges"]
    ratio = numbers / product
    assert ratio.between(0.8, 1.2).all()
    assert abs(ratio.median() - 1.0) < 0.01
    one_month = raw.loc[~new, "tenure"] == 1
    assert np.allclose(numbers[one_month], raw.loc[~new, "MonthlyCharges"][one_month])


def test_services_are_consistent(raw: pd.DataFrame) -> None:
    no_phone = raw["PhoneService"] == "No"
    assert ((raw["MultipleLines"] == schema.PHONE_DEPENDENT[2]) == no_phone).all()
    offline = raw["InternetService"] == "No"
    for name in INTERNET_ADDONS:
        assert ((raw[name] == schema.INTERNET_DEPENDENT[2]) == offline).all(), name
    # Everyone has at least one service.
    assert not (no_phone & offline).any()
    # The price follows the services: fiber costs more than DSL, DSL more than phone only.
    by_service = raw.groupby("InternetService")["MonthlyCharges"].mean()
    assert by_service["Fiber optic"] > by_service["DSL"] > by_service["No"]


def test_churn_rate_is_like_the_real_file(typed: pd.DataFrame) -> None:
    assert 0.23 <= typed[schema.LABEL_COLUMN].mean() <= 0.29


def test_churn_follows_the_known_drivers(typed: pd.DataFrame) -> None:
    df = typed
    assert churn_rate(df, df["Contract"] == "Month-to-month") > 2 * churn_rate(
        df, df["Contract"] == "Two year"
    )
    assert churn_rate(df, df["InternetService"] == "Fiber optic") > churn_rate(
        df, df["InternetService"] == "DSL"
    )
    echeck = df["PaymentMethod"] == "Electronic check"
    assert churn_rate(df, echeck) > churn_rate(df, ~echeck)
    assert churn_rate(df, df["tenure"].between(1, 12)) > churn_rate(df, df["tenure"] > 48)
    assert churn_rate(df, df["SeniorCitizen"] == 1) > churn_rate(df, df["SeniorCitizen"] == 0)
    assert churn_rate(df, df["TechSupport"] == "No") > churn_rate(df, df["TechSupport"] == "Yes")
    assert churn_rate(df, df["OnlineSecurity"] == "No") > churn_rate(
        df, df["OnlineSecurity"] == "Yes"
    )
    assert churn_rate(df, df["MonthlyCharges"] > 90) > churn_rate(df, df["MonthlyCharges"] < 30)


def logistic_regression() -> Pipeline:
    """One-hot categoricals, imputed and scaled numerics: the plainest sensible model."""
    categories = [list(schema.BY_NAME[c].categories) for c in schema.CATEGORICAL_FEATURES]
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    return Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        (
                            "categorical",
                            OneHotEncoder(categories=categories),
                            list(schema.CATEGORICAL_FEATURES),
                        ),
                        ("numeric", numeric, list(schema.NUMERIC_FEATURES)),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    )


@pytest.fixture(scope="module")
def fitted(typed: pd.DataFrame) -> tuple[Pipeline, float]:
    """A logistic regression fitted on 80% of the base month, and its held-out AUC."""
    train, test = train_test_split(
        typed, test_size=0.2, random_state=42, stratify=typed[schema.LABEL_COLUMN]
    )
    model = logistic_regression().fit(data.features(train), data.labels(train))
    auc = roc_auc_score(data.labels(test), model.predict_proba(data.features(test))[:, 1])
    return model, float(auc)


def test_learnable_but_not_trivial(fitted: tuple[Pipeline, float]) -> None:
    _, auc = fitted
    assert 0.80 <= auc <= 0.88


# --------------------------------------------------------------------------------------------
# Snapshots


def test_later_snapshots_drift(typed: pd.DataFrame) -> None:
    later = data.normalise(data.generate(rows=20_000, seed=42, snapshot="2026-12"))

    def share(df: pd.DataFrame, column: str, value: str) -> float:
        return float((df[column] == value).mean())

    assert (
        share(later, "InternetService", "Fiber optic")
        > share(typed, "InternetService", "Fiber optic") + 0.04
    )
    assert (
        share(later, "PaymentMethod", "Electronic check")
        > share(typed, "PaymentMethod", "Electronic check") + 0.02
    )
    assert later["MonthlyCharges"].mean() > typed["MonthlyCharges"].mean() + 3
    assert later[schema.LABEL_COLUMN].mean() > typed[schema.LABEL_COLUMN].mean() + 0.02


def test_a_model_from_the_base_month_degrades_later(fitted: tuple[Pipeline, float]) -> None:
    model, base_auc = fitted
    later = data.normalise(data.generate(rows=20_000, seed=42, snapshot="2026-10"))
    auc = roc_auc_score(data.labels(later), model.predict_proba(data.features(later))[:, 1])
    assert auc < base_auc - 0.02
    assert auc > 0.7  # drifted, not noise


@pytest.mark.parametrize("snapshot", ["2026-13", "2026-7", "26-07", "July 2026", "2026-07 ", ""])
def test_snapshot_must_be_a_month(snapshot: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"YYYY-MM (e.g. 2026-07), got {snapshot!r}")):
        data.generate(rows=10, seed=1, snapshot=snapshot)


def test_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rows must be at least 1, got 0"):
        data.generate(rows=0)


# --------------------------------------------------------------------------------------------
# normalise


def test_normalise_types_every_column(raw: pd.DataFrame, typed: pd.DataFrame) -> None:
    assert tuple(typed.columns) == schema.COLUMN_NAMES
    assert {c: str(t) for c, t in typed.dtypes.items()} == {
        c.name: c.pandas_dtype for c in schema.COLUMNS
    }
    assert (typed[schema.LABEL_COLUMN] == (raw[schema.LABEL_COLUMN] == "Yes")).all()
    assert (typed["TotalCharges"].isna() == (raw["tenure"] == 0)).all()
    known = typed["TotalCharges"].notna()
    assert np.allclose(
        typed.loc[known, "TotalCharges"], raw.loc[known, "TotalCharges"].astype(float)
    )
    assert all(type(v) is str for v in typed["Contract"])


def test_normalise_accepts_text_any_column_order_and_padding(small: pd.DataFrame) -> None:
    padded = small.copy()
    padded["Contract"] = "  " + padded["Contract"] + " "
    shuffled = padded[list(reversed(padded.columns))]
    shuffled.index = pd.RangeIndex(100, 100 + len(shuffled))
    pd.testing.assert_frame_equal(data.normalise(shuffled), data.normalise(small))


def test_normalise_is_idempotent(typed: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(data.normalise(typed), typed)


Change = Callable[[pd.DataFrame], pd.DataFrame]


def set_cells(*cells: tuple[int, str, str]) -> Change:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for row, column, value in cells:
            df.loc[row, column] = value
        return df

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            set_cells((3, "Contract", "Monthly"), (9, "Contract", "weekly")),
            "bad data in 1 column: Contract: unknown values 'Monthly' (row 3), 'weekly' (row 9)",
            id="unknown-category",
        ),
        pytest.param(
            set_cells((0, "tenure", "-4"), (5, "tenure", "80")),
            "bad data in 1 column: tenure: out of range 0..72: -4 (row 0), 80 (row 5)",
            id="tenure-out-of-range",
        ),
        pytest.param(
            set_cells((2, "TotalCharges", "n/a")),
            "bad data in 1 column: TotalCharges: not a number: 'n/a' (row 2)",
            id="total-charges-not-a-number",
        ),
        pytest.param(
            set_cells((4, "MonthlyCharges", " ")),
            "bad data in 1 column: MonthlyCharges: missing values in row 4",
            id="blank-in-non-nullable",
        ),
        pytest.param(
            set_cells((1, "SeniorCitizen", "0.5")),
            "bad data in 1 column: SeniorCitizen: not a whole number: 0.5 (row 1)",
            id="flag-not-whole",
        ),
        pytest.param(
            lambda df: df.drop(columns=["gender"]),
            "bad data in 1 column: gender: missing column",
            id="missing-column",
        ),
        pytest.param(
            lambda df: df.assign(notes="x"),
            "bad data in 1 column: notes: unexpected column",
            id="extra-column",
        ),
        pytest.param(
            set_cells((1, "Churn", "Maybe"), (6, "Churn", "yes")),
            "bad data in 1 column: Churn: not Yes/No: 'Maybe' (row 1), 'yes' (row 6)",
            id="bad-label",
        ),
        pytest.param(
            lambda df: df.assign(PaymentMethod="Cash"),
            "bad data in 1 column: PaymentMethod: unknown values 'Cash' (row 0), 20 rows in all",
            id="same-bad-value-everywhere",
        ),
        pytest.param(
            set_cells(*((r, "InternetService", f"5G-{r}") for r in (2, 4, 6, 8, 10))),
            "bad data in 1 column: InternetService: unknown values "
            "'5G-2' (row 2), '5G-4' (row 4), '5G-6' (row 6), 5 rows in all",
            id="at-most-three-examples",
        ),
    ],
)
def test_normalise_names_what_is_wrong(small: pd.DataFrame, change: Change, message: str) -> None:
    with pytest.raises(data.DataValidationError) as caught:
        data.normalise(change(small))
    assert str(caught.value) == message


def test_normalise_reports_every_wrong_column_at_once(small: pd.DataFrame) -> None:
    duplicate = str(small.loc[2, "customerID"])
    bad = set_cells(
        (0, "tenure", "-4"),
        (3, "Contract", "Monthly"),
        (9, "Contract", "weekly"),
        (5, "Churn", ""),
        (7, "customerID", duplicate),
    )(small).drop(columns=["Dependents"])
    bad["region"] = "north"
    with pytest.raises(data.DataValidationError) as caught:
        data.normalise(bad)
    assert str(caught.value) == (
        "bad data in 6 columns: "
        f"customerID: duplicate values {duplicate!r} (rows 2, 7); "
        "Dependents: missing column; "
        "tenure: out of range 0..72: -4 (row 0); "
        "Contract: unknown values 'Monthly' (row 3), 'weekly' (row 9); "
        "Churn: missing values in row 5; "
        "region: unexpected column"
    )
    assert list(caught.value.problems) == [
        "customerID",
        "Dependents",
        "tenure",
        "Contract",
        "Churn",
        "region",
    ]
    assert isinstance(caught.value, ValueError)


def test_normalise_rejects_a_label_other_than_0_or_1_in_a_typed_frame(typed: pd.DataFrame) -> None:
    bad = typed.head(10).copy()
    bad.loc[3, schema.LABEL_COLUMN] = 2
    with pytest.raises(data.DataValidationError, match=re.escape("Churn: not 0/1: 2 (row 3)")):
        data.normalise(bad)


# --------------------------------------------------------------------------------------------
# Sources and files


def test_load_source_reads_a_csv_in_the_raw_layout(tmp_path: Path) -> None:
    raw = data.generate(rows=300, seed=11)
    assert (raw["TotalCharges"] == " ").any()
    (tmp_path / "in").mkdir()
    raw.to_csv(tmp_path / "in" / "telco.csv", index=False)
    assert ", ," in (tmp_path / "in" / "telco.csv").read_text()  # the real file's blank cell

    loaded = data.load_source("in/telco.csv", rows=5, seed=0, snapshot=BASE, root=tmp_path)

    pd.testing.assert_frame_equal(loaded, data.normalise(raw))
    assert loaded["TotalCharges"].isna().sum() == (raw["tenure"] == 0).sum()
    absolute = str(tmp_path / "in" / "telco.csv")
    pd.testing.assert_frame_equal(
        data.load_source(absolute, rows=5, seed=0, snapshot=BASE, root=Path("/nowhere")), loaded
    )


def test_load_source_generator(tmp_path: Path) -> None:
    loaded = data.load_source("generator", rows=500, seed=3, snapshot="2026-09", root=tmp_path)
    pd.testing.assert_frame_equal(loaded, data.normalise(data.generate(500, 3, "2026-09")))


def test_load_source_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        data.load_source("data/telco.csv", rows=5, seed=0, snapshot=BASE, root=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "data" / "telco.csv") in message
    assert 'data.source in params.yaml is either "generator" or the path' in message


def test_read_parquet_says_how_to_build_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"customers\.parquet not found: .*dvc repro"):
        data.read_parquet(tmp_path / "customers.parquet")


def test_features_and_labels(typed: pd.DataFrame) -> None:
    x, y = data.features(typed), data.labels(typed)
    assert tuple(x.columns) == schema.FEATURE_NAMES
    assert y.dtype == np.int64
    assert (y == typed[schema.LABEL_COLUMN].to_numpy()).all()
    x.loc[0, "tenure"] = 999
    assert typed.loc[0, "tenure"] != 999
