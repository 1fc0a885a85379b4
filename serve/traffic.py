"""Trying a challenger on live traffic: a sticky split, or shadow scoring.

Split (CHURN_CHALLENGER_TRAFFIC=0.1): each row goes to the challenger when the CRC-32 of its
customerID, read as a fraction of 2^32, is below the share. CRC-32 and not Python's `hash()`:
the latter is salted per process, so the same customer would switch sides between replicas and
restarts. The assignment is per row, so a customer is scored by the same side whether they come
alone or in a batch; rows without a customerID are assigned at random.

Shadow (CHURN_SHADOW=true): the champion answers; the rows, with the champion's scores, go on a
bounded queue that a background task drains every `interval` seconds, scoring them with the
challenger in one call in its own thread. Callers never wait for it: the queue drops (and
counts) rows rather than grow when the challenger cannot keep up, and the batches are large so
the shadow's share of CPU stays small (one predict call per interval, ~6 µs per row).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from churn.tracking import shown
from serve.holder import LoadedModel, ModelHolder, Scored
from serve.metrics import Metrics
from serve.rows import concat_rows

log = logging.getLogger(__name__)

_SCALE = float(2**32)


def bucket(customer_id: str) -> float:
    """Where a customer falls in [0, 1): the same on every replica and after every restart."""
    return zlib.crc32(customer_id.encode("utf-8")) / _SCALE


class Split:
    def __init__(self, share: float, rng: random.Random | None = None) -> None:
        self.share = share
        self._rng = rng or random.Random()

    def to_challenger(self, ids: Sequence[str | None]) -> list[bool]:
        """For each customer id of a request, in order: does its row go to the challenger."""
        share, rng = self.share, self._rng
        return [(bucket(cid) if cid else rng.random()) < share for cid in ids]


@dataclass(frozen=True)
class _Item:
    rows: Sequence[BaseModel]
    champion: np.ndarray  # the champion's P(churn) for these rows
    champion_version: int
    champion_threshold: float


@dataclass
class ShadowStats:
    challenger_version: int | None = None
    champion_version: int | None = None
    rows: int = 0
    disagreements: int = 0
    abs_diff_sum: float = 0.0
    dropped: int = 0
    errors: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "rows": self.rows,
            "decision_agreement": 1 - self.disagreements / self.rows if self.rows else None,
            "mean_abs_diff": self.abs_diff_sum / self.rows if self.rows else None,
            "dropped_rows": self.dropped,
            "errors": self.errors,
            "last_error": self.last_error,
        }


class Shadow:
    """Scores what the champion answered with the challenger, off the request path."""

    def __init__(
        self,
        challenger: ModelHolder,
        metrics: Metrics,
        interval_s: float = 0.5,
        max_queued_rows: int = 50_000,
    ) -> None:
        self.challenger = challenger
        self.metrics = metrics
        self.interval_s = interval_s
        self.max_queued_rows = max_queued_rows
        self.stats = ShadowStats()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self.log_every_s = 30.0
        self._logged_at = -float("inf")
        # What else hears each shadow-scored batch (the prediction log), in the shadow thread.
        self.on_scored: Callable[[Sequence[Any], Scored], None] | None = None

    def submit(self, rows: Sequence[BaseModel], champion: np.ndarray, model: LoadedModel) -> None:
        """O(1) on the request path: queue, or drop when the queue is full."""
        if self.challenger.current is None:
            return
        n = len(rows)
        if self._queued_rows + n > self.max_queued_rows:
            self.stats.dropped += n
            self.metrics.shadow_dropped.inc(n)
            return
        self._queue.append(_Item(rows, champion, model.version, model.threshold))
        self._queued_rows += n

    async def run(self) -> None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                if not self._queue:
                    continue
                items = list(self._queue)
                self._queue.clear()
                self._queued_rows = 0
                await loop.run_in_executor(executor, self._score, items)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def _score(self, items: list[_Item]) -> None:
        """In the shadow thread: one predict call for everything queued, then compare."""
        rows = concat_rows([item.rows for item in items])
        stats = self.stats
        try:
            scored = self.challenger.score(rows)
        except Exception as exc:  # the challenger failing must never touch callers
            stats.errors += 1
            stats.last_error = f"{type(exc).__name__}: {shown(str(exc))[:200]}"
            log.warning("shadow scoring failed: %s", stats.last_error)
            return
        champion = np.concatenate([item.champion for item in items])
        decisions = np.concatenate([item.champion >= item.champion_threshold for item in items])
        if self.on_scored is not None:
            self.on_scored(rows, scored)
        challenger = scored.probabilities
        diff = np.abs(challenger - champion)
        disagree = int(np.count_nonzero((challenger >= scored.model.threshold) != decisions))
        version = str(scored.model.version)
        stats.challenger_version = scored.model.version
        stats.champion_version = items[-1].champion_version
        stats.rows += len(rows)
        stats.disagreements += disagree
        stats.abs_diff_sum += float(diff.sum())
        self.metrics.shadow_rows.labels(version).inc(len(rows))
        self.metrics.shadow_disagreements.labels(version).inc(disagree)
        for value in diff.tolist():
            self.metrics.shadow_abs_diff.observe(value)
        now = time.monotonic()
        if now - self._logged_at >= self.log_every_s:
            self._logged_at = now
            summary = stats.as_dict()
            log.info(
                "shadow: challenger v%s vs champion v%s over %d rows: decisions agree %.2f%%, "
                "mean |dp| %.4f, %d rows dropped",
                version,
                stats.champion_version,
                stats.rows,
                100 * summary["decision_agreement"],
                summary["mean_abs_diff"],
                stats.dropped,
            )
