"""The framework's floor: what the same uvicorn command line does with (almost) no work per request.

`make bench` runs each of these beside our service, on our exact command line (`make serve`'s
uvicorn flags and HTTP protocol, only the app factory swapped), with the same one-row bodies,
and prints ours as a share of each: how much of the framework's ceiling our whole scoring path
(validation, the micro-batcher, the model, the access log, the monitoring) leaves standing.

- `fastapi_app`: one FastAPI route that reads and parses the request's JSON body and returns a
  fixed answer of our answer's shape: the cost of FastAPI + uvicorn + JSON alone.
- `asgi_app`: the same without FastAPI or Starlette, a bare ASGI callable: the cost of uvicorn
  and its HTTP parser alone.

Both answer GET /ready (the bench's start -> ready probe) and POST /predict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

# A fixed answer the size and shape of ours for one row.
ANSWER = orjson.dumps(
    {
        "predictions": [{"customerID": "0000-FLOOR", "churn_probability": 0.5, "churn": False}],
        "model": {"name": "churn", "version": 0, "run_id": "floor"},
    }
)
READY = b'{"status": "ready"}'
JSON_HEADERS = [(b"content-type", b"application/json")]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def fastapi_app() -> FastAPI:
    """A FastAPI app whose /predict parses the body and answers `ANSWER` (uvicorn --factory).
    (FastAPI reads the route's annotations from this module's globals: imported at the top.)"""
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> Response:
        return Response(READY, media_type="application/json")

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        orjson.loads(await request.body())
        return Response(ANSWER, media_type="application/json")

    return app


def asgi_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A bare ASGI app: /predict reads and parses the body, answers `ANSWER` (uvicorn --factory)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]  # startup | shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "POST":
            orjson.loads(body)
        answer = ANSWER if scope["path"] == "/predict" else READY
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": answer})

    return app


# name in the table -> the factory uvicorn imports
FLOORS = {
    "fastapi": "bench.floor:fastapi_app",
    "asgi": "bench.floor:asgi_app",
}
