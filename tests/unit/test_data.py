"""The generator (determinism, structure, drift) and ingestion (messages, idempotence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn import data, schema
from churn.data import DataValidationError, generate, normalise


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return generate(rows=20_000, seed=42)


def test_same_seed_and_snapshot_give_identical_frames_and_bytes(tmp_path: Path) -> None:
    a, b = generate(2_000, 1, "2026-07"), generate(2_000, 1, "2026-07")
    pd.testing.assert_frame_equal(a, b)
    data.write_parquet(normalise(a), tmp_path / "a.parquet")
    data.write_parquet(normalise(b), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert not generate(2_000, 2, "2026-07").equals(a)
    assert not generate(2_000, 1, "2026-08").equals(a)


def test_raw_layout_matches_the_telco_file(raw: pd.DataFrame) -> None:
    assert tuple(raw.columns) == schema.COLUMN_NAMES
    for col in schema.COLUMNS:
        if col.kind is schema.Kind.CATEGORY or col.kind is schema.Kind.LABEL:
            assert set(raw[col.name]) <= set(col.categories), col.name
    assert raw["customerID"].str.fullmatch(r"\d{4}-[A-Z]{5}").all()
    assert raw["customerID"].is_unique
    assert raw["tenure"].between(0, 72).all()
    assert set(raw["SeniorCitizen"]) == {0, 1}
    assert raw["TotalCharges"].map(type).eq(str).all()


def test_services_are_consistent(raw: pd.DataFrame) -> None:
    no_phone = raw["PhoneService"] == "No"
    assert (raw.loc[no_phone, "MultipleLines"] == "No phone service").all()
    assert (raw.loc[~no_phone, "MultipleLines"] != "No phone service").all()
    no_net = raw["InternetService"] == "No"
    for name in ("OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport"):
        assert (raw.loc[no_net, name] == "No internet service").all()
        assert (raw.loc[~no_net, name] != "No internet service").all()


def test_total_charges_blank_exactly_for_new_customers(raw: pd.DataFrame) -> None:
    blank = raw["TotalCharges"] == " "
    assert blank.any()
    assert (blank == (raw["tenure"] == 0)).all()
    typed = normalise(raw)
    ratio = typed["TotalCharges"] / (typed["tenure"] * typed["MonthlyCharges"])
    assert ratio[~blank].between(0.8, 1.2).mean() > 0.99


def test_churn_rate_and_structure(raw: pd.DataFrame) -> None:
    typed = normalise(raw)
    assert 0.23 <= typed["Churn"].mean() <= 0.29
    rate = typed.groupby("Contract")["Churn"].mean()
    assert rate["Month-to-month"] > 2 * rate["Two year"]
    by_net = typed.groupby("InternetService")["Churn"].mean()
    assert by_net["Fiber optic"] > by_net["DSL"]
    short = typed["tenure"] < 12
    assert typed.loc[short, "Churn"].mean() > typed.loc[~short, "Churn"].mean()


def test_logistic_regression_learns_it_but_not_trivially(raw: pd.DataFrame) -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from churn.model import build

    typed = normalise(raw)
    train, test = train_test_split(typed, test_size=0.2, random_state=42, stratify=typed["Churn"])
    model = build("logistic_regression", {"max_iter": 1000}, 42)
    model.fit(data.features(train), data.labels(train))
    auc = roc_auc_score(data.labels(test), model.predict(data.features(test)))
    assert 0.80 <= auc <= 0.88


def test_later_snapshots_drift(raw: pd.DataFrame) -> None:
    later = normalise(generate(20_000, 42, "2026-12"))
    base = normalise(raw)
    assert (later["InternetService"] == "Fiber optic").mean() > (
        base["InternetService"] == "Fiber optic"
    ).mean() + 0.03
    assert later["MonthlyCharges"].mean() > base["MonthlyCharges"].mean() + 2


@pytest.mark.parametrize("snapshot", ["2026-13", "July", "2026-7", ""])
def test_bad_snapshot(snapshot: str) -> None:
    with pytest.raises(ValueError, match="snapshot must look like 2026-07"):
        generate(10, 1, snapshot)


def test_normalise_types_and_is_idempotent(raw: pd.DataFrame) -> None:
    typed = normalise(raw)
    assert {c: str(t) for c, t in typed.dtypes.items()} == {
        c.name: c.pandas_dtype for c in schema.COLUMNS
    }
    assert typed.loc[raw["TotalCharges"] == " ", "TotalCharges"].isna().all()
    assert set(typed["Churn"]) == {0, 1}
    pd.testing.assert_frame_equal(normalise(typed), typed)


def _good() -> pd.DataFrame:
    return generate(12, 3)


def test_one_message_names_every_wrong_column() -> None:
    df = _good()
    df.loc[3, "Contract"] = "Monthly"
    df.loc[9, "Contract"] = "weekly"
    df.loc[0, "tenure"] = -4
    with pytest.raises(DataValidationError) as exc:
        normalise(df)
    assert str(exc.value) == (
        "bad data in 2 columns: tenure: out of range 0..72: -4 (row 0); "
        "Contract: unknown values 'Monthly' (row 3), 'weekly' (row 9) "
        "(allowed: 'Month-to-month', 'One year', 'Two year')"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda df: df.drop(columns=["gender", "tenure"]),
            "bad data in 1 column: missing columns: gender, tenure",
        ),
        (
            lambda df: df.assign(favourite_colour="red"),
            "bad data in 1 column: unexpected columns: favourite_colour",
        ),
        (
            lambda df: df.assign(TotalCharges=["abc", *list(df["TotalCharges"][1:])]),
            "bad data in 1 column: TotalCharges: not a number: 'abc' (row 0)",
        ),
        (
            lambda df: df.assign(Churn=["maybe", *list(df["Churn"][1:])]),
            "bad data in 1 column: Churn: labels must be 'Yes' or 'No': 'maybe' (row 0)",
        ),
        (
            lambda df: df.assign(SeniorCitizen=[2, *list(df["SeniorCitizen"][1:])]),
            "bad data in 1 column: SeniorCitizen: out of range 0..1: 2 (row 0)",
        ),
        (
            lambda df: df.assign(customerID=["X"] * len(df)),
            "bad data in 1 column: customerID: duplicate ids 'X' (row 0), 'X' (row 1), "
            "'X' (row 2) and 9 more",
        ),
    ],
)
def test_bad_frames_are_rejected_with_exact_messages(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataValidationError) as exc:
        normalise(mutate(_good()))
    assert str(exc.value) == message


def test_load_source_reads_a_raw_csv_like_the_real_file(tmp_path: Path) -> None:
    df = _good()
    df.loc[0, ["tenure", "TotalCharges"]] = [0, " "]
    path = tmp_path / "telco.csv"
    df.to_csv(path, index=False)
    typed = data.load_source("telco.csv", 0, 0, "2026-07", tmp_path)
    assert np.isnan(typed.loc[0, "TotalCharges"])
    assert typed["Churn"].dtype == np.int64


def test_missing_source_and_missing_parquet_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='either "generator" or the path of a CSV'):
        data.load_source("nope.csv", 0, 0, "2026-07", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"dvc repro prepare"):
        data.read_parquet(tmp_path / "customers.parquet")
