"""Keeping the served model in step with the registry alias, without a restart.

Every check (the poll loop, POST /admin/reload, an MLflow webhook) runs the same steps under
one lock: resolve the alias (worker thread) -> if it names another version, load that version
(worker thread) beside the current one -> swap the holder's reference. A failure at any step
leaves the current model serving; it is counted, logged, shown on GET /model, and the next
check tries again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from anyio import to_thread

from churn.tracking import shown
from serve.holder import ModelHolder
from serve.metrics import Metrics
from serve.model_source import NoModelError, Registry

log = logging.getLogger(__name__)


def freeze_heap() -> None:
    """Take what is alive now (libraries and the loaded model) out of the cyclic GC's scans.

    mlflow, sklearn and pandas leave ~350k long-lived objects; a full collection over them takes
    ~200 ms on a 2-core machine and stalls every request in flight, which is what p99 latency
    showed. After `gc.freeze()` collections scan only what requests allocate. Unfreezing first
    lets the previous model's reference cycles be collected once, at swap time.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Outcome(StrEnum):
    LOADED = "loaded"  # a new version is now serving
    UNCHANGED = "unchanged"  # the alias still names the version being served
    NO_MODEL = "no_model"  # nothing to serve in the registry (yet)
    FAILED = "failed"  # resolving or loading failed; the previous model (if any) still serves


@dataclass(frozen=True)
class CheckResult:
    outcome: Outcome
    version: int | None  # the version serving after the check
    previous_version: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "version": self.version,
            "previous_version": self.previous_version,
            "detail": self.detail,
        }


@dataclass
class ReloadStatus:
    """Written only by `Reloader.check` (under its lock, on the event loop); read by GET /model."""

    last_check_at: datetime | None = None
    last_loaded_at: datetime | None = None
    # Why nothing can be served (no model / no alias): the /ready message.
    waiting: str | None = None
    last_error: dict[str, Any] | None = None
    failures: int = 0
    consecutive_failures: int = 0
    aliases: dict[str, int] = field(default_factory=dict)
    # Whether the last check could read the registry (None: no check yet). While it cannot,
    # the service keeps serving what it has and polls less often (`poll_delay_s`).
    registry_reachable: bool | None = None
    poll_delay_s: float | None = None


def _one_line(exc: BaseException) -> str:
    # Answers and /model show '…/model.skops', not where files live on this machine (a
    # temporary download directory, the store's path), nor a password from the tracking URI.
    # Redacted before it is cut: a cut can split a URL's password from its '@'.
    lines = shown(str(exc)).strip().splitlines()
    text = lines[0][:300] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Reloader:
    def __init__(
        self,
        registry: Registry,
        holder: ModelHolder,
        metrics: Metrics,
        interval: float,
        *,
        role: str = "champion",
        peer: ModelHolder | None = None,
        backoff_max_s: float = 60.0,
        on_poll_loaded: Callable[[], None] | None = None,
    ) -> None:
        """`role`: champion (what /ready and the metrics' model version follow) or challenger.
        `peer`: another holder whose model is reused when both aliases name one version.
        `on_poll_loaded`: called when a poll swapped one version for another (serve/workers.py)."""
        self.registry = registry
        self.holder = holder
        self.metrics = metrics
        self.interval = interval
        self.role = role
        self.peer = peer
        self.backoff_max_s = max(backoff_max_s, interval)
        self.on_poll_loaded = on_poll_loaded
        self.status = ReloadStatus()
        self.checked = asyncio.Event()  # set when the first check ends, whatever its outcome
        self._unreachable_checks = 0  # consecutive checks that could not read the registry
        self._lock = asyncio.Lock()

    async def check(self, trigger: str) -> CheckResult:
        async with self._lock:
            try:
                return await self._check(trigger)
            finally:
                self.checked.set()

    async def _check(self, trigger: str) -> CheckResult:
        status = self.status
        status.last_check_at = datetime.now(UTC)
        current = self.holder.current
        served = current.version if current else None
        try:
            target = await to_thread.run_sync(self.registry.resolve)
        except NoModelError as exc:
            self._reachable(True)
            status.waiting = str(exc)
            status.aliases = {}
            if self.role != "champion" and current is not None:
                # The challenger alias was removed (promoted or dropped): stop routing to it.
                self.holder.clear()
                self.metrics.challenger_version.set(0)
                log.info("%s: %s; no challenger now", trigger, exc)
                return CheckResult(Outcome.NO_MODEL, None, served, str(exc))
            if current is not None:
                log.warning("%s; still serving v%s", exc, served)
            return CheckResult(Outcome.NO_MODEL, served, served, str(exc))
        except Exception as exc:
            self._reachable(False)
            return self._failed("resolve", None, exc, served)
        self._reachable(True)
        status.waiting = None
        status.aliases = target.aliases
        if current is not None and current.version == target.version:
            status.consecutive_failures = 0
            return CheckResult(Outcome.UNCHANGED, served, served, f"serving v{served}")
        role = self.role
        shared = self.peer.current if self.peer is not None else None
        if shared is not None and shared.version == target.version:
            loaded = shared  # one version under two aliases: one copy in memory
        else:
            log.info("%s: loading %s v%d (serving %s)", trigger, role, target.version, _v(served))
            try:
                loaded = await to_thread.run_sync(self.registry.load, target.version)
            except Exception as exc:
                return self._failed("load", target.version, exc, served)
        self.holder.swap(loaded)
        freeze_heap()
        status.last_loaded_at = loaded.loaded_at or datetime.now(UTC)
        status.consecutive_failures = 0
        if role == "champion":
            self.metrics.reloads.inc()
            self.metrics.model_version.set(loaded.version)
        else:
            self.metrics.challenger_version.set(loaded.version)
        log.info("%s: %s is v%d (was %s)", trigger, role, loaded.version, _v(served))
        return CheckResult(Outcome.LOADED, loaded.version, served, f"now serving v{loaded.version}")

    def _reachable(self, ok: bool) -> None:
        self.status.registry_reachable = ok
        self._unreachable_checks = 0 if ok else self._unreachable_checks + 1
        self.metrics.registry_reachable.set(1 if ok else 0)

    def next_delay(self) -> float:
        """Seconds until the next poll: the interval, doubled for each check in a row that could
        not read the registry, capped at `backoff_max_s`. Jittered down by up to 20% while
        backing off, so replicas do not all hit a recovering server at the same instant."""
        # Interval 0 only retries a failed start: from 1 s, backing off the same way.
        base, failures = self.interval or 1.0, self._unreachable_checks
        if self.interval <= 0:
            failures = max(failures, self.status.consecutive_failures) - 1
        if failures <= 0:
            return base
        delay = min(self.backoff_max_s, base * 2.0 ** min(failures, 30))
        return delay * random.uniform(0.8, 1.0)

    def _failed(
        self, stage: str, version: int | None, exc: BaseException, served: int | None
    ) -> CheckResult:
        status = self.status
        status.failures += 1
        status.consecutive_failures += 1
        what = f"loading v{version}" if version is not None else "resolving the alias"
        message = f"{what} failed: {_one_line(exc)}"
        status.last_error = {
            "at": datetime.now(UTC).isoformat(),
            "stage": stage,
            "version": version,
            "message": message,
        }
        label = stage if self.role == "champion" else f"{self.role}-{stage}"
        self.metrics.reload_failures.labels(label).inc()
        kept = f"still serving v{served}" if served is not None else "nothing is served yet"
        log.error("%s; %s; retrying at the next check", message, kept)
        return CheckResult(Outcome.FAILED, served, served, f"{message}; {kept}")

    async def run(self) -> None:
        """The poll loop: check now, then every `interval` seconds. With interval 0 (no polling)
        a first check that failed (registry down at start, load failed) is still retried, with
        the same backoff, until something is served: a service started before its registry
        must not stay empty until someone calls /admin/reload."""
        while True:
            failed = True
            try:
                result = await self.check("poll")
                failed = result.outcome is Outcome.FAILED
                # A swap, not a first load: a worker starting need not tell the others.
                swapped = result.outcome is Outcome.LOADED and result.previous_version is not None
                if swapped and self.on_poll_loaded is not None:
                    self.on_poll_loaded()
            except Exception:  # a bug here must not end polling
                log.exception("model check failed unexpectedly")
            if self.interval <= 0 and not (failed and self.holder.current is None):
                return
            self.status.poll_delay_s = delay = self.next_delay()
            await asyncio.sleep(delay)


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "nothing"
