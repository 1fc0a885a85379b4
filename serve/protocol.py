"""uvicorn's HTTP protocol with the two limits it lacks: the size and the time of a request head.

uvicorn's httptools parser accepts a request head of any size, and uvicorn has no timeout for
one. A single client sending a 100 MB header held the event loop (the parser keeps re-joining the
growing value) so that /health took 3-7 s for everyone else, past Docker's and Kubernetes' probe
timeouts; a client trickling its head at 1 byte/s kept its connection (and the slot) forever.

Here a head larger than CHURN_MAX_HEADER_BYTES is answered 431 and the connection closed; a head
not complete within CHURN_HEADER_TIMEOUT_S of the connection opening (or of the first byte of a
later request on a kept-alive connection) is answered 408 and closed, as nginx's
`large_client_header_buffers` and `client_header_timeout` do. Bodies are bounded elsewhere
(serve/limits.py). The fast path only adds a counter update per read.

Selected on the command line: `uvicorn --http serve.protocol:LimitedHttpToolsProtocol ...`
(the Makefile's SERVE_CMD, which the Dockerfile's CMD repeats and a test compares).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serve.config import ServeSettings
from serve.http_errors import error_body

log = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@functools.cache
def head_limits() -> tuple[int, float]:
    """(max head bytes, head timeout in seconds), read once per process from the settings the
    app factory has already validated."""
    settings = ServeSettings()
    return settings.max_header_bytes, settings.header_timeout_s


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses an oversized or too slow request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head_bytes, self._head_timeout_s = head_limits()
        # Bytes read of the request head being received; None while a body or response is under
        # way (between the end of a head and the end of its message).
        self._head_bytes: int | None = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
            if self._head_timer is None:  # the first byte of a kept-alive connection's next head
                self._arm_head_timer()
        super().data_received(data)
        # Checked after parsing: one read may hold a small head and the start of a large body.
        if self._head_bytes is not None and self._head_bytes > self._max_head_bytes:
            self._refuse(
                431,
                f"request head larger than {self._max_head_bytes} bytes "
                "(CHURN_MAX_HEADER_BYTES); send fewer or smaller headers",
            )

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # the next bytes on this connection start a new head
        super().on_message_complete()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(
            408,
            f"request head not received within {self._head_timeout_s:g} s (CHURN_HEADER_TIMEOUT_S)",
        )

    def _refuse(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        self._disarm_head_timer()
        client = "{}:{}".format(*self.client) if self.client else "client"
        log.warning("%s: %d, %s; connection closed", client, status, message)
        # A pipelined request may still be answering on this connection: its response must not
        # be interleaved with ours, so the connection is only closed.
        if self.cycle is None or self.cycle.response_complete:
            body = orjson.dumps(error_body(("headers", message)))
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
            )
        self.transport.close()
