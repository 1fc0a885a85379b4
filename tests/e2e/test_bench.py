"""The benchmark's pieces (no timing asserted: numbers belong to `make bench`), and the parity of
the real service with micro-batching on: concurrent requests with different rows, each answer
compared with a direct pyfunc `predict` of its own rows."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench import serve as bench
from churn import data
from serve.example import request_rows

pytestmark = pytest.mark.e2e

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:1/predict
  1 threads and 16 connections
BENCH {"requests": 1200, "duration_us": 2000000, "socket_errors": 1, "status_errors": 2, \
"p50_us": 9500, "p99_us": 31000}
"""


def test_parse_wrk_counts_non_200_as_errors() -> None:
    load = bench.parse_wrk(WRK_OUTPUT, rows_per_request=100)
    assert (load.requests, load.errors) == (1198, 3)
    assert load.rps == pytest.approx(599.0)
    assert load.rows_per_s == pytest.approx(59_900.0)
    assert (load.p50_ms, load.p99_ms) == (9.5, 31.0)
    with pytest.raises(RuntimeError, match="no summary"):
        bench.parse_wrk("connection refused", 1)


def _side(rps: float, p50: float, p99: float) -> dict[str, Any]:
    row = {"req_per_s": rps, "rows_per_s": rps, "p50_ms": p50, "p99_ms": p99, "errors": 0}
    soak = {**row, "duration_s": 60, "rss_start_mb": 300, "rss_end_mb": 303, "requests": 1}
    return {
        "start_to_ready_s": 10.0,
        "peak_rss_mb": 350.0,
        "scenarios": {sc.key: dict(row) for sc in bench.SCENARIOS},
        "soak": {**soak, "rss_growth_pct": 1.0},
    }


def test_table_and_targets_have_every_scenario_and_verdict() -> None:
    result: dict[str, Any] = {
        "ours": _side(1000.0, 5.0, 10.0),
        "theirs": _side(100.0, 10.0, 100.0),
        "raw_pyfunc_ms": {"1": 5.0, "100": 5.5, "1000": 4.0},
        "client": {"name": "wrk", "version": "4.1", "ceiling": {"c16_req_per_s": 40000.0}},
    }
    result["targets"] = bench.targets(result)
    verdicts = {t["target"]: t["met"] for t in result["targets"]}
    assert verdicts == {
        "1 row, 16 conns: throughput": True,
        "1 row, 16 conns: p99": True,
        "1 row, 1 conn: p50": True,
        "start -> ready": True,
        "1 row, 16 conns: errors": True,
        "1,000-row batch: time": True,  # 5 ms against a raw 4 ms: 1.25x
        "RSS growth, 16 conns": True,
    }
    text = bench.table(result)
    # Paired rounds decide the batch target when present: the median round, not the raw median.
    result["ours"]["paired"] = {
        "rows": 1000, "rounds": 3, "slice_s": 1.0, "ours_p50_ms": [5.0, 9.0, 9.5],
        "raw_ms": [4.0, 4.0, 4.0], "ratios": [1.25, 2.25, 2.375], "ratio_median": 2.25,
        "ratio_q1": 1.25, "ratio_q3": 2.375,
    }  # fmt: skip
    paired = {t["target"]: t for t in bench.targets(result)}["1,000-row batch: time"]
    assert (paired["measured"], paired["met"]) == ("2.25x", False)
    assert "3 paired rounds of 1 s: median 2.25x" in bench.table(result)
    for sc in bench.SCENARIOS:
        assert sc.title in text
    assert text.count("ratio") >= len(bench.SCENARIOS)
    assert "targets:" in text and "NOT MET" not in text
    json.dumps(result)  # what is written to bench/results/ is plain JSON


def test_the_table_shows_one_against_two_workers() -> None:
    result: dict[str, Any] = {
        "ours": _side(1000.0, 5.0, 10.0),
        "raw_pyfunc_ms": {"1": 5.0, "100": 5.5, "1000": 4.0},
        "client": {"name": "wrk", "version": "4.1", "ceiling": {"c16_req_per_s": 40000.0}},
        "machine": {"cpus": 2},
        "workers": {
            "scenario": "single_c16",
            "1": {"req_per_s": 2400.0, "p50_ms": 6.0, "p99_ms": 16.0, "errors": 0,
                  "peak_rss_mb": 400.0},
            "2": {"req_per_s": 3600.0, "p50_ms": 4.0, "p99_ms": 12.0, "errors": 0,
                  "peak_rss_mb": 780.0},
            "speedup": 1.5,
        },
    }  # fmt: skip
    result["targets"] = bench.targets(result)
    assert (
        "1 row, 16 conns, WEB_CONCURRENCY=1 -> 2: 2,400.0 -> 3,600.0 req/s (1.50x; p99 16.00 -> "
        "12.00 ms, errors 0 / 0, peak RSS 400 -> 780 MB; 2 CPUs)"
    ) in bench.table(result)


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--help"])
    assert exc.value.code == 0
    assert "mlflow models serve" in capsys.readouterr().out


def test_micro_batched_answers_match_pyfunc_row_for_row(tmp_path: Path) -> None:
    """The bench's own champion builder and `make serve` command; 48 concurrent requests, each
    with different rows (1 to 3), so batches mix requests; every probability is compared."""
    import mlflow

    work = tmp_path / "work"
    version = bench.ensure_champion(work, rows=3_000, seed=7)
    df = data.read_parquet(work / "customers.parquet").reset_index(drop=True)
    # New customers (TotalCharges null) included.
    sample = df[df["TotalCharges"].isna()].head(4).index.tolist() + list(range(100))
    chunks = [sample[i : i + 1 + i % 3] for i in range(0, 96, 2)]
    mlflow.set_tracking_uri(bench.store_uri(work))
    mlflow.set_registry_uri(bench.store_uri(work))
    model = mlflow.pyfunc.load_model(f"models:/churn/{version}")
    expected = [np.asarray(model.predict(data.features(df.loc[c]))) for c in chunks]

    port = bench.free_port()
    server = bench.Server(
        "ours", bench.ours_command(port, 1), bench.server_env(work), "/ready", "/predict",
        port, tmp_path / "ours.log",
    )  # fmt: skip
    server.start(timeout=120)
    try:
        url = f"{server.base}/predict"
        with httpx.Client(timeout=30) as client:

            def post(chunk: list[int]) -> dict[str, Any]:
                body = {"instances": request_rows(df.loc[chunk])}
                resp = client.post(url, json=body)
                assert resp.status_code == 200, resp.text
                return dict(resp.json())

            with ThreadPoolExecutor(max_workers=16) as pool:
                answers = list(pool.map(post, chunks))
    finally:
        server.stop()
    for chunk, answer, want in zip(chunks, answers, expected, strict=True):
        got = np.array([p["churn_probability"] for p in answer["predictions"]])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        assert [p["customerID"] for p in answer["predictions"]] == list(df.loc[chunk, "customerID"])
        assert answer["model"]["version"] == version
