"""The prediction log's files, the outcomes' checks and join, and the live figures (pure)."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from churn import live_eval, outcomes, predlog, schema
from churn.data import features, generate, normalise

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def scored(ids: list[str], ts: list[datetime], version: int, role: str, p: list[float]):
    rows = features(normalise(generate(rows=len(ids), seed=3)))
    meta = pd.DataFrame(
        {
            "ts": pd.to_datetime(ts, utc=True),
            "request_id": [f"r{i}" for i in range(len(ids))],
            schema.ID_COLUMN: ids,
            "version": version,
            "role": role,
            "p_churn": p,
            "decision": [x >= 0.5 for x in p],
        }
    )
    return pd.concat([meta, rows.reset_index(drop=True)], axis=1)


def labels(ids: list[str], churned: list[bool], at: list[datetime]) -> pd.DataFrame:
    return pd.DataFrame(
        {schema.ID_COLUMN: ids, "churned": churned, "observed_at": pd.to_datetime(at, utc=True)}
    )


# ---- the log's files -------------------------------------------------------------------------


def test_rows_land_in_one_file_per_day_and_read_back_by_time(tmp_path: Path) -> None:
    loc = predlog.Location.of(str(tmp_path))
    day2 = T0 + timedelta(days=1)
    written = predlog.append(loc, scored(["a", "b", "c"], [T0, T0, day2], 1, "champion", [0.1] * 3))
    assert [Path(p).parent.name for p in written] == ["day=2026-11-02", "day=2026-11-03"]
    assert predlog.days(loc) == [date(2026, 11, 2), date(2026, 11, 3)]
    back = predlog.read(loc, T0, T0 + timedelta(hours=1))
    assert list(back[schema.ID_COLUMN]) == ["a", "b"]
    assert list(back.columns) == list(predlog.LOG_COLUMNS)


def test_a_half_written_file_is_never_read(tmp_path: Path) -> None:
    loc = predlog.Location.of(str(tmp_path))
    predlog.append(loc, scored(["a"], [T0], 1, "champion", [0.2]))
    # What a flush cut by kill -9 leaves: its hidden partial name, half the bytes.
    (tmp_path / "day=2026-11-02" / ".part-x.parquet.partial").write_bytes(b"PAR1\x00")
    assert list(predlog.read(loc, T0, T0 + timedelta(days=1))[schema.ID_COLUMN]) == ["a"]


def test_a_finished_flush_leaves_only_its_file(tmp_path: Path) -> None:
    [path] = predlog.append(predlog.Location.of(str(tmp_path)), scored(["a"], [T0], 1, "x", [0.2]))
    assert [p.name for p in (tmp_path / "day=2026-11-02").iterdir()] == [Path(path).name]


def test_prune_keeps_the_configured_number_of_days(tmp_path: Path) -> None:
    loc = predlog.Location.of(str(tmp_path))
    for d in range(5):
        predlog.append(loc, scored(["a"], [T0 + timedelta(days=d)], 1, "champion", [0.2]))
    removed = predlog.prune(loc, keep_days=2, today=date(2026, 11, 6))
    assert removed == [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)]
    assert predlog.days(loc) == [date(2026, 11, 5), date(2026, 11, 6)]


def _leftover(folder: Path, name: str, age: timedelta) -> Path:
    """A file as a writer killed between write and rename leaves it, last written `age` ago."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"PAR1\x00")
    stamp = (datetime.now(UTC) - age).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_stale_partial_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    loc = predlog.Location.of(str(tmp_path))
    [finished] = predlog.append(loc, scored(["a"], [T0], 1, "champion", [0.2]))
    day, old = tmp_path / "day=2026-11-02", timedelta(hours=2)
    os.utime(finished, (0, 0))  # a finished file, however old, is data
    stale = [
        _leftover(day, ".part-20261102T090000000000Z-0a1b2c3d.parquet.partial", old),
        _leftover(tmp_path / "outcomes", ".part-20261201T000000000000Z-00ff.parquet.partial", old),
    ]
    kept = [
        _leftover(day, ".part-20261102T091500000000Z-11111111.parquet.partial", timedelta(0)),
        _leftover(day, ".other.parquet.partial", old),  # not a name write_frame makes
        _leftover(day, "part-x.parquet.partial", old),
        _leftover(tmp_path / "elsewhere", ".part-y.parquet.partial", old),  # not a log folder
    ]
    removed = predlog.remove_stale_partials(loc)
    assert sorted(removed) == sorted(str(p) for p in stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept) and Path(finished).exists()
    assert list(predlog.read(loc, T0, T0 + timedelta(days=1))[schema.ID_COLUMN]) == ["a"]


def test_a_starting_writer_removes_stale_partials_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stale = _leftover(tmp_path / "day=2026-11-02", ".part-1.parquet.partial", timedelta(days=1))
    fresh = _leftover(tmp_path / "day=2026-11-02", ".part-2.parquet.partial", timedelta(0))
    writer = predlog.Writer(str(tmp_path)).start()
    writer.close()
    assert writer.stats.stale_partials_removed == 1
    assert not stale.exists() and fresh.exists()
    assert (
        "removed 1 partial file(s) left by a writer killed mid-flush (last written more than "
        f"1:00:00 ago): {stale}"
    ) in caplog.text


def test_live_eval_reads_no_partial_file_of_the_log_or_the_outcomes(tmp_path: Path) -> None:
    loc = predlog.Location.of(str(tmp_path))
    ids, others = [f"c{i}" for i in range(40)], [f"x{i}" for i in range(40)]
    p = list(np.linspace(0.05, 0.95, 40))
    predlog.append(loc, scored(ids, [T0] * 40, 1, "champion", p))
    month_on = [T0 + timedelta(days=30)] * 80
    halves = [i % 2 == 0 for i in range(80)]
    predlog.write_frame(loc, predlog.OUTCOMES_DIR, labels(ids + others, halves, month_on))
    # What writers killed before their rename leave, whole files under partial names: more
    # customers' predictions, and later outcomes saying every customer churned.
    partial = ".part-20261102T100000000000Z-0badf00d.parquet.partial"
    scored(others, [T0] * 40, 1, "champion", p).to_parquet(tmp_path / "day=2026-11-02" / partial)
    later = labels(ids, [True] * 40, [T0 + timedelta(days=31)] * 40)
    later.to_parquet(tmp_path / predlog.OUTCOMES_DIR / partial)
    assert len(predlog.read_outcomes(loc)) == 80
    report = live_eval.from_log(
        str(tmp_path), T0 - timedelta(days=1), T0 + timedelta(days=1), timedelta(days=90),
        need=live_eval.Evidence(min_outcomes=10, min_churners=5), resamples=20,
    )  # fmt: skip
    [group] = report.groups
    assert (report.joined_rows, group.outcomes, group.churners) == (40, 40, 20)


def test_an_empty_period_is_a_usage_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(live_eval.EmptyPeriodError) as exc:
        live_eval.from_log(str(tmp_path), T0, T0 + timedelta(days=1), timedelta(days=90))
    assert exc.value.exit_code == 2
    assert str(exc.value) == (
        f"the prediction log {tmp_path} has no rows between --since and --until: is the service "
        "writing it (CHURN_PREDICTION_LOG)?"
    )


# ---- outcomes --------------------------------------------------------------------------------


def test_a_labels_file_with_bad_rows_is_refused_whole_naming_rows_and_reasons(
    tmp_path: Path,
) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "customerID,churned,observed_at\n"
        "a,yes,2026-12-01\n"
        ",no,2026-12-01\n"
        "c,maybe,2026-12-01\n"
        "d,1,last tuesday\n"
    )
    loc = predlog.Location.of(str(tmp_path / "log"))
    with pytest.raises(outcomes.OutcomeFileError) as err:
        outcomes.ingest(path, loc)
    assert str(err.value) == (
        f"--labels {path}: 3 bad value(s), nothing ingested: row 3: customerID is empty; "
        "row 4: churned 'maybe' is not yes/no, true/false or 1/0; "
        "row 5: observed_at 'last tuesday' is not an ISO time"
    )
    assert predlog.read_outcomes(loc).empty


def test_a_labels_file_without_a_column_says_which(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("customerID,churned\na,yes\n")
    with pytest.raises(outcomes.OutcomeFileError, match=r"missing column\(s\) observed_at"):
        outcomes.read_labels(path)


def test_labels_are_read_as_bools_and_utc_times(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "customerID,churned,observed_at\na,Yes,2026-12-01\nb,0,2026-12-01T10:00+01:00\n"
    )
    got = outcomes.read_labels(path)
    assert list(got["churned"]) == [True, False]
    assert got["observed_at"][1] == pd.Timestamp("2026-12-01T09:00", tz="UTC")


def test_the_join_takes_the_prediction_in_force_when_the_outcome_was_observed() -> None:
    log = pd.concat(
        [
            scored(
                ["a", "a", "a"],
                [T0, T0 + timedelta(days=5), T0 + timedelta(days=20)],
                1,
                "champion",
                [0.1, 0.6, 0.9],
            ),
            scored(["b"], [T0 - timedelta(days=90)], 2, "challenger", [0.7]),  # too old
            scored(["a"], [T0 + timedelta(days=5)], 3, "shadow", [0.4]),
        ],
        ignore_index=True,
    )
    got = outcomes.join(
        log,
        labels(["a", "b"], [True, False], [T0 + timedelta(days=10)] * 2),
        window=timedelta(days=60),
    )
    by_role = {row.role: row for row in got.itertuples()}
    assert set(by_role) == {"champion", "shadow"}  # b's prediction is older than the window
    assert by_role["champion"].p_churn == 0.6  # not the later 0.9, not the older 0.1
    assert by_role["shadow"].version == 3 and by_role["champion"].label == 1


@pytest.mark.parametrize(("log_unit", "outcome_unit"), [("ns", "us"), ("us", "ns"), ("s", "ms")])
def test_the_join_takes_times_of_any_unit(log_unit: str, outcome_unit: str) -> None:
    """A log or a labels file written elsewhere (another pandas, a Parquet file in ns)."""
    log = scored(["a", "b"], [T0, T0], 1, "champion", [0.3, 0.8])
    log["ts"] = log["ts"].dt.as_unit(log_unit)
    seen = labels(["a", "b"], [False, True], [T0 + timedelta(days=1)] * 2)
    seen["observed_at"] = seen["observed_at"].dt.as_unit(outcome_unit)
    got = outcomes.join(log, seen, window=timedelta(days=60))
    assert list(got["p_churn"]) == [0.3, 0.8] and list(got["label"]) == [0, 1]


# ---- the figures -----------------------------------------------------------------------------


def test_top_decile_capture_and_reliability() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 2, dtype=float)
    p = np.array([0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2] * 2)
    assert live_eval.top_capture(y, p) == 0.5  # top 2 of 20 rows: both 0.9s, 2 of 4 churners
    curve = live_eval.reliability(y, p, bins=10)
    assert [n for _, _, n in curve] == [14, 2, 2, 2]
    assert curve[-1] == pytest.approx((0.9, 1.0, 2))


def test_the_unpaired_interval_covers_zero_for_one_model_and_clears_it_for_a_better_one() -> None:
    rng = np.random.default_rng(1)  # seed 0 draws halves 2 standard errors apart, as 1 in 20 do
    truth = rng.uniform(0, 1, 4000)
    y = (rng.uniform(0, 1, 4000) < truth).astype(float)
    good, noisy = truth, np.clip(truth + rng.normal(0, 0.45, 4000), 0, 1)
    half = slice(0, 2000), slice(2000, 4000)
    same = live_eval.unpaired_bootstrap(
        "auc", (y[half[0]], good[half[0]]), (y[half[1]], good[half[1]]), 300
    )
    assert same[1] < 0 < same[2] and 0.03 < same[2] - same[1] < 0.07  # ~2 x 1.96 x 0.013
    better = live_eval.unpaired_bootstrap(
        "auc", (y[half[0]], noisy[half[0]]), (y[half[1]], good[half[1]]), 300
    )
    assert better[1] > 0 and better[0] == pytest.approx(
        roc_auc_score(y[half[1]], good[half[1]]) - roc_auc_score(y[half[0]], noisy[half[0]])
    )


def joined_frame(n: int, churn_rate: float, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, 2 * n)
    y = (rng.uniform(0, 1, 2 * n) < p * churn_rate * 2).astype(int)
    return pd.DataFrame(
        {
            "version": [1] * n + [2] * n,
            "role": ["champion"] * n + ["challenger"] * n,
            "p_churn": p,
            "label": y,
        }
    )


def test_evaluate_reports_each_group_with_sklearn_s_numbers() -> None:
    joined = joined_frame(400, 0.3)
    report = live_eval.evaluate(joined, "2026-11-01", "2026-12-01", resamples=200)
    assert report.enough and report.comparison is not None
    for g in report.groups:
        rows = joined[joined["version"] == g.version]
        assert g.auc == pytest.approx(roc_auc_score(rows["label"], rows["p_churn"]))
        assert g.log_loss == pytest.approx(log_loss(rows["label"], rows["p_churn"]))
    assert report.comparison.diff == pytest.approx(report.groups[1].auc - report.groups[0].auc)
    json.dumps(report.to_json(), allow_nan=False)


def test_too_few_outcomes_says_how_many_more_each_side_needs() -> None:
    report = live_eval.evaluate(
        joined_frame(50, 0.3), "a", "b", need=live_eval.Evidence(min_outcomes=80, min_churners=5)
    )
    assert not report.enough and report.comparison is None
    assert report.shortfall["champion"].startswith("30 more outcomes (has 50 outcomes")
    assert "NOT ENOUGH EVIDENCE: @challenger needs 30 more outcomes" in "\n".join(
        live_eval.format_table(report)
    )


# ---- the writer ------------------------------------------------------------------------------


def request(n: int, version: int = 1, ts: datetime = T0, p: float = 0.7) -> predlog.Scored:
    rows = list(features(normalise(generate(rows=n, seed=4))).itertuples(index=False))
    return predlog.Scored(
        ts, f"req-{version}", [f"c{i}" for i in range(n)], version, "champion", [p] * n, 0.5, rows
    )


def test_many_requests_make_one_frame_row_for_row() -> None:
    batch = [request(3), request(1, version=2, ts=T0 + timedelta(seconds=1), p=0.2), request(2)]
    got = predlog.batch_frame(batch)
    assert list(got.columns) == list(predlog.LOG_COLUMNS)
    assert list(got["request_id"]) == ["req-1"] * 3 + ["req-2"] + ["req-1"] * 2
    assert list(got["version"]) == [1, 1, 1, 2, 1, 1] and list(got["role"]) == ["champion"] * 6
    assert list(got["ts"]) == [T0] * 3 + [T0 + timedelta(seconds=1)] + [T0] * 2
    assert list(got["decision"]) == [True, True, True, False, True, True]
    assert list(got[schema.ID_COLUMN]) == ["c0", "c1", "c2", "c0", "c0", "c1"]
    want = pd.concat(
        [features(normalise(generate(rows=n, seed=4))) for n in (3, 1, 2)], ignore_index=True
    )
    pd.testing.assert_frame_equal(got[list(schema.FEATURE_NAMES)], want, check_dtype=False)


def test_the_writer_flushes_everything_offered_on_close(tmp_path: Path) -> None:
    writer = predlog.Writer(str(tmp_path), flush_seconds=60).start()
    assert writer.offer(request(3)) and writer.offer(request(2, version=2))
    writer.close()
    back = predlog.read(predlog.Location.of(str(tmp_path)), T0, T0 + timedelta(seconds=1))
    assert sorted(back["version"]) == [1, 1, 1, 2, 2] and back["decision"].all()
    assert writer.stats == predlog.WriterStats(written_rows=5)


def test_a_full_queue_drops_and_counts_never_blocks(tmp_path: Path) -> None:
    writer = predlog.Writer(str(tmp_path), max_pending_rows=4)  # not started: nothing drains
    assert writer.offer(request(3))
    assert not writer.offer(request(2))  # 3 + 2 > 4: refused at once
    assert writer.stats.dropped_rows == 2


def test_a_failing_flush_is_counted_and_the_writer_keeps_going(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the log's folder should be")
    writer = predlog.Writer(str(blocked), flush_rows=1).start()
    writer.offer(request(2))
    writer.offer(request(1))
    writer.close()
    assert writer.stats.failed_flushes == 2 and writer.stats.dropped_rows == 3
    assert writer.stats.written_rows == 0 and not writer._thread.is_alive()
