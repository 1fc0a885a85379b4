"""The tracking server hangs, then dies, then comes back, while the service is under load.

Protection proved, and what fails without it:
- the service answers from the model it has loaded (requests never touch the registry) and
  `/ready` stays 200; a service that re-resolved the alias per request would fail here;
- `/model` and `/metrics` say the registry is unreachable (serve/reloader.py `_reachable`);
- polling backs off exponentially to CHURN_RELOAD_BACKOFF_MAX_S and resets on the first
  successful check (`Reloader.next_delay`); without it `poll_delay_s` stays at the interval;
- scripts fail fast with one line and exit 4, hung or dead server alike, and write nothing
  (churn/tracking.py: bounded HTTP retries and the /health precheck); with MLflow's default
  retries a script waits minutes on a dead server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import promote
import register
import rollback
import train
from churn.registry_lock import LOCK_NAME
from serve.api_models import EXAMPLE_ROWS
from tests.reliability.conftest import BACKOFF_MAX_S, POLL_S, Stack
from tests.serve_helpers import LoadResult, load_loop, wait_until

pytestmark = pytest.mark.integration

SCRIPT_LIMIT_S = 15.0
SCRIPTS = ("promote.py", "rollback.py", "register.py", "train.py")


def registry_snapshot(stack: Stack) -> dict[str, Any]:
    """Everything a script could have written: aliases, versions, runs, models."""
    from churn.registry_reads import aliases

    client = stack.client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {
        "aliases": aliases(client),
        "versions": sorted(int(v.version) for v in client.search_model_versions("name='churn'")),
        "runs": len(client.search_runs(experiments, max_results=5000)),
        "models": sorted(m.name for m in client.search_registered_models()),
    }


def run_script(
    name: str, main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> float:
    """Run a script's main(); it must exit 4 with one stderr line and nothing on stdout."""
    capsys.readouterr()
    start = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert (code, out) == (4, ""), (name, code, out, err)
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), (name, err)
    assert "Traceback" not in err
    assert seconds < SCRIPT_LIMIT_S, (name, seconds)
    return seconds


def scripts_fail_fast(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], names: tuple[str, ...]
) -> str:
    uri = ["--tracking-uri", stack.uri]
    reports = tmp_path / "reports"
    scripts: dict[str, tuple[Callable[[list[str]], int], list[str]]] = {
        "promote.py": (promote.main, uri),
        "rollback.py": (rollback.main, uri),
        "register.py": (register.main, [*uri, "--best"]),
        "train.py": (train.main, [*uri, "--data", str(stack.data), "--reports", str(reports)]),
    }
    timings = {name: run_script(name, *scripts[name], capsys) for name in names}
    assert not reports.exists()  # train.py stopped before writing its reports
    return ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())


def test_a_tracking_server_outage_degrades_service_instead_of_ending_it(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = stack.service
    stack.serve(stack.good[0])
    before = registry_snapshot(stack)
    failures_before = service.model_info()["reload"]["failures"]
    assert service.model_info()["reload"]["registry_reachable"] is True
    assert service.metric("churn_registry_reachable") == 1.0

    stop = threading.Event()
    load = LoadResult()
    body = {"instances": EXAMPLE_ROWS[:1]}
    readiness: list[int] = []

    def probe_ready() -> None:
        while not stop.is_set():
            readiness.append(service.get("/ready").status_code)
            time.sleep(0.1)

    threads = [
        threading.Thread(target=load_loop, args=(f"{service.url}/predict", body, stop, load, 180)),
        threading.Thread(target=probe_ready),
    ]
    for t in threads:
        t.start()
    try:
        # 1. Hung: the server accepts connections and never answers.
        stack.server.pause()
        hung = scripts_fail_fast(stack, tmp_path, capsys, ("promote.py", "train.py"))

        # 2. Dead: connections refused. Its replacement (same port, same store) is started at
        # once: it takes several seconds to answer, during which the server is simply down.
        stack.server.kill()
        restart: dict[str, float] = {}
        restarting = threading.Thread(
            target=lambda: restart.update(s=stack.server.start(), at=time.monotonic())
        )
        restarting.start()
        dead = scripts_fail_fast(stack, tmp_path, capsys, tuple(SCRIPTS))
        assert wait_until(lambda: service.model_info()["reload"]["registry_reachable"] is False, 30)
        assert service.metric("churn_registry_reachable") == 0.0
        info = service.model_info()
        assert info["served"]["version"] == stack.good[0] and info["ready"] is True
        assert info["reload"]["last_error"]["stage"] == "resolve"

        # Polling backs off: each delay a rung of interval * 2^k, jittered down <= 20%, capped.
        rungs = [min(BACKOFF_MAX_S, POLL_S * 2**k) for k in range(1, 12)]
        delays: list[float] = []
        # 3. Back: the service keeps backing off until the server answers again.
        while restarting.is_alive():
            reload = service.model_info()["reload"]
            if reload["registry_reachable"] is False:  # not yet seen back
                delays.append(reload["poll_delay_s"])
            time.sleep(0.1)
        failures_down = service.model_info()["reload"]["failures"] - failures_before
        assert all(any(0.8 * r <= d <= r for r in rungs) for d in delays), sorted(set(delays))
        seen = {r for r in rungs for d in delays if 0.8 * r <= d <= r}
        assert len(seen) >= 2, sorted(set(delays))  # it did double, while the server was down
        assert wait_until(lambda: service.model_info()["reload"]["registry_reachable"], 30, 0.05)
        recovered_s = time.monotonic() - restart["at"]
        assert recovered_s <= BACKOFF_MAX_S + 2, recovered_s
        assert service.metric("churn_registry_reachable") == 1.0
        assert wait_until(lambda: service.model_info()["reload"]["poll_delay_s"] == POLL_S, 5)
        # Nothing any script (or the service) wrote while the server was down or hung.
        assert registry_snapshot(stack) == before
        assert LOCK_NAME not in before["models"]
        # And it follows the registry again at the normal pace.
        promoted = time.monotonic()
        stack.serve(stack.good[1], timeout=2 * POLL_S + 5)
        follow_s = time.monotonic() - promoted
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        stack.server.resume()
        if stack.server.proc is None:
            stack.server.start()
    assert load.failures == [], load.failures[:5]
    assert set(readiness) == {200}, readiness
    print(
        f"\noutage: scripts hung [{hung}], dead [{dead}]; {load.ok} predictions, 0 failed; "
        f"{failures_down} failed checks while down, poll delays seen "
        f"{sorted({round(d, 2) for d in delays})} s; "
        f"server restart {restart['s']:.1f} s, service saw it {recovered_s:.1f} s later, "
        f"followed a promotion in {follow_s:.1f} s"
    )
    stack.serve(stack.good[0])


def test_polling_backs_off_exponentially_to_the_cap_and_resets_on_success() -> None:
    """The schedule itself, check by check (the live test above sees it from outside)."""
    from serve.holder import ModelHolder
    from serve.metrics import Metrics
    from serve.reloader import Reloader
    from tests.serve_helpers import FakeRegistry

    registry = FakeRegistry()
    registry.add(1, champion=True)
    reloader = Reloader(registry, ModelHolder(), Metrics(), 0.5, backoff_max_s=4.0)

    async def checks() -> list[float]:
        delays = []
        for unreachable in (False, True, True, True, True, True, False, True):
            registry.unreachable = unreachable
            await reloader.check("poll")
            delays.append(reloader.next_delay())
        return delays

    delays = asyncio.run(checks())
    #        ok    down: doubling to the cap ...  back  down again: from the start
    ladder = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 0.5, 1.0]
    for delay, rung in zip(delays, ladder, strict=True):
        assert (delay == rung) if rung == 0.5 else (0.8 * rung <= delay <= rung), delays
    assert reloader.status.registry_reachable is False
