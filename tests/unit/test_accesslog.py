"""The access log's lines are kept and written together (serve/accesslog.py): none lost, in
order, one write per drain, none late by more than the interval, the stream restored after."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from serve.accesslog import AccessLog, BatchedWrites


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def access_logger(stream: CountingStream, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers = [logging.StreamHandler(stream)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def test_lines_wait_for_the_drain_and_go_out_in_one_write_in_order() -> None:
    stream = CountingStream()
    logger = access_logger(stream, "test.access.drain")
    log = AccessLog(logger)
    for i in range(20):
        logger.info("request %d", i)
    assert stream.getvalue() == "" and stream.writes == 0
    log.drain()
    assert stream.getvalue() == "".join(f"request {i}\n" for i in range(20))
    assert stream.writes == 1
    log.drain()  # nothing kept: nothing written
    assert stream.writes == 1


def test_a_full_buffer_is_written_at_once() -> None:
    stream = CountingStream()
    batched = BatchedWrites(stream, max_bytes=100)  # type: ignore[arg-type]
    batched.write("x" * 60)
    assert stream.writes == 0
    batched.write("y" * 60)  # 120 bytes kept: over the bound
    assert stream.getvalue() == "x" * 60 + "y" * 60


def test_run_writes_within_the_interval_then_the_rest_and_gives_the_stream_back() -> None:
    stream = CountingStream()
    logger = access_logger(stream, "test.access.run")
    handler = logger.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    log = AccessLog(logger, interval_s=0.05)
    assert isinstance(handler.stream, BatchedWrites)

    async def body() -> str:
        task = asyncio.create_task(log.run())
        logger.info("first")
        for _ in range(100):  # bounded: 2 s
            await asyncio.sleep(0.02)
            if stream.getvalue():
                break
        seen = stream.getvalue()
        logger.info("last")  # kept when the service stops: written by the shutdown
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    assert asyncio.run(body()) == "first\n"
    assert stream.getvalue() == "first\nlast\n"
    assert handler.stream is stream
    logger.info("after")  # unbatched again
    assert stream.getvalue().endswith("after\n")


def test_a_logger_without_stream_handlers_is_left_alone() -> None:
    logger = logging.getLogger("test.access.none")
    logger.handlers = [logging.NullHandler()]
    asyncio.run(AccessLog(logger).run())  # returns at once: nothing to batch
    assert isinstance(logger.handlers[0], logging.NullHandler)
