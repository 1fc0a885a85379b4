"""Traffic profiles (what the service keeps instead of requests) and drift computed from them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from churn import data, drift, profile
from churn.settings import DriftParams

T = DriftParams(psi_warn=0.1, psi_alert=0.25, bins=10)


@pytest.fixture(scope="module")
def months() -> dict[str, data.pd.DataFrame]:
    return {
        m: data.normalise(data.generate(rows=8_000, snapshot=m)) for m in ("2026-07", "2026-12")
    }


def test_profile_size_does_not_grow_with_rows(months: dict[str, data.pd.DataFrame]) -> None:
    features = data.features(months["2026-07"])
    small = profile.from_frame(features.head(10), np.full(10, 0.3))
    big = profile.from_frame(features, np.full(len(features), 0.3))
    assert big.rows == 8_000 and small.rows == 10
    size = len(json.dumps(small.to_json()))
    assert len(json.dumps(big.to_json())) < size * 1.2  # counts get longer, never more of them
    assert size < 100_000


def test_profile_round_trips_and_adds_up(months: dict[str, data.pd.DataFrame]) -> None:
    features = data.features(months["2026-07"])
    p = profile.from_frame(features.head(100), np.linspace(0, 1, 100))
    p.add(features.iloc[100:300], np.full(200, 0.5))
    again = profile.Profile.from_json(json.loads(json.dumps(p.to_json())))
    assert again.rows == 300 and again.predictions == 300
    for name, counts in p.counts.items():
        np.testing.assert_array_equal(again.counts[name], counts)
        assert counts.sum() == 300, name
    # Categories are counted by name; a value outside the schema lands in "other".
    contract = dict(
        zip(profile.GRIDS["Contract"].bin_labels(), again.counts["Contract"], strict=True)
    )
    expected = features.head(300)["Contract"].value_counts().to_dict()
    assert {k: v for k, v in contract.items() if v} == expected
    odd = features.head(2).copy()
    odd["Contract"] = ["Weekly", "One year"]
    p2 = profile.from_frame(odd)
    assert p2.counts["Contract"][-1] == 1


def test_columns_count_as_the_frame_does(months: dict[str, data.pd.DataFrame]) -> None:
    """The service counts its validated columns (tuples) without building a frame: the same
    counts as from the frame, odd values included (unknown category, None, NaN, a number)."""
    features = data.features(months["2026-12"]).head(3_000).copy()
    features["Contract"] = features["Contract"].astype(object)
    features.loc[features.index[:4], "Contract"] = ["Weekly", None, float("nan"), 7]
    features.loc[features.index[:2], "SeniorCitizen"] = [2, -1]
    columns = {
        name: tuple(None if v is not v else v for v in features[name].tolist())
        if name == "TotalCharges"
        else tuple(features[name].tolist())
        for name in profile.GRIDS
    }
    from_frame, from_columns = profile.Profile(), profile.Profile()
    from_frame.add(features, np.full(3_000, 0.25))
    from_columns.add(columns, np.full(3_000, 0.25))
    assert from_columns.rows == from_frame.rows == 3_000
    for name, counts in from_frame.counts.items():
        np.testing.assert_array_equal(from_columns.counts[name], counts, err_msg=name)
    assert from_columns.counts["Contract"][-1] == 4
    assert from_columns.counts["SeniorCitizen"][-1] == 2
    assert from_columns.counts["TotalCharges"][-1] == int(features["TotalCharges"].isna().sum())


def test_missing_totalcharges_are_counted_apart() -> None:
    df = data.features(data.normalise(data.generate(rows=2_000)))
    assert df["TotalCharges"].isna().any()
    p = profile.from_frame(df)
    assert p.counts["TotalCharges"][-1] == int(df["TotalCharges"].isna().sum())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format=99), "not a churn traffic profile"),
        (lambda d: d["features"].pop("tenure"), "no counts for 'tenure'"),
        (lambda d: d["features"]["tenure"].update(edges=[0, 1]), "another grid"),
        (lambda d: d["features"]["gender"].update(counts=[1, -1, 0]), "malformed"),
        (lambda d: d.update(rows=-3), "'rows' must be a count"),
    ],
)
def test_from_json_names_what_is_wrong(change, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = profile.Profile().to_json()
    change(doc)
    with pytest.raises(ValueError, match=message):
        profile.Profile.from_json(doc)


def test_drift_from_profiles_matches_drift_from_rows(months: dict[str, data.pd.DataFrame]) -> None:
    """The grid is fine enough that PSI on profiles tracks PSI on the raw rows."""
    ref, cur = months["2026-07"], months["2026-12"]
    raw = drift.build_report(ref, cur, T, "ref", "cur")
    counted = drift.profile_report(
        profile.from_frame(data.features(ref)), profile.from_frame(data.features(cur)), T, "r", "c"
    )
    for a, b in zip(raw.features, counted.features, strict=True):
        assert a.name == b.name
        assert b.psi == pytest.approx(a.psi, rel=0.15, abs=0.003), a.name
        assert b.level == a.level or abs(a.psi - T.psi_warn) < 0.02, a.name
    by_name = {d.name: d for d in counted.features}
    # Integers bin like quantile edges on rows (tenure's first group is "< 2", as on rows).
    assert by_name["tenure"].bins[0] == {d.name: d for d in raw.features}["tenure"].bins[0]
    assert counted.prediction is None  # no predictions were counted


def test_prediction_drift_from_profiles() -> None:
    rng = np.random.default_rng(0)
    df = data.features(data.normalise(data.generate(rows=3_000)))
    same = drift.profile_report(
        profile.from_frame(df, rng.beta(2, 5, 3_000)),
        profile.from_frame(df, rng.beta(2, 5, 3_000)),
        T,
        "r",
        "c",
    )
    moved = drift.profile_report(
        profile.from_frame(df, rng.beta(2, 5, 3_000)),
        profile.from_frame(df, rng.beta(5, 2, 3_000)),
        T,
        "r",
        "c",
    )
    assert same.prediction is not None and moved.prediction is not None
    assert same.prediction.level == "ok" and moved.prediction.level == "alert"
    assert same.level == "ok" and moved.level == "alert"
