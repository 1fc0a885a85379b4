"""The micro-batcher with fake predictors: merging, bounds, per-request slices, the version each
batch reports, errors. No timing assertions beyond "a lone request is not held back"."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from serve import api_models, validation
from serve.batching import MicroBatcher
from serve.holder import ModelHolder, NotReadyError, Scored
from tests.serve_helpers import FakeRegistry


def rows(*tenures: int) -> list[Any]:
    body = {"instances": [{**api_models.EXAMPLE_ROWS[0], "tenure": t} for t in tenures]}
    return validation.parse(orjson.dumps(body), 1000)[0]


class Gate:
    """A predictor that blocks until released, to pile requests up behind a running batch."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.release = threading.Event()
        self.entered = threading.Event()
        self.frames: list[pd.DataFrame] = []

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        self.entered.set()
        self.release.wait(5)
        self.frames.append(data)
        return data["tenure"].to_numpy(dtype=np.float64) / 100 + self.offset


def holder_with(version: int, predictor: Any) -> ModelHolder:
    registry = FakeRegistry()
    registry.add(version)
    registry.predictors[version] = predictor
    holder = ModelHolder()
    holder.swap(registry.load(version))
    return holder


async def with_batcher(batcher: MicroBatcher, body: Any) -> Any:
    task = asyncio.create_task(batcher.run())
    await asyncio.sleep(0)  # the consumer starts (and makes its thread), as in the app's lifespan
    try:
        return await body()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_concurrent_requests_share_one_predict_and_get_their_own_rows() -> None:
    gate = Gate()
    batcher = MicroBatcher(holder_with(1, gate), max_rows=1000, max_wait_s=0.002)

    async def body() -> list[Scored]:
        first = asyncio.create_task(batcher.score(rows(1)))
        await asyncio.to_thread(gate.entered.wait, 5)  # batch 1 is scoring: the rest queue
        rest = [asyncio.create_task(batcher.score(rows(10 + i, 20 + i))) for i in range(8)]
        await asyncio.sleep(0.01)
        gate.release.set()
        return [await first, *[await r for r in rest]]

    results = asyncio.run(with_batcher(batcher, body))
    assert len(gate.frames) == 2  # the lone first request, then the eight queued ones together
    assert len(gate.frames[1]) == 16
    assert results[0].probabilities.tolist() == [0.01]
    for i, scored in enumerate(results[1:]):
        assert scored.probabilities.tolist() == pytest.approx([(10 + i) / 100, (20 + i) / 100])
        assert scored.model.version == 1
    assert (batcher.batches, batcher.rows_scored) == (2, 17)


def test_a_batch_never_exceeds_max_rows_and_a_big_request_is_not_split() -> None:
    gate = Gate()
    batcher = MicroBatcher(holder_with(1, gate), max_rows=4, max_wait_s=0.002)

    async def body() -> list[Scored]:
        first = asyncio.create_task(batcher.score(rows(1)))
        await asyncio.to_thread(gate.entered.wait, 5)
        queued = [
            asyncio.create_task(batcher.score(rows(*range(n)))) for n in (3, 1, 6, 2, 2)
        ]  # 3+1 fit, 6 alone (over the bound, never split), then 2+2
        await asyncio.sleep(0.01)
        gate.release.set()
        return [await first, *[await q for q in queued]]

    results = asyncio.run(with_batcher(batcher, body))
    assert [len(f) for f in gate.frames] == [1, 4, 6, 4]
    assert [len(r.probabilities) for r in results] == [1, 3, 1, 6, 2, 2]


def test_a_lone_request_is_not_held_back_by_the_wait() -> None:
    gate = Gate()
    gate.release.set()
    # A wait far longer than the test's timeout: a lone request must not sit it out.
    batcher = MicroBatcher(holder_with(1, gate), max_rows=1000, max_wait_s=30.0)

    async def body() -> Scored:
        with batcher.arriving():
            pass
        return await asyncio.wait_for(batcher.score(rows(5)), timeout=5)

    assert asyncio.run(with_batcher(batcher, body)).probabilities.tolist() == [0.05]


def test_each_batch_reports_the_version_that_scored_it_across_a_swap() -> None:
    old, new = Gate(offset=0.0), Gate(offset=0.5)
    new.release.set()
    holder = holder_with(1, old)
    registry = FakeRegistry()
    registry.add(2)
    registry.predictors[2] = new  # type: ignore[assignment]
    batcher = MicroBatcher(holder, max_rows=1000, max_wait_s=0.002)

    async def body() -> list[Scored]:
        first = asyncio.create_task(batcher.score(rows(10, 20)))
        await asyncio.to_thread(old.entered.wait, 5)
        holder.swap(registry.load(2))  # a promotion while v1 is scoring
        second = asyncio.create_task(batcher.score(rows(30)))
        await asyncio.sleep(0.01)
        old.release.set()
        return [await first, await second]

    first, second = asyncio.run(with_batcher(batcher, body))
    assert first.model.version == 1
    assert first.probabilities.tolist() == pytest.approx([0.1, 0.2])
    assert second.model.version == 2
    assert second.probabilities.tolist() == pytest.approx([0.8])


def test_no_model_fails_every_request_of_the_batch() -> None:
    batcher = MicroBatcher(ModelHolder(), max_rows=1000, max_wait_s=0.0)

    async def body() -> list[BaseException | Scored]:
        tasks = [batcher.score(rows(1)), batcher.score(rows(2))]
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = asyncio.run(with_batcher(batcher, body))
    assert all(isinstance(r, NotReadyError) for r in results)


def test_a_lone_request_is_parsed_scored_and_answered_in_the_scoring_thread() -> None:
    gate = Gate()
    gate.release.set()
    batcher = MicroBatcher(holder_with(1, gate), max_rows=1000, max_wait_s=0.002)
    threads: dict[str, str] = {}

    def parse() -> Any:
        threads["parse"] = threading.current_thread().name
        return rows(7, 8)

    def answer(scored_rows: Any, scored: Scored) -> bytes:
        threads["answer"] = threading.current_thread().name
        return orjson.dumps(scored.probabilities.tolist())

    async def body() -> Any:
        with batcher.arriving():
            assert batcher.alone()
        return await batcher.score_alone(parse, answer)

    scored_rows, scored, answered = asyncio.run(with_batcher(batcher, body))
    assert threads["parse"].startswith("predict") and threads["answer"] == threads["parse"]
    assert len(scored_rows) == 2 and orjson.loads(answered) == pytest.approx([0.07, 0.08])
    assert scored.model.version == 1
    assert (batcher.batches, batcher.rows_scored) == (1, 2)


def test_requests_that_arrive_while_a_lone_one_is_scored_queue_behind_it() -> None:
    gate = Gate()
    batcher = MicroBatcher(holder_with(1, gate), max_rows=1000, max_wait_s=0.002)

    async def body() -> tuple[Any, Scored]:
        with batcher.arriving():
            assert batcher.alone()
        lone = asyncio.create_task(batcher.score_alone(lambda: rows(1), lambda r, s: b""))
        await asyncio.to_thread(gate.entered.wait, 5)
        with batcher.arriving():
            assert not batcher.alone()  # the thread is busy: this one takes the queue
        later = asyncio.create_task(batcher.score(rows(2, 3)))
        await asyncio.sleep(0.01)
        gate.release.set()
        return await lone, await later

    (_rows, lone, _), later = asyncio.run(with_batcher(batcher, body))
    assert lone.probabilities.tolist() == [0.01]
    assert later.probabilities.tolist() == pytest.approx([0.02, 0.03])
    assert [len(f) for f in gate.frames] == [1, 2]


def test_a_lone_request_that_gives_up_keeps_the_thread_counted_busy_until_it_is_free() -> None:
    gate = Gate()
    batcher = MicroBatcher(holder_with(1, gate), max_rows=1000, max_wait_s=0.002)

    async def body() -> list[bool]:
        lone = asyncio.create_task(batcher.score_alone(lambda: rows(1), lambda r, s: b""))
        await asyncio.to_thread(gate.entered.wait, 5)
        lone.cancel()  # its timeout: the model is still running in the thread
        with pytest.raises(asyncio.CancelledError):
            await lone
        seen = []
        with batcher.arriving():
            seen.append(batcher.alone())  # the thread is still busy
        queued = asyncio.create_task(batcher.score(rows(2)))  # so this one takes the queue
        gate.release.set()
        assert (await queued).probabilities.tolist() == [0.02]
        # Its batch has left and the thread is free: the next request is alone again.
        with batcher.arriving():
            seen.append(batcher.alone())
        return seen

    assert asyncio.run(with_batcher(batcher, body)) == [False, True]


def test_a_burst_of_requests_is_remembered_until_a_batch_leaves() -> None:
    """After a batch is answered its clients send their next requests: the first of them finds
    nothing in flight, yet must not go alone (it would leave the others a predict call of
    their own); it takes the queue, and the batcher waits for the others (bounded)."""
    gate = Gate()
    gate.release.set()
    batcher = MicroBatcher(holder_with(1, gate), max_rows=1000, max_wait_s=0.002)

    async def body() -> list[bool]:
        seen = []
        with batcher.arriving(), batcher.arriving(), batcher.arriving():
            pass  # three requests were in flight at once
        with batcher.arriving():
            seen.append(batcher.alone())
        await batcher.score(rows(1))  # a batch leaves with nothing else in flight
        with batcher.arriving():
            seen.append(batcher.alone())
        return seen

    assert asyncio.run(with_batcher(batcher, body)) == [False, True]


def test_a_lone_request_hears_the_parse_error_and_a_missing_model() -> None:
    batcher = MicroBatcher(ModelHolder(), max_rows=1000, max_wait_s=0.002)

    def bad() -> Any:
        raise validation.RequestError((("instances[0].tenure", "must be an integer"),))

    async def body() -> None:
        with pytest.raises(validation.RequestError):
            await batcher.score_alone(bad, lambda r, s: b"")
        with pytest.raises(NotReadyError):  # parsed, then no model to score with
            await batcher.score_alone(lambda: rows(1), lambda r, s: b"")
        with batcher.arriving():
            assert batcher.alone()  # nothing left counted busy

    asyncio.run(with_batcher(batcher, body))
