"""Soak: 60 s at 16 connections against the real service, with a real promotion and a real
rollback in the middle. Zero failed requests, resident memory grows < 10%, p99 stays put.

Protection proved: the hot swap (serve/holder.py: load beside, swap one reference; the old model
released), bounded per-request state (micro-batcher queue, metrics label sets, the traffic
monitor), and `freeze_heap` keeping the loaded libraries out of the cyclic GC's scans. A leak
of any per-request object, a swap that drops requests, or a stop-the-world GC under load fails
one of the three assertions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

import promote
import rollback
from serve.api_models import EXAMPLE_ROWS
from tests.reliability.conftest import Stack
from tests.serve_helpers import wait_until

# `soak`: `-m "not soak"` skips the minute it takes. It runs in `make test` (CI) beside the
# other worker's real servers: its one failure there was the keep-alive race, not the load
# (tests/reliability/test_keepalive.py).
pytestmark = [pytest.mark.integration, pytest.mark.soak]

SOAK_S = 60.0
CONNECTIONS = 16
WARM_UP_S = 3.0
PROMOTE_AT_S, ROLLBACK_AT_S = 25.0, 40.0
RSS_GROWTH = 0.10
WINDOW_S = 10.0


@dataclass
class Soak:
    # (seconds since start, latency seconds, version that answered)
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)


async def _load(url: str, until: float, start: float, soak: Soak, record: bool) -> None:
    body = {"instances": EXAMPLE_ROWS}
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:

        async def connection() -> None:
            while (now := time.monotonic()) < until:
                try:
                    resp = await client.post("/predict", json=body)
                except httpx.HTTPError as exc:
                    soak.failures.append(
                        f"{now - start:.1f} s: {type(exc).__name__}: {exc} "
                        f"(caused by {causes(exc)})"
                    )
                    continue
                done = time.monotonic()
                if resp.status_code != 200:
                    soak.failures.append(f"{now - start:.1f} s: {resp.status_code} {resp.text}")
                elif record:
                    version = int(resp.json()["model"]["version"])
                    soak.samples.append((now - start, done - now, version))

        await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))


def causes(exc: BaseException) -> str:
    """The exception chain under `exc`: httpx's `ReadError: ` (empty message) says nothing, what
    it wraps does, e.g. `ReadError(BrokenResourceError()) <- BrokenResourceError() <-
    ConnectionResetError(104, 'Connection reset by peer')`: the server reset the connection."""
    chain, seen = [], set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(repr(cause))
        cause = cause.__cause__ or cause.__context__
    return " <- ".join(chain) or "nothing"


def p99_ms(latencies: list[float]) -> float:
    return float(np.percentile(np.array(latencies), 99) * 1000)


def test_soak_with_a_promotion_and_a_rollback(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = stack.good[0], stack.good[1]
    stack.serve(old, challenger=new)
    service = stack.service
    soak = Soak()
    asyncio.run(_load(service.url, time.monotonic() + WARM_UP_S, time.monotonic(), soak, False))
    assert soak.failures == [], soak.failures[:5]

    start = time.monotonic()
    soak.rss_mb.append((0.0, service.rss_mb()))
    stop = threading.Event()
    moves: dict[str, tuple[int, float]] = {}

    def registry_changes() -> None:
        """promote.py and rollback.py as CI runs them, at fixed points of the soak."""
        uri = ["--tracking-uri", stack.uri]
        for at, name, main, argv in (
            (PROMOTE_AT_S, "promote", promote.main, [*uri, "--no-reevaluate", "--epsilon", "0"]),
            (ROLLBACK_AT_S, "rollback", rollback.main, uri),
        ):
            if stop.wait(max(0.0, start + at - time.monotonic())):
                return
            moves[name] = (main(argv), time.monotonic() - start)

    def sample_rss() -> None:
        while not stop.wait(1.0):
            soak.rss_mb.append((time.monotonic() - start, service.rss_mb()))

    helpers = [threading.Thread(target=registry_changes), threading.Thread(target=sample_rss)]
    for t in helpers:
        t.start()
    try:
        asyncio.run(_load(service.url, start + SOAK_S, start, soak, True))
    finally:
        stop.set()
        for t in helpers:
            t.join(timeout=30)
    soak.rss_mb.append((SOAK_S, service.rss_mb()))
    capsys.readouterr()  # the scripts' own output

    assert moves["promote"][0] == 0 and moves["rollback"][0] == 0, moves
    assert soak.failures == [], soak.failures[:5]
    times = np.array([t for t, _, _ in soak.samples])
    latencies = [lat for _, lat, _ in soak.samples]
    windows = [
        p99_ms([lat for t, lat, _ in soak.samples if k * WINDOW_S <= t < (k + 1) * WINDOW_S])
        for k in range(int(SOAK_S / WINDOW_S))
    ]
    # Every answer came from the version @champion named at that moment (give or take a poll).
    versions = [v for _, _, v in soak.samples]
    assert versions[0] == old and versions[-1] == old and new in versions
    rss_start, rss_end = soak.rss_mb[0][1], soak.rss_mb[-1][1]
    rss_peak = max(mb for _, mb in soak.rss_mb)
    print(
        f"\nsoak: {len(latencies)} requests in {SOAK_S:.0f} s "
        f"({len(latencies) / SOAK_S:.0f}/s at {CONNECTIONS} connections), 0 failed; "
        f"promote at {moves['promote'][1]:.1f} s, rollback at {moves['rollback'][1]:.1f} s; "
        f"p99 per {WINDOW_S:.0f} s window {[round(w, 1) for w in windows]} ms "
        f"(whole run {p99_ms(latencies):.1f} ms); "
        f"RSS {rss_start:.0f} -> {rss_end:.0f} MB (peak {rss_peak:.0f} MB, "
        f"{(rss_end - rss_start) / rss_start:+.1%})"
    )
    assert len(times) > 0 and times.max() > SOAK_S - 1
    assert rss_end < rss_start * (1 + RSS_GROWTH)
    # Stable: the last window's tail latency is not a multiple of the typical window's (the
    # median of the six, so one noisy window on a shared machine decides nothing). A leak that
    # makes collections or queues grow shows up as a last window far above the rest.
    assert windows[-1] <= 2.0 * float(np.median(windows)) + 25.0, windows
    assert wait_until(lambda: service.served_version() == old, 5)
