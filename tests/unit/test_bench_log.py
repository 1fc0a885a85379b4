"""`make bench`'s prediction log on vs off (issue 24: "with the log on stays within 10% of off"):
the alternating rounds, their ratios, the rows the log wrote, the verdicts and the table lines.
No timing here: numbers belong to the bench."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import serve as bench


def test_rounds_alternate_which_side_goes_first() -> None:
    calls: list[str] = []

    def side(name: str) -> Any:
        def measure() -> float:
            calls.append(name)
            return float(len(calls))

        return measure

    a, b = bench.alternating(3, side("on"), side("off"))
    assert calls == ["on", "off", "off", "on", "on", "off"]
    assert (a, b) == ([1.0, 4.0, 5.0], [2.0, 3.0, 6.0])  # each side's own results, in order


def test_the_median_round_s_ratio_is_the_figure_judged() -> None:
    summary = bench.ratio_summary([90.0, 100.0, 50.0, 99.0], [100.0, 100.0, 100.0, 100.0])
    assert summary["ratios"] == [0.9, 1.0, 0.5, 0.99]
    assert summary["ratio_median"] == pytest.approx(0.945)  # one slow round does not decide
    assert summary["ratio_q1"] <= summary["ratio_median"] <= summary["ratio_q3"]
    assert bench.ratio_summary([3.0], [2.0])["ratio_q1"] == 1.5  # one round: its own quartiles


def load(rps: float, errors: int = 0, rows: int = 1) -> bench.Load:
    return bench.Load(int(rps * 2), errors, 2.0, 5.0, 9.0, rows)


def test_log_rounds_are_req_per_s_on_over_off_with_each_side_s_errors() -> None:
    row = bench.log_rounds([load(950), load(1000, errors=1)], [load(1000), load(1000)])
    assert row["on_req_per_s"] == [950.0, 1000.0] and row["off_req_per_s"] == [1000.0, 1000.0]
    assert row["errors"] == {"on": 1, "off": 0}
    assert (row["ratios"], row["ratio_median"]) == ([0.95, 1.0], 0.975)


METRICS = """\
# HELP churn_prediction_log_rows_total Rows of the prediction log (CHURN_PREDICTION_LOG)
# TYPE churn_prediction_log_rows_total counter
churn_prediction_log_rows_total{outcome="written"} 120000.0
churn_prediction_log_rows_total{outcome="dropped"} 12.0
# HELP churn_predictions_total Rows scored
# TYPE churn_predictions_total counter
churn_predictions_total{role="champion",version="1"} 100000.0
churn_predictions_total{role="challenger",version="2"} 30000.0
"""


def test_log_rows_are_read_from_the_service_s_metrics() -> None:
    assert bench.log_rows(METRICS) == {"scored": 130_000, "written": 120_000, "dropped": 12}
    assert bench.log_rows("") == {"scored": 0, "written": 0, "dropped": 0}


def result_with_log_cost(single: float, batch: float) -> dict[str, Any]:
    row = {"req_per_s": 1000.0, "rows_per_s": 1000.0, "p50_ms": 5.0, "p99_ms": 9.0, "errors": 0}
    soak = {**row, "duration_s": 60, "rss_start_mb": 300, "rss_end_mb": 303, "requests": 1}
    ours = {
        "start_to_ready_s": 6.0,
        "peak_rss_mb": 350.0,
        "scenarios": {sc.key: dict(row) for sc in bench.SCENARIOS},
        "soak": {**soak, "rss_growth_pct": 1.0},
    }
    cost = {
        "rounds": 2,
        "slice_s": 1.0,
        "scenarios": {
            key: bench.log_rounds([load(ratio * 100), load(ratio * 100)], [load(100), load(100)])
            for key, ratio in (("single_c16", single), ("batch1000_c1", batch))
        },
        "log_rows": {"scored": 1000, "written": 900, "dropped": 0},
    }
    result = {
        "ours": ours,
        "raw_pyfunc_ms": {"1": 1.0, "100": 2.0, "1000": 4.0},
        "client": {"name": "httpx", "version": "", "ceiling": {"c16_req_per_s": 9000.0}},
        "log_cost": cost,
    }
    return result | {"targets": bench.targets(result)}


def test_the_log_targets_are_met_within_ten_percent_and_printed() -> None:
    result = result_with_log_cost(single=0.95, batch=0.85)
    verdicts = {t["target"]: (t["measured"], t["met"]) for t in result["targets"]}
    assert verdicts["log on: 1 row, 16 conns"] == ("0.95x", True)
    assert verdicts["log on: 1,000 rows, 1 conn"] == ("0.85x", False)
    text = bench.table(result)
    assert (
        "prediction log on (CHURN_PREDICTION_LOG, a temporary folder) vs off, 2 alternating "
        "rounds of 1 s, req/s on / off:"
    ) in text
    assert (
        "  1 row, 16 conns      median 0.95x (quartiles 0.95x-0.95x; on 95.0, off 100.0 req/s"
    ) in text
    assert (
        "rows the server with the log scored (warm-up included) 1,000: the log wrote 900 and "
        "dropped 0 by the end (the rest queued)"
    ) in text
    assert "log on: 1,000 rows, 1 conn     >= 0.9x off (req/s)" in text
    json.dumps(result)


def test_without_a_log_run_there_is_no_log_target() -> None:
    result = result_with_log_cost(1.0, 1.0)
    del result["log_cost"]
    result["targets"] = bench.targets(result)
    assert not [t for t in bench.targets(result) if t["target"].startswith("log on")]
    assert "prediction log" not in bench.table(result)
