"""uvicorn's access log, one line per request as before, written in batches.

uvicorn writes (and flushes) each access-log line the moment a response starts: one `write` to
stdout per request, and one wake-up of whatever reads stdout (a terminal, `docker logs`' shim,
a log file). On this 2-core VM that costs far more than the line itself: in paired runs of
`bench/serve.py`'s servers, the server's CPU per request was 11% higher for 1,000-row bodies and
17% higher for single rows at 16 connections with the lines going to a file (or a pipe) than
with them going to /dev/null. So, as nginx does with `access_log ... buffer= flush=`, the lines
are kept and written together: every `interval_s` (0.1 s), or at once when `max_bytes` are
waiting. A line shows up at most 0.1 s late; none is dropped (the service's shutdown writes
what is left).

With CHURN_REQUEST_ID, `RequestIdMiddleware` takes each request's `X-Request-ID` (or makes one),
returns it in the answer, and `AccessLog` ends each access-log line with `request_id=<id>`, so a
client's complaint, the access log and the service log meet on one key.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import threading
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOGGER = "uvicorn.access"


class BatchedWrites:
    """A text stream that keeps what is written until `drain()` (or `max_bytes` wait)."""

    def __init__(self, stream: TextIO, max_bytes: int = 64 * 1024) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self._pending: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending.append(text)
            self._size += len(text)
            full = self._size >= self.max_bytes
        if full:
            self.drain()
        return len(text)

    def flush(self) -> None:
        """A no-op: `logging.StreamHandler` flushes after every line; `drain` writes them."""

    def drain(self) -> None:
        """Write everything kept so far, in one write."""
        with self._lock:
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._size = 0
        self.stream.write(text)
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno...: the stream's
        return getattr(self.stream, name)


REQUEST_ID_HEADER = "X-Request-ID"
# What is echoed and logged as given: short, and only characters that cannot forge a log line
# or a header. Anything else is replaced by a new id (never refused: the id is a courtesy).
_VALID_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    return os.urandom(16).hex()


class RequestIdMiddleware:
    """Sets `request_id` for the request (the access-log line is written inside it) and adds
    `X-Request-ID` to the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        text = given.decode("latin-1")
        rid = text if _VALID_ID.match(text) else new_request_id()
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class RequestIdFormatter(logging.Formatter):
    """The handler's own formatter, with ` request_id=<id>` at the end of the line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        rid = request_id.get()
        return line if rid is None else f"{line} request_id={rid}"


class AccessLog:
    """Batches the writes of the access logger's stream handlers while `run()` runs (and, with
    `request_ids`, ends each line with the request's id)."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = 0.1, request_ids: bool = False
    ) -> None:
        self.interval_s = interval_s
        self._installed: list[tuple[logging.StreamHandler[Any], BatchedWrites]] = []
        for handler in logger.handlers:
            if not isinstance(handler, logging.StreamHandler):
                continue
            if request_ids and not isinstance(handler.formatter, RequestIdFormatter):
                handler.setFormatter(RequestIdFormatter(handler.formatter or logging.Formatter()))
            stream = handler.stream
            if stream is not None and not isinstance(stream, BatchedWrites):
                batched = BatchedWrites(stream)
                handler.setStream(batched)
                self._installed.append((handler, batched))

    def drain(self) -> None:
        for _, batched in self._installed:
            batched.drain()

    async def run(self) -> None:
        """Write the kept lines every `interval_s`; on cancellation, the rest, and put the
        handlers' own streams back."""
        if not self._installed:
            return
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                self.drain()
        finally:
            self.drain()
            for handler, batched in self._installed:
                if handler.stream is batched:
                    handler.setStream(batched.stream)
            self._installed.clear()
