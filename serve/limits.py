"""What bounds every request, and the errors nobody's route writes.

- A deadline per request (CHURN_REQUEST_TIMEOUT_S). A client that stalls while sending its body
  (slowloris) gets 408, a request the service cannot answer in time 503; either way the request
  is cancelled and its worker freed instead of held for as long as the client likes.
- Bodies are JSON: a request body declared as another media type, or compressed, is 415 (it
  would otherwise be parsed as JSON and reported as "not valid JSON", which misleads).
- Errors Starlette and FastAPI raise themselves (404, 405, request validation, an unexpected
  exception) get the routes' error format, `{"detail": "<field>: <message>", "errors": [...]}`,
  so a client parses one shape. Nothing internal is ever in a body: no stack trace, no file path,
  no exception text; the log has those.

`install(app, settings)` wires all of it; nothing else in the service needs to know.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.settings import ServeSettings

log = logging.getLogger(__name__)

JSON_MEDIA_TYPES = ("application/json",)
_MAX_SHOWN = 80


def error_body(field: str, message: str) -> dict[str, Any]:
    """The one error shape of the API (serve.schema.ErrorBody)."""
    return {"detail": f"{field}: {message}", "errors": [{"field": field, "message": message}]}


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


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
            where = f"{scope['method']} {_shown(scope.get('path', ''))}"
            if started:  # headers are out: all we can do is end the connection
                log.warning("%s: cancelled after %g s mid-response", where, self.seconds)
                return
            if not body_read:
                log.info("%s: body not received within %g s", where, self.seconds)
                await _send_json(
                    send,
                    408,
                    error_body(
                        "body",
                        f"not received within {self.seconds:g} s (CHURN_REQUEST_TIMEOUT_S)",
                    ),
                )
            else:
                log.warning("%s: not answered within %g s", where, self.seconds)
                await _send_json(
                    send,
                    503,
                    error_body(
                        "request",
                        f"not answered within {self.seconds:g} s (CHURN_REQUEST_TIMEOUT_S); "
                        "retry later",
                    ),
                )


class JsonBodyMiddleware:
    """415 for a request body declared as anything but JSON, or compressed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_body(scope):
            headers = dict(scope["headers"])
            declared = headers.get(b"content-type")
            encoding = headers.get(b"content-encoding", b"identity").strip().lower()
            problem: tuple[str, str] | None = None
            if declared is not None:
                media = declared.split(b";")[0].strip().lower().decode("latin-1")
                if media not in JSON_MEDIA_TYPES and not media.endswith("+json"):
                    problem = (
                        "Content-Type",
                        f"must be application/json; got {_shown(media)!r}",
                    )
            if problem is None and encoding != b"identity":
                problem = (
                    "Content-Encoding",
                    f"not supported; got {_shown(encoding.decode('latin-1'))!r} "
                    "(send the JSON uncompressed)",
                )
            if problem is not None:
                await _send_json(send, 415, error_body(*problem))
                return
        await self.app(scope, receive, send)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = request.method, _shown(request.url.path)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        body = error_body("path", f"no such endpoint {method} {path}; see /docs")
    elif exc.status_code == 405:
        allowed = headers.get("Allow", "")
        body = error_body("method", f"{method} is not allowed on {path}; allowed: {allowed}")
    else:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        body = error_body("request", detail)
    return _json(exc.status_code, body, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in err.get("loc", ())) or "request", "message": err["msg"]}
        for err in exc.errors()
    ] or [{"field": "request", "message": "invalid"}]
    first = errors[0]
    return _json(422, {"detail": f"{first['field']}: {first['message']}", "errors": errors[:50]})


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback when it re-raises after this handler answers.
    log.error("%s %s failed: %s", request.method, _shown(request.url.path), type(exc).__name__)
    return _json(500, error_body("request", "internal error; the service log has the details"))


def install(app: FastAPI, settings: ServeSettings) -> None:
    """Add the limits and error handlers to `app`. Call it before adding the metrics middleware,
    so that the metrics count the 408/415/503 answers given here."""
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(RequestTimeoutMiddleware, seconds=settings.request_timeout_s)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
