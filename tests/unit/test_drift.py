"""PSI: per feature (quantile bins from the reference; categories from the schema) and the table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churn import data, drift
from churn.errors import UsageError
from churn.settings import DriftParams

T = DriftParams(psi_warn=0.1, psi_alert=0.25, bins=10)


def test_psi_is_zero_for_equal_shares_and_matches_the_formula() -> None:
    assert drift.psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    want = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert drift.psi(np.array([0.5, 0.5]), np.array([0.7, 0.3])) == pytest.approx(want)
    # An empty bin is floored, so a value never seen before gives a large but finite PSI.
    assert 0.25 < drift.psi(np.array([1.0, 0.0]), np.array([0.5, 0.5])) < 10


def test_numeric_bins_are_reference_quantiles_and_missing_values_get_their_own() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    same = numeric = drift.numeric_drift("x", ref, rng.normal(0, 1, 5000), T)
    assert same.level == "ok" and same.psi < 0.02
    assert numeric.reference_share == pytest.approx([0.1] * 10, abs=1e-3)
    shifted = drift.numeric_drift("x", ref, rng.normal(1, 1, 5000), T)
    assert shifted.level == "alert" and shifted.current.startswith("mean 1.0")
    with_missing = np.where(rng.random(5000) < 0.2, np.nan, ref)
    d = drift.numeric_drift("x", ref, with_missing, T)
    assert d.bins[-1] == "missing" and d.current_share[-1] == pytest.approx(0.2, abs=0.02)
    assert d.level in ("warn", "alert")


def test_categories_come_from_the_schema_and_unknown_values_are_counted() -> None:
    cats = ["DSL", "Fiber optic", "No"]
    ref = pd.Series(["DSL"] * 50 + ["Fiber optic"] * 30 + ["No"] * 20)
    cur = pd.Series(["DSL"] * 20 + ["Fiber optic"] * 60 + ["No"] * 20)
    d = drift.categorical_drift("InternetService", ref, cur, cats, T)
    assert d.bins == cats and d.level == "alert"
    # The category whose share moved most (the first, on a tie).
    assert (d.reference, d.current) == ("DSL 50.0%", "DSL 20.0%")
    odd = drift.categorical_drift("InternetService", ref, cur.replace("No", "Satellite"), cats, T)
    assert odd.bins == [*cats, "other"]


def test_a_month_later_is_stable_and_years_later_alerts() -> None:
    ref = data.normalise(data.generate(rows=3000, seed=1, snapshot="2026-07"))
    near = drift.build_report(
        ref, data.normalise(data.generate(rows=3000, seed=1, snapshot="2026-08")), T, "a", "b"
    )
    far = drift.build_report(
        ref, data.normalise(data.generate(rows=3000, seed=1, snapshot="2028-07")), T, "a", "c"
    )
    assert near.level == "ok" and near.prediction is None
    assert far.level == "alert"
    assert max(far.features, key=lambda d: d.psi).name == "MonthlyCharges"
    lines = drift.format_table(far)
    assert lines[0] == "reference: a  ->  current: c"
    assert lines[2].startswith("MonthlyCharges      numeric ")
    assert lines[-1].startswith("DRIFT ALERT: ")
    assert lines[-1].endswith("prediction drift skipped (no champion)")
    assert far.to_json()["level"] == "alert"


def test_samples_are_months_or_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = drift.load_sample("2026-09", 200, 3)
    assert len(df) == 200
    path = tmp_path / "x.parquet"
    data.write_parquet(df, path)
    pd.testing.assert_frame_equal(drift.load_sample(str(path), 0, 0), df)
    with pytest.raises(UsageError, match="neither a month"):
        drift.load_sample("customers.json", 10, 1)
    with pytest.raises(UsageError, match="snapshot must be a month"):
        drift.load_sample("2026-13", 10, 1)
