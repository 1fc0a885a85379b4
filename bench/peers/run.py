"""Serving speed against the servers a user would pick instead, on the same champion, in one run.

    make bench-peers                 # 3 rounds, 10 s per scenario (about 15 minutes)
    make bench-peers ARGS=--quick    # 2 rounds, 3 s per scenario (about 8 minutes)
    .venv/bin/python -m bench.peers --help

What it does, in order:
 1. builds (or reuses) the bench's champion, as `make bench` does (bench/.work/mlflow.db), and
    downloads its artifact for the peers that load a directory;
 2. installs each peer from its lock into bench/peers/<name>/.venv (servers.py: MLServer +
    mlserver-mlflow, BentoML, LitServe, `mlflow models serve`); a peer that cannot be installed
    is a row of the table saying why;
 3. rounds, in alternating order (ours first in the first round, last in the second...): each
    server alone is started (timed: process start -> 200 on its ready path), in the first round
    checked to answer the same probabilities as ours on the same rows (within 1e-9: a peer that
    differs is reported and left out of the ratios), warmed, driven through the scenarios of
    `make bench` (1 row at 1/16/64 connections, 1,000 rows at 1), its peak RSS read, stopped;
 4. prints one table of medians over the rounds with ours / best peer, and writes it as JSON.
Exit codes: 0 the run completed (whatever each peer did), 1 ours failed or the run could not
complete, 2 usage error.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import serve
from bench.peers.servers import PEERS, Peer, install, lay_out, peer_env
from churn.procs import free_port

WORK = serve.WORK / "peers"
RESULTS = serve.ROOT / "bench" / "results" / "peers.json"
SCENARIOS = tuple(
    sc
    for sc in serve.SCENARIOS
    if sc.key in ("single_c1", "single_c16", "single_c64", "batch1000_c1")
)
TOLERANCE = 1e-9
PARITY_SINGLES = 16  # one-row bodies compared, besides one 1,000-row body
# A row's status: "ok", or why its figures are missing or left out of the ratios
NOT_INSTALLED, NO_START, NO_ANSWER = "not installed", "failed to start", "failed to answer"
DIFFERS = "predictions differ"


@dataclass
class Contender:
    """Ours or a peer, as run: its server, its bodies and answer parser, one result per round."""

    name: str
    title: str
    bodies: dict[int, list[bytes]]
    answer: Callable[[Any], list[float]]
    server: serve.Server | None = None
    status: str = "ok"
    reason: str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    parity: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# Arithmetic (unit-tested): medians over rounds, ours / best peer, the table


def summarise(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds (errors summed)."""
    if not rounds:
        return {}
    scenarios: dict[str, dict[str, float]] = {}
    for key in rounds[0]["scenarios"]:
        runs = [r["scenarios"][key] for r in rounds if key in r["scenarios"]]
        # A run that answered nothing has no latency (wrk reports 0): not a fast one.
        timed = [x for x in runs if x.get("requests", 1) > 0]
        scenarios[key] = {
            "req_per_s": round(statistics.median(x["req_per_s"] for x in runs), 1),
            "p50_ms": _median([x["p50_ms"] for x in timed]),
            "p99_ms": _median([x["p99_ms"] for x in timed]),
            "errors": sum(int(x["errors"]) for x in runs),
        }
    return {
        "rounds": len(rounds),
        "start_to_ready_s": round(statistics.median(r["start_to_ready_s"] for r in rounds), 3),
        "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in rounds), 1),
        "scenarios": scenarios,
    }


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _ratio(ours: float | None, best: float | None) -> float | None:
    if ours is None or best is None or best == 0 or math.isnan(best) or math.isnan(ours):
        return None
    return round(ours / best, 3)


def best_peer_ratios(servers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Ours / the best peer per figure, among the peers whose status is "ok": the highest
    req/s, the lowest p99, start -> ready and peak RSS. {} when no peer qualifies."""
    ours = servers["ours"]["summary"]
    peers = {n: s["summary"] for n, s in servers.items() if n != "ours" and s["status"] == "ok"}
    if not peers or not ours:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for sc in SCENARIOS:
        rows = {n: p["scenarios"][sc.key] for n, p in peers.items() if sc.key in p["scenarios"]}
        if not rows or sc.key not in ours["scenarios"]:
            continue
        o = ours["scenarios"][sc.key]
        rps_peer = max(rows, key=lambda n: rows[n]["req_per_s"])
        timed = [n for n in rows if rows[n]["p99_ms"] is not None]
        p99_peer = min(timed, key=lambda n: rows[n]["p99_ms"]) if timed else None
        out[sc.key] = {
            "req_per_s": _ratio(o["req_per_s"], rows[rps_peer]["req_per_s"]),
            "req_per_s_peer": rps_peer,
            "p99_ms": _ratio(o["p99_ms"], rows[p99_peer]["p99_ms"] if p99_peer else None),
            "p99_ms_peer": p99_peer,
        }
    for figure in ("start_to_ready_s", "peak_rss_mb"):
        peer = min(peers, key=lambda n: peers[n][figure])
        out[figure] = {figure: _ratio(ours[figure], peers[peer][figure]), f"{figure}_peer": peer}
    return out


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _cell(server: dict[str, Any], key: str) -> str:
    row = (server.get("summary") or {}).get("scenarios", {}).get(key)
    if row is None:
        return "-"
    p99 = row["p99_ms"]
    shown = "-" if p99 is None else _num(p99, 1 if p99 < 100 else 0)
    return f"{_num(row['req_per_s'])} ({shown})"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


SCENARIO_TITLES = {
    "single_c1": "1 row @1 conn",
    "single_c16": "1 row @16 conns",
    "single_c64": "1 row @64 conns",
    "batch1000_c1": "1,000 rows @1 conn",
}


def table(result: dict[str, Any]) -> str:
    """One Markdown table: a column per server, medians over rounds, ours / best peer; then each
    peer's status (why a column is empty or left out of the ratios) and how it batches."""
    servers: dict[str, dict[str, Any]] = result["servers"]
    names = list(servers)
    ratios = result.get("ratios") or best_peer_ratios(servers)
    head = ["scenario", *(servers[n]["title"] for n in names), "ours / best peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sc in SCENARIOS:
        r = ratios.get(sc.key, {})
        cells = [_cell(servers[n], sc.key) for n in names]
        ratio = f"{_x(r.get('req_per_s'))} req/s, {_x(r.get('p99_ms'))} p99"
        title = f"{SCENARIO_TITLES[sc.key]}, req/s (p99 ms)"
        lines.append("| " + " | ".join([title, *cells, ratio if r else "-"]) + " |")
    cells = []
    for n in names:
        s = servers[n].get("summary") or {}
        cells.append(f"{s['start_to_ready_s']:.1f} / {s['peak_rss_mb']:.0f}" if s else "-")
    start, rss = ratios.get("start_to_ready_s", {}), ratios.get("peak_rss_mb", {})
    ratio = f"{_x(start.get('start_to_ready_s'))} / {_x(rss.get('peak_rss_mb'))}"
    lines.append("| start → ready s / peak RSS MB | " + " | ".join([*cells, ratio]) + " |")
    status = [servers[n]["status"] if n != "ours" else "-" for n in names]
    lines.append("| status | " + " | ".join([*status, ""]) + " |")
    lines.append("")
    for n in names:
        s = servers[n]
        if n == "ours":
            continue
        line = f"- {s['title']}: {s['status']}"
        if s.get("reason"):
            line += f": {s['reason']}"
        elif s.get("parity"):
            p = s["parity"]
            line += f", the same probabilities as ours on {p['rows']:,} rows"
            line += f" (max |difference| {p['max_abs_diff']:.2g})"
        if s["status"] in (DIFFERS, NO_ANSWER):
            line += " (left out of the ratios)"
        if s.get("batching"):
            line += f"; batching: {s['batching']}"
        lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Options:
    quick: bool
    rounds: int
    seconds: float
    warm_s: float
    rows: int
    seed: int
    only: tuple[str, ...]
    output: Path


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="Benchmark the churn service against MLServer, BentoML, LitServe and "
        "`mlflow models serve` (each from its own pinned environment under bench/peers/), on the "
        "same champion and the same rows, and print one table with ours / best peer.",
        epilog="Exit codes: 0 run completed (a peer that could not be installed or started is "
        "reported in the table); 1 ours failed or the run could not complete; 2 usage error.",
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s per scenario")
    parser.add_argument("--rounds", type=int, help="rounds, alternating order (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per scenario (default 10)")
    parser.add_argument("--rows", type=int, default=20_000, help="training rows (as make bench)")
    parser.add_argument("--seed", type=int, default=42, help="data/training seed (as make bench)")
    parser.add_argument(
        "--only", nargs="+", choices=[p.name for p in PEERS], help="these peers only"
    )
    parser.add_argument("--output", type=Path, help=f"JSON results (default {RESULTS.name})")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 10.0)
    if rounds < 1 or seconds <= 0:
        parser.error("--rounds must be >= 1 and --seconds > 0")
    return Options(
        quick=bool(args.quick),
        rounds=rounds,
        seconds=seconds,
        warm_s=1.0 if args.quick else 3.0,
        rows=args.rows,
        seed=args.seed,
        only=tuple(args.only or [p.name for p in PEERS]),
        output=args.output or RESULTS,
    )


def champion_dir(version: int) -> Path:
    """The champion's artifact, downloaded once per version (the peers that load a directory)."""
    import mlflow

    target = WORK / f"champion-v{version}"
    if (target / "MLmodel").is_file():
        return target
    uri = serve.store_uri(serve.WORK)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        mlflow.artifacts.download_artifacts(f"models:/churn/{version}", dst_path=str(target))
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    return target


def peer_bodies(peer: Peer, theirs: dict[int, list[bytes]]) -> dict[int, list[bytes]]:
    """The same rows as MLflow's bodies, in the peer's protocol."""
    return {
        size: [peer.body(orjson.loads(b)["dataframe_records"]) for b in bodies]
        for size, bodies in theirs.items()
    }


def contenders(opts: Options, bodies: serve.Bodies, model_dir: Path) -> list[Contender]:
    env = serve.server_env(serve.WORK)
    port = free_port()
    ours = Contender(
        "ours", "ours", bodies.ours,
        lambda a: [float(p["churn_probability"]) for p in a["predictions"]],
        serve.Server(
            "ours", serve.ours_command(port, 1), env, "/ready", "/predict", port,
            WORK / "ours.log",
        ),
    )  # fmt: skip
    out = [ours]
    for peer in (p for p in PEERS if p.name in opts.only):
        c = Contender(peer.name, peer.title, peer_bodies(peer, bodies.theirs), peer.answer)
        serve.progress(f"{peer.name}: installing from bench/peers/{peer.name}/uv.lock")
        c.reason = install(peer)
        if c.reason:
            c.status = NOT_INSTALLED
            serve.progress(f"{peer.name}: {c.status}: {c.reason}")
        else:
            port = free_port()
            c.server = serve.Server(
                peer.name, peer.command(peer.bin_dir(), port, WORK),
                peer_env(peer, env, WORK, model_dir, port), peer.ready_path, peer.predict_path,
                port, WORK / f"{peer.name}.log",
                cwd=peer.directory if peer.cwd_in_dir else serve.ROOT,
            )  # fmt: skip
        out.append(c)
    return out


def answers(c: Contender, bodies: Sequence[bytes]) -> list[float]:
    import httpx

    assert c.server is not None
    url = c.server.base + c.server.predict_path
    got: list[float] = []
    with httpx.Client(timeout=60) as client:
        for body in bodies:
            resp = client.post(url, content=body, headers={"content-type": "application/json"})
            resp.raise_for_status()
            got.extend(c.answer(resp.json()))
    return got


def max_difference(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """The largest |ours - theirs| over the rows; infinite when the counts differ."""
    if len(ours) != len(theirs):
        return math.inf
    return max((abs(a - b) for a, b in zip(ours, theirs, strict=True)), default=0.0)


def parity_bodies(bodies: dict[int, list[bytes]]) -> list[bytes]:
    return [*bodies[1][:PARITY_SINGLES], bodies[1000][0]]


def check_parity(c: Contender, reference: list[float]) -> None:
    """The peer's probabilities on the parity rows against ours; a difference marks it."""
    try:
        got = answers(c, parity_bodies(c.bodies))
    except Exception as exc:  # any failure to answer is a finding, not a crash of the bench
        first = (str(exc).splitlines() or [""])[0]
        c.status, c.reason = NO_ANSWER, f"the parity rows: {type(exc).__name__}: {first}"[:300]
        return
    diff = max_difference(reference, got)
    c.parity = {"rows": len(reference), "max_abs_diff": diff if math.isfinite(diff) else None}
    if not diff <= TOLERANCE:
        c.status = DIFFERS
        c.reason = (
            f"{len(got)} answers for {len(reference)} rows"
            if math.isinf(diff)
            else f"max |difference| {diff:.3g} over {len(reference)} rows (> {TOLERANCE:g})"
        )


def one_round(c: Contender, client: serve.Client, opts: Options, reference: list[float]) -> None:
    """Start, (first round: parity), warm, the scenarios, peak RSS, stop."""
    server = c.server
    assert server is not None
    serve.progress(f"{c.name}: starting")
    try:
        started = server.start(timeout=300)
    except (RuntimeError, TimeoutError) as exc:
        c.status, c.reason = NO_START, str(exc).splitlines()[0][:300]
        serve.progress(f"{c.name}: {c.status}: {c.reason}")
        return
    try:
        if c.name == "ours" and not reference:
            reference.extend(answers(c, parity_bodies(c.bodies)))
        elif c.parity is None and c.status == "ok":
            check_parity(c, reference)
            serve.progress(f"{c.name}: parity {c.status} {c.reason}")
            if c.status == NO_ANSWER:  # nothing to time
                return
        url = server.base + server.predict_path
        client.run(url, c.bodies[1], 16, opts.warm_s, 1)
        client.run(url, c.bodies[1000], 1, opts.warm_s, 1000)
        scenarios = {}
        for sc in SCENARIOS:
            # One request answered first: a slow server still works off the requests the last
            # scenario left queued when its client stopped, and would charge them to this one.
            answers(c, c.bodies[sc.rows][:1])
            load = client.run(url, c.bodies[sc.rows], sc.connections, opts.seconds, sc.rows)
            scenarios[sc.key] = load.as_dict()
            serve.progress(
                f"{c.name:<8} {sc.title:<20} {load.rps:8.1f} req/s  p99 {load.p99_ms:8.1f} ms  "
                f"errors {load.errors}"
            )
        c.rounds.append(
            {
                "start_to_ready_s": round(started, 3),
                "peak_rss_mb": round(server.peak_rss_bytes() / 2**20, 1),
                "scenarios": scenarios,
            }
        )
    finally:
        server.stop()


def run(opts: Options) -> dict[str, Any]:
    t0 = time.monotonic()
    version = serve.ensure_champion(serve.WORK, opts.rows, opts.seed)
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir = champion_dir(version)
    lay_out(WORK, model_dir)
    binary = serve.find_wrk()
    client: serve.Client = serve.WrkClient(binary, WORK) if binary else serve.HttpxClient()
    if not binary:
        serve.progress(f"wrk not installed ({serve.SETUP_HINT}): using the httpx client")
    bodies = serve.build_bodies(serve.WORK, sorted({sc.rows for sc in SCENARIOS}))
    runners = contenders(opts, bodies, model_dir)
    reference: list[float] = []
    for n in range(opts.rounds):
        order = runners if n % 2 == 0 else runners[::-1]
        serve.progress(f"round {n + 1} of {opts.rounds}: " + ", ".join(c.name for c in order))
        for c in order:
            if c.server is not None and c.status in ("ok", DIFFERS):
                one_round(c, client, opts, reference)
            if c.name == "ours" and c.status != "ok":
                raise RuntimeError(f"our service {c.status}: {c.reason}")
    servers = {
        c.name: {
            "title": c.title,
            "status": c.status,
            "reason": c.reason,
            "batching": next((p.batching for p in PEERS if p.name == c.name), ""),
            "parity": c.parity,
            "summary": summarise(c.rounds),
            "rounds": c.rounds,
        }
        for c in runners
    }
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "config": {
            "quick": opts.quick,
            "rounds": opts.rounds,
            "seconds_per_scenario": opts.seconds,
            "model": f"models:/churn@champion (v{version})",
            "client": client.name,
            "tolerance": TOLERANCE,
        },
        "servers": servers,
        "ratios": best_peer_ratios(servers),
        "total_s": round(time.monotonic() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    return serve.finish("bench-peers", run, table, parse_args(argv))
