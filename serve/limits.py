"""What bounds every request.

- A deadline per request (CHURN_REQUEST_TIMEOUT_S). A client that stalls while sending its body
  (slowloris) gets 408, a request the service cannot answer in time 503; either way the request
  is cancelled and its worker freed instead of held for as long as the client likes.
- Bodies are JSON: a request body declared as another media type, or compressed, is 415 (it
  would otherwise be parsed as JSON and reported as "not valid JSON", which misleads).
- A body is read up to a limit (`read_body`): over it, 413 before the rest is read.

`install(app, settings)` adds the middleware; the error answers are serve/http_errors.py's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.config import ServeSettings
from serve.http_errors import BodyTooLarge, error_body, shown

log = logging.getLogger(__name__)

JSON_MEDIA_TYPES = ("application/json",)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    content = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    length = headers.get(b"content-length", b"").strip()
    return b"transfer-encoding" in headers or (length.isdigit() and int(length) > 0)


class RequestTimeoutMiddleware:
    """Cancel a request that is not answered within `seconds` and say why (408 or 503)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read = not _has_body(scope)
        started = False

        async def receive_body() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def send_started(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        deadline = asyncio.timeout(self.seconds)
        try:
            async with deadline:
                await self.app(scope, receive_body, send_started)
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the app's own, not ours
            await self._timed_out(scope, send, started, body_read)

    async def _timed_out(self, scope: Scope, send: Send, started: bool, body_read: bool) -> None:
        """408 while the body was still arriving, 503 once it had; nothing once headers left."""
        where = f"{scope['method']} {shown(scope.get('path', ''))}"
        limit = f"within {self.seconds:g} s (CHURN_REQUEST_TIMEOUT_S)"
        if started:  # headers are out: all we can do is end the connection
            log.warning("%s: cancelled after %g s mid-response", where, self.seconds)
        elif not body_read:
            log.info("%s: body not received within %g s", where, self.seconds)
            await _send_json(send, 408, error_body(("body", f"not received {limit}")))
        else:
            log.warning("%s: not answered within %g s", where, self.seconds)
            await _send_json(
                send, 503, error_body(("request", f"not answered {limit}; retry later"))
            )


class JsonBodyMiddleware:
    """415 for a request body declared as anything but JSON, or compressed."""

    def __init__(self, app: ASGIApp, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.exempt = exempt  # paths that judge their own media types (/invocations: CSV too)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_body(scope) and scope["path"] not in self.exempt:
            headers = dict(scope["headers"])
            declared = headers.get(b"content-type")
            encoding = headers.get(b"content-encoding", b"identity").strip().lower()
            problem: tuple[str, str] | None = None
            if declared is not None:
                media = declared.split(b";")[0].strip().lower().decode("latin-1")
                if media not in JSON_MEDIA_TYPES and not media.endswith("+json"):
                    problem = (
                        "Content-Type",
                        f"must be application/json; got {shown(media)!r}",
                    )
            if problem is None and encoding != b"identity":
                problem = (
                    "Content-Encoding",
                    f"not supported; got {shown(encoding.decode('latin-1'))!r} "
                    "(send the JSON uncompressed)",
                )
            if problem is not None:
                await _send_json(send, 415, error_body(problem))
                return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def install(app: FastAPI, settings: ServeSettings) -> None:
    """Add the limits to `app`. Call it before adding the metrics middleware,
    so that the metrics count the 408/415/503 answers given here."""
    app.add_middleware(JsonBodyMiddleware, exempt=frozenset({"/invocations"}))
    app.add_middleware(RequestTimeoutMiddleware, seconds=settings.request_timeout_s)
