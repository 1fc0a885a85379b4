"""serve/workers.py: a reload one worker announces makes every other worker re-check, once; the
announcing worker itself does not; a directory it cannot own is refused without failing the
reload; and the WEB_CONCURRENCY setting."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from serve import workers
from serve.app import create_app
from serve.config import ServeSettings
from serve.workers import ReloadBroadcast
from tests.serve_helpers import FakeRegistry, wait_until
from tests.unit.test_serve import SECRET, alias_event, signed

TICK_S = 0.01


async def _watch_while(watcher: ReloadBroadcast, action: object, seconds: float = 0.2) -> list[int]:
    """Run `watcher.watch` for `seconds`, calling `action()` after the first tick; the rechecks."""
    calls: list[int] = []

    async def recheck() -> None:
        calls.append(1)

    task = asyncio.create_task(watcher.watch(recheck))
    await asyncio.sleep(3 * TICK_S)
    action()  # type: ignore[operator]
    await asyncio.sleep(seconds)
    task.cancel()
    return calls


def test_another_workers_announcement_makes_this_one_recheck_once(tmp_path: Path) -> None:
    shared = tmp_path / "churn-serve-1"
    this, other = ReloadBroadcast(shared, TICK_S), ReloadBroadcast(shared, TICK_S)

    def announce_three_times() -> None:  # between two ticks: one re-check
        for _ in range(3):
            other.announce()

    assert asyncio.run(_watch_while(this, announce_three_times)) == [1]
    assert (shared / "reload").read_text().startswith(f"{os.getpid()}-")
    assert shared.stat().st_mode & 0o777 == 0o700


def test_a_worker_does_not_recheck_for_its_own_announcement(tmp_path: Path) -> None:
    this = ReloadBroadcast(tmp_path / "churn-serve-1", TICK_S)
    assert asyncio.run(_watch_while(this, this.announce)) == []


def test_a_worker_started_after_an_announcement_does_not_act_on_it(tmp_path: Path) -> None:
    shared = tmp_path / "churn-serve-1"
    ReloadBroadcast(shared).announce()
    late = ReloadBroadcast(shared, TICK_S)  # its first check reads the registry anyway
    assert asyncio.run(_watch_while(late, lambda: None)) == []


def test_a_failed_recheck_does_not_end_the_watch(tmp_path: Path) -> None:
    shared = tmp_path / "churn-serve-1"
    this, other = ReloadBroadcast(shared, TICK_S), ReloadBroadcast(shared, TICK_S)
    calls: list[int] = []

    async def recheck() -> None:
        calls.append(1)
        raise RuntimeError("registry client bug")

    async def scenario() -> None:
        task = asyncio.create_task(this.watch(recheck))
        for _ in range(2):
            await asyncio.sleep(5 * TICK_S)
            other.announce()
        await asyncio.sleep(5 * TICK_S)
        task.cancel()

    asyncio.run(scenario())
    assert calls == [1, 1]


@pytest.mark.parametrize("squatted", ["file", "symlink"])
def test_a_name_taken_by_something_else_is_refused_and_the_reload_goes_on(
    tmp_path: Path, squatted: str, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "churn-serve-1"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if squatted == "file":
        shared.write_text("not a directory")
    else:
        shared.symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING, logger="serve.workers"):
        ReloadBroadcast(shared).announce()  # never raises
    assert "could not tell the other workers to reload" in caplog.text
    assert list(elsewhere.iterdir()) == []


def test_close_removes_the_shared_directory(tmp_path: Path) -> None:
    shared = tmp_path / "churn-serve-1"
    broadcast = ReloadBroadcast(shared)
    broadcast.announce()
    broadcast.close()
    assert not shared.exists()
    broadcast.close()  # again: nothing to remove, no error


def test_a_process_serving_alone_has_no_broadcast() -> None:
    assert ReloadBroadcast.for_this_process() is None  # not a uvicorn worker process


def test_web_concurrency_is_the_worker_count_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert ServeSettings(tracking_uri="sqlite:///x.db").workers == 4
    monkeypatch.setenv("WEB_CONCURRENCY", "0")  # uvicorn would silently run one process
    with pytest.raises(ValidationError, match="WEB_CONCURRENCY"):
        ServeSettings(tracking_uri="sqlite:///x.db")


def test_a_worker_of_several_announces_admin_reloads_and_follows_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app wired as one of several workers (the broadcast forced on): it takes requests only
    after its first check, /admin/reload and a webhook announce to the others, an announcement
    by another worker makes it re-check and swap, and its shutdown removes the shared directory."""
    shared = tmp_path / "churn-serve-1"
    monkeypatch.setattr(
        workers.ReloadBroadcast,
        "for_this_process",
        classmethod(lambda cls: cls(shared, TICK_S)),
    )
    registry = FakeRegistry()
    registry.add(1, champion=True)
    registry.add(2)
    settings = ServeSettings(
        tracking_uri="sqlite:///fake.db", reload_interval=0, admin_token=SecretStr("t"),
        webhook_secret=SecretStr(SECRET),
    )  # fmt: skip
    other = ReloadBroadcast(shared, TICK_S)  # another worker of the same server
    with TestClient(create_app(settings, registry=registry)) as client:
        info = client.get("/model").json()  # no wait: the first check ended before start-up did
        assert info["served"]["version"] == 1
        assert info["worker"] == {"pid": os.getpid(), "one_of_several": True}
        before = other._read()
        assert (
            client.post("/admin/reload", headers={"Authorization": "Bearer t"}).status_code == 200
        )
        assert other._read() != before  # the others were told
        before = other._read()
        event = alias_event()
        assert (
            client.post("/webhooks/mlflow", content=event, headers=signed(event)).status_code == 202
        )
        assert other._read() != before  # a webhook too
        registry.aliases["champion"] = 2
        other.announce()
        assert wait_until(lambda: client.get("/ready").json()["model"]["version"] == 2, 5)
    assert not shared.exists()
