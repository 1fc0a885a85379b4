"""`make bench-peers`' arithmetic and reporting (no timing here: numbers belong to the bench):
medians over rounds, ours / best peer among the peers that qualify, the table with a peer that
could not be installed, and the install step's one-line reason."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import orjson
import pytest

from bench.peers import run as peers
from bench.peers.servers import PEERS, install, v2_answer, v2_body


def _round(rps: float, p99: float, start: float = 10.0, rss: float = 500.0) -> dict[str, Any]:
    row = {"req_per_s": rps, "p50_ms": p99 / 2, "p99_ms": p99, "errors": 0}
    return {
        "start_to_ready_s": start,
        "peak_rss_mb": rss,
        "scenarios": {sc.key: dict(row) for sc in peers.SCENARIOS},
    }


def _server(title: str, rounds: list[dict[str, Any]], status: str = "ok", reason: str = ""):  # type: ignore[no-untyped-def]
    return {
        "title": title,
        "status": status,
        "reason": reason,
        "batching": "",
        "summary": peers.summarise(rounds),
        "rounds": rounds,
    }


def test_summarise_takes_medians_over_rounds_and_sums_errors() -> None:
    rounds = [_round(100, 10, start=5, rss=400), _round(300, 30, start=9), _round(200, 90)]
    rounds[1]["scenarios"]["single_c16"]["errors"] = 2
    rounds[2]["scenarios"]["single_c16"]["errors"] = 1
    summary = peers.summarise(rounds)
    assert summary["scenarios"]["single_c16"] == {
        "req_per_s": 200,
        "p50_ms": 15,
        "p99_ms": 30,
        "errors": 3,
    }
    assert (summary["start_to_ready_s"], summary["peak_rss_mb"]) == (9, 500)
    assert peers.summarise([]) == {}
    # A run that answered nothing (wrk's latency 0) has no p99, rather than the best one.
    silent = _round(0, 0)
    silent["scenarios"]["single_c64"]["requests"] = 0
    assert peers.summarise([silent])["scenarios"]["single_c64"]["p99_ms"] is None


def test_ratios_are_against_the_best_qualifying_peer_per_figure() -> None:
    servers = {
        "ours": _server("ours", [_round(1000, 4, start=6, rss=400)]),
        # fastest req/s, slow p99
        "litserve": _server("LitServe", [_round(500, 40, start=12, rss=800)]),
        # slower, but the lowest p99 and the quickest start
        "mlserver": _server("MLServer", [_round(250, 8, start=8, rss=600)]),
        # would win everything, but answered other probabilities: left out
        "bentoml": _server(
            "BentoML", [_round(9000, 1, start=1, rss=10)], peers.DIFFERS, "max |difference| 0.2"
        ),
        "mlflow": _server("mlflow serve", [], peers.NOT_INSTALLED, "uv sync exited with 1: boom"),
    }
    ratios = peers.best_peer_ratios(servers)
    assert ratios["single_c16"] == {
        "req_per_s": 2.0,
        "req_per_s_peer": "litserve",
        "p99_ms": 0.5,
        "p99_ms_peer": "mlserver",
    }
    assert ratios["start_to_ready_s"] == {
        "start_to_ready_s": 0.75,
        "start_to_ready_s_peer": "mlserver",
    }
    assert ratios["peak_rss_mb"] == {"peak_rss_mb": 0.667, "peak_rss_mb_peer": "mlserver"}
    # No qualifying peer: no ratio at all, rather than a ratio against a wrong answer.
    alone = {"ours": servers["ours"], "bentoml": servers["bentoml"]}
    assert peers.best_peer_ratios(alone) == {}


def test_table_reports_a_peer_that_could_not_be_installed() -> None:
    servers = {
        "ours": _server("ours", [_round(1000, 4, start=6, rss=400)]),
        "mlserver": _server("MLServer", [_round(250, 8, start=8, rss=600)]),
        "bentoml": _server(
            "BentoML", [], peers.NOT_INSTALLED, "uv sync exited with 1: no matching distribution"
        ),
    }
    text = peers.table({"servers": servers})
    lines = text.splitlines()
    assert lines[0] == "| scenario | ours | MLServer | BentoML | ours / best peer |"
    row = next(line for line in lines if line.startswith("| 1 row @16 conns"))
    cells = "| 1,000 (4.0) | 250 (8.0) | - | 4.00× req/s, 0.50× p99 |"
    assert row == "| 1 row @16 conns, req/s (p99 ms) " + cells
    assert "| start → ready s / peak RSS MB | 6.0 / 400 | 8.0 / 600 | - | 0.75× / 0.67× |" in lines
    assert "| status | - | ok | not installed |  |" in lines
    assert "- BentoML: not installed: uv sync exited with 1: no matching distribution" in lines
    json.dumps({"servers": servers})  # what bench/results/peers.json holds is plain JSON


def test_table_marks_a_peer_whose_predictions_differ() -> None:
    servers = {
        "ours": _server("ours", [_round(1000, 4)]),
        "litserve": _server("LitServe", [_round(5000, 1)], peers.DIFFERS, "max |difference| 0.1"),
    }
    text = peers.table({"servers": servers})
    assert "- LitServe: predictions differ: max |difference| 0.1 (left out of the ratios)" in text
    row = next(line for line in text.splitlines() if line.startswith("| 1 row @1 conn"))
    assert row.endswith("| 5,000 (1.0) | - |")  # measured, shown, not a ratio


def test_install_reports_why_in_one_line() -> None:
    calls: list[list[str]] = []

    def failing(argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        stderr = "Resolved 80 packages\nerror: Distribution `mlserver==1.7.1` can't be installed\n"
        return subprocess.CompletedProcess(argv, 2, "", stderr)

    def ok(argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, "", "")

    peer = PEERS[1]
    reason = install(peer, failing)
    assert (
        reason == "uv sync exited with 2: error: Distribution `mlserver==1.7.1` can't be installed"
    )
    assert calls[0][-5:] == ["sync", "--frozen", "--quiet", "--project", str(peer.directory)]
    assert install(peer, ok) == ""


def test_parity_tolerance() -> None:
    assert peers.max_difference([0.1, 0.2], [0.1, 0.2 + 1e-12]) <= peers.TOLERANCE
    assert peers.max_difference([0.1, 0.2], [0.1, 0.2 + 1e-6]) > peers.TOLERANCE
    assert peers.max_difference([0.1], [0.1, 0.2]) == float("inf")


def test_v2_body_carries_the_rows_as_typed_columns() -> None:
    rows = [
        {"gender": "Male", "tenure": 3, "TotalCharges": None, "SeniorCitizen": 0},
        {"gender": "Female", "tenure": 70, "TotalCharges": 12.5, "SeniorCitizen": 1},
    ]
    from churn import schema

    full = [{name: row.get(name, "No") for name in schema.FEATURE_NAMES} for row in rows]
    inputs = {i["name"]: i for i in orjson.loads(v2_body(full))["inputs"]}
    assert list(inputs) == list(schema.FEATURE_NAMES)
    assert inputs["TotalCharges"] == {
        "name": "TotalCharges", "shape": [2], "datatype": "FP64", "data": [None, 12.5],
    }  # fmt: skip
    assert inputs["gender"]["datatype"] == "BYTES" and inputs["tenure"]["datatype"] == "INT64"
    assert v2_answer({"outputs": [{"data": [0.25, 0.5]}]}) == [0.25, 0.5]


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        peers.main(["--help"])
    assert exc.value.code == 0
    assert "MLServer" in capsys.readouterr().out
