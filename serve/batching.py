"""Micro-batching: concurrent /predict requests scored together by one `predict` call.

Why: a pyfunc `predict` costs milliseconds whatever the number of rows (for the churn pipeline
~5-9 ms for 1 row, ~10-14 ms for 1,000), so under concurrency almost all the cost of a
single-row request is fixed overhead that one call can share.

How: each request puts its validated rows on a queue and awaits its own future. One consumer
task takes everything queued, concatenates the rows and runs `ModelHolder.score` once, in one
dedicated thread (the GIL would serialise two predicts anyway); while that runs, the next batch
forms on its own. The consumer waits for more requests (at most `max_wait_s`) only while other
requests are inside the handler but not yet queued, or while fewer requests are queued than were
in flight during the previous batch (their clients, just answered, are sending the next ones).
So a lone client is never delayed, and under steady concurrency the batches do not split into
two alternating halves (one scoring while the other is answered). A batch never exceeds
`max_rows` unless one request alone does (a request is never split).

A request that arrives while nothing else is in flight (no other request being read, queued
or scored) could not share a batch anyway: `score_alone` runs its whole CPU work (parse, frame,
predict, answer) in the scoring thread in one go, instead of parsing on the event loop, handing
the rows over, and handing the probabilities back to be answered. One hand-off each way and the
request's data never changes threads: for a lone 1,000-row request ~5% less CPU, and the event
loop stays free meanwhile. The model still only ever runs in the scoring thread, so a model
that hangs cannot freeze the service.

`ModelHolder.score` reads the model reference once per batch: every request in the batch is
scored by, and reports, the same version, even if a hot swap happens meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from serve.holder import ModelHolder, Scored
from serve.rows import concat_rows

log = logging.getLogger(__name__)

T = TypeVar("T")
SHUTTING_DOWN = "the service is shutting down"


@dataclass(frozen=True)
class _Pending:
    rows: Sequence[Any]
    future: asyncio.Future[Scored]


class MicroBatcher:
    """Collects concurrent requests' rows into one `ModelHolder.score` call per batch."""

    def __init__(
        self,
        holder: ModelHolder,
        max_rows: int,
        max_wait_s: float,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self.holder = holder
        self._observe = observe  # told the rows of every predict call (the metrics histogram)
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._arriving = 0  # requests in the handler that have not queued (or left) yet
        self._scoring = 0  # requests in the batch being scored
        self._alone = 0  # lone requests handed to the scoring thread (`score_alone`), not done
        # Most requests in flight (arriving, queued or scoring) seen since the last batch left:
        # how many a new batch can expect soon.
        self._peak = 0
        self._executor: ThreadPoolExecutor | None = None
        # What the last batches looked like, for tests and GET /model-style introspection.
        self.batches = 0
        self.rows_scored = 0

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Wrap a request's work *before* `score` (reading, parsing): while any request is in
        here, a forming batch may wait (bounded) for it instead of leaving without it."""
        self._arriving += 1
        self._seen()
        try:
            yield
        finally:
            self._arriving -= 1
            self._wakeup.set()

    async def score(self, rows: Sequence[Any]) -> Scored:
        """Score `rows` in the next batch; the result holds only these rows' probabilities."""
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(rows, future))
        self._seen()
        self._wakeup.set()
        return await future

    def alone(self) -> bool:
        """Called inside `arriving`: True when this request is the only one in flight (no other
        request being read, queued or scored) and was the only one since the last batch left,
        so it would be a batch of its own. Under concurrency the in-flight count drops to one
        for a moment after each batch is answered (its clients are sending their next
        requests): `_peak` remembers them, and those requests take the queue and share a batch."""
        return (
            self._executor is not None
            and self._arriving == 1
            and not self._queue
            and self._scoring == 0
            and self._alone == 0
            and self._peak <= 1
        )

    async def score_alone(
        self,
        parse: Callable[[], Sequence[Any]],
        answer: Callable[[Sequence[Any], Scored], T],
    ) -> tuple[Sequence[Any], Scored, T]:
        """A lone request (see `alone`; call it right after, before any await): `parse()`, score
        the rows and `answer(rows, scored)` in the scoring thread, as one task. Requests that
        arrive meanwhile queue as usual and are scored after it. Raises what `parse` raises (a
        RequestError), NotReadyError, or the model's error."""
        assert self._executor is not None
        loop = asyncio.get_running_loop()

        def job() -> tuple[Sequence[Any], Scored, T]:
            rows = parse()
            scored = self.holder.score(rows)
            return rows, scored, answer(rows, scored)

        self._alone += 1  # until the thread is done with it, even if the caller gives up
        work: Future[tuple[Sequence[Any], Scored, T]] = self._executor.submit(job)
        work.add_done_callback(lambda _: self._thread_done(loop))
        try:
            rows, scored, answered = await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the request itself was cancelled (its timeout, a disconnect)
            raise RuntimeError(SHUTTING_DOWN) from None  # executor shut down
        self._scored(len(rows))
        return rows, scored, answered

    def _thread_done(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to count
            loop.call_soon_threadsafe(self._alone_done)

    def _alone_done(self) -> None:
        self._alone -= 1

    def _scored(self, rows: int) -> None:
        self.batches += 1
        self.rows_scored += rows
        if self._observe is not None:
            self._observe(rows)

    def _seen(self) -> None:
        self._peak = max(
            self._peak, self._arriving + len(self._queue) + self._scoring + self._alone
        )

    async def run(self) -> None:
        """The consumer loop; runs for the life of the app (cancel it to stop)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        try:
            while True:
                batch = await self._next_batch()
                await self._score(batch)
        finally:
            _fail(self._queue, RuntimeError(SHUTTING_DOWN))
            self._queue.clear()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _next_batch(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = [self._queue.popleft()]
        rows = len(batch[0].rows)
        expected = self._peak
        deadline = loop.time() + self.max_wait_s
        while rows < self.max_rows:
            if self._queue:
                if rows + len(self._queue[0].rows) > self.max_rows:
                    break  # it starts the next batch
                pending = self._queue.popleft()
                batch.append(pending)
                rows += len(pending.rows)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or (self._arriving == 0 and len(batch) >= expected):
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
        self._peak = len(batch) + len(self._queue) + self._arriving
        return batch

    async def _score(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # a cancelled request needs no score
        if not live:
            return
        rows = concat_rows([p.rows for p in live])
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        self._scoring = len(live)
        try:
            scored = await loop.run_in_executor(self._executor, self.holder.score, rows)
        except asyncio.CancelledError:
            _fail(live, RuntimeError(SHUTTING_DOWN))
            raise
        except Exception as exc:  # NotReadyError, or the model failed: every request hears it
            _fail(live, exc)
            return
        finally:
            self._scoring = 0
        self._scored(len(rows))
        start = 0
        for pending in live:
            end = start + len(pending.rows)
            if not pending.future.done():
                pending.future.set_result(Scored(scored.model, scored.probabilities[start:end]))
            start = end


def _fail(batch: Iterable[_Pending], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
