"""Every error answer of the service, in one registry.

A domain error carries its status (and headers); `handlers()` is the one exception-handler
registry `create_app` installs, looked up by class as Starlette does. Routes raise; none of
them writes an error body. Two shapes, chosen by the protocol of the path asked:

- ours: `{"detail": "<field>: <message>", "errors": [{"field", "message"}, ...]}` (`error_body`,
  documented as `ErrorBody`); the admin routes answer `{"detail": ...}` (`Refused`), and
  readiness `{"ready": false, "detail": ...}`;
- MLflow's, on its paths (/invocations, /ping, /version): `{"error_code", "message"}`.

Errors Starlette and FastAPI raise themselves (404, 405, request validation, an unexpected
exception) get our shape too. Nothing internal is ever in a body: no stack trace, no file path,
no exception text; the log has those.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any

import msgspec
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

JSON = "application/json"
# A request with thousands of bad rows gets the first errors, not a multi-megabyte answer.
MAX_ERRORS = 50
_MAX_SHOWN = 80

_encode = msgspec.json.Encoder().encode

Handler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


def error_body(*errors: tuple[str, str]) -> dict[str, Any]:
    """The one error shape of the API (`ErrorBody`): every (field, message) pair, the first as
    one line in `detail`."""
    shown = errors[:MAX_ERRORS]
    field, message = shown[0]
    detail = f"{field}: {message}"
    if len(errors) > 1:
        more = len(errors) - 1
        detail += f" (and {more} more error{'s' if more > 1 else ''})"
    return {"detail": detail, "errors": [{"field": f, "message": m} for f, m in shown]}


def json_response(content: Any, status_code: int = 200, **headers: str) -> Response:
    return Response(
        _encode(content), status_code=status_code, media_type=JSON, headers=headers or None
    )


def shown(text: str) -> str:
    """A client's text, cut to a length fit for a log line or a message."""
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


class NotReadyError(RuntimeError):
    """No model is loaded yet (raised by the holder, which does not know why: see `handlers`)."""


class ServiceError(Exception):
    """An answer other than 200. Not a frozen dataclass: Starlette sets attributes on the
    exceptions it handles."""

    status = 500
    error_code = "INTERNAL_ERROR"  # MLflow's name for the status class
    headers: Mapping[str, str] = {}

    def body(self) -> dict[str, Any]:
        return error_body(("request", self.message()))

    def message(self) -> str:
        """One line, for MLflow's `message`."""
        return str(self)


class FieldError(ServiceError):
    """One named part of the request is wrong."""

    def __init__(
        self, status: int, error_code: str, field: str, message: str, **headers: str
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.status, self.error_code, self.field, self.text = status, error_code, field, message
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body((self.field, self.text))


class BodyTooLarge(FieldError):
    def __init__(self, limit: int) -> None:
        # Closing stops uvicorn from reading (and discarding) the rest of the body.
        super().__init__(
            413, "INVALID_PARAMETER_VALUE", "body",
            f"larger than {limit} bytes (CHURN_MAX_BODY_BYTES)", Connection="close",
        )  # fmt: skip


class Unauthenticated(ServiceError):
    """A request without the right bearer token: always 401 (RFC 6750: a wrong token is
    `invalid_token`, 401, so a client knows to get a new one)."""

    status = 401
    error_code = "UNAUTHENTICATED"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = {"WWW-Authenticate": "Bearer"}

    def body(self) -> dict[str, Any]:
        return error_body(("Authorization", self.detail))


class Refused(ServiceError):
    """The admin routes' refusals (auth, webhook deliveries): `{"detail": ...}`."""

    def __init__(self, status: int, detail: str, **headers: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


class NotReady(ServiceError):
    """No model loaded yet, and why (`detail`)."""

    status = 503
    error_code = "TEMPORARILY_UNAVAILABLE"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"ready": False, "detail": self.detail}

    def message(self) -> str:
        return f"no model loaded: {self.detail}"


def handlers(
    mlflow_paths: Collection[str], not_ready_detail: Callable[[Request], str]
) -> dict[Any, Handler]:
    """The exception-handler registry: `FastAPI(exception_handlers=handlers(...))`.
    `not_ready_detail(request)` says why no model is loaded (the holder only knows that)."""

    def render(request: Request, exc: ServiceError) -> Response:
        if request.url.path in mlflow_paths:
            content: dict[str, Any] = {"error_code": exc.error_code, "message": exc.message()}
        else:
            content = exc.body()
        return json_response(content, exc.status, **exc.headers)

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return render(request, exc)

    async def not_ready(request: Request, exc: Exception) -> Response:
        return render(request, NotReady(not_ready_detail(request)))

    return {
        ServiceError: service_error,
        NotReadyError: not_ready,
        HTTPException: _http_error,
        RequestValidationError: _validation_error,
        Exception: _unexpected,
    }


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = request.method, shown(request.url.path)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        body = error_body(("path", f"no such endpoint {method} {path}; see /docs"))
    elif exc.status_code == 405:
        allowed = headers.get("Allow", "")
        body = error_body(("method", f"{method} is not allowed on {path}; allowed: {allowed}"))
    else:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        body = error_body(("request", detail))
    return json_response(body, exc.status_code, **headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: Sequence[tuple[str, str]] = [
        (".".join(str(p) for p in err.get("loc", ())) or "request", err["msg"])
        for err in exc.errors()
    ] or [("request", "invalid")]
    return json_response(error_body(*errors), 422)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback when it re-raises after this handler answers.
    log.error("%s %s failed: %s", request.method, shown(request.url.path), type(exc).__name__)
    return json_response(
        error_body(("request", "internal error; the service log has the details")), 500
    )
