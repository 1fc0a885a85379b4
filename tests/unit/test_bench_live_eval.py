"""`make bench-live-eval` (bench/live_eval.py) runs end to end on a tiny log: the service's Parquet
layout, the outcomes ingested as `churn outcomes` does, the evaluation timed, the JSON written.
No timing asserted: the figure belongs to the bench (a million rows, under a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench import live_eval as bench
from churn import predlog


@pytest.mark.timeout(120)
def test_the_bench_builds_a_real_log_times_the_evaluation_and_writes_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work, output = tmp_path / "work", tmp_path / "live_eval.json"
    argv = ["--rows", "3000", "--resamples", "20", "--work-dir", str(work), "--output", str(output)]
    assert bench.main(argv) == 0
    result = json.loads(output.read_text())
    assert result["log"]["rows"] == 3000 and result["joined_rows"] == 3000
    assert set(result["groups"]) == {"v1 champion", "v2 challenger"}
    assert sum(result["groups"].values()) == 3000 and result["enough_evidence"]
    assert result["target"]["met"] is None  # not a million rows: no verdict
    printed = capsys.readouterr().out
    assert "read + join + figures + bootstrap (live_eval.from_log)" in printed
    assert "n/a (not 1,000,000 rows)" in printed
    # The files are the log's own: day folders the reader finds, the writer's columns.
    root = work / "log-3000-seed-42"
    assert len(predlog.days(predlog.Location.of(str(root)))) == 30  # November, by day
    day_file = next(root.glob("day=*/part-*.parquet"))
    assert tuple(pq.read_schema(day_file).names) == predlog.LOG_COLUMNS
    assert len(list((root / predlog.OUTCOMES_DIR).glob("part-*.parquet"))) == 1

    assert bench.main(argv) == 0  # the second run reuses the log
    assert "reusing the 3,000-row log" in capsys.readouterr().err


def test_help_and_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--help"])
    assert exc.value.code == 0 and "under a minute" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        bench.main(["--rows", "10"])
    assert exc.value.code == 2
    assert "--rows must be >= 1000" in capsys.readouterr().err
