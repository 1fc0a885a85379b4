"""The one exception-handler registry (serve/http_errors.py): each domain error answers with its own
status and headers, in our shape on our paths and in MLflow's on MLflow's."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve import http_errors
from serve.validation import RequestError

RAISED: dict[str, Exception] = {
    "too-large": http_errors.BodyTooLarge(10),
    "unauthenticated": http_errors.Unauthenticated("missing Authorization header"),
    "refused": http_errors.Refused(403, "invalid admin token"),
    "invalid": RequestError((("instances[0].tenure", "must be an integer"), ("x", "unknown"))),
    "not-ready": http_errors.NotReadyError("no model loaded"),
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    # The registry matches MLflow's paths exactly, as the service lists them (/invocations ...).
    mlflow_paths = {f"/mlflow/{name}" for name in RAISED}
    app = FastAPI(exception_handlers=http_errors.handlers(mlflow_paths, lambda _request: "loading"))

    async def raising(name: str) -> None:
        raise RAISED[name]

    app.get("/ours/{name}")(raising)
    app.get("/mlflow/{name}")(raising)
    return TestClient(app)


@pytest.mark.parametrize(
    ("name", "status", "body", "headers"),
    [
        ("too-large", 413,
         {"detail": "body: larger than 10 bytes (CHURN_MAX_BODY_BYTES)",
          "errors": [{"field": "body", "message": "larger than 10 bytes (CHURN_MAX_BODY_BYTES)"}]},
         {"connection": "close"}),
        ("unauthenticated", 401,
         {"detail": "Authorization: missing Authorization header",
          "errors": [{"field": "Authorization", "message": "missing Authorization header"}]},
         {"www-authenticate": "Bearer"}),
        ("refused", 403, {"detail": "invalid admin token"}, {}),
        ("invalid", 422,
         {"detail": "instances[0].tenure: must be an integer (and 1 more error)",
          "errors": [{"field": "instances[0].tenure", "message": "must be an integer"},
                     {"field": "x", "message": "unknown"}]},
         {}),
        ("not-ready", 503, {"ready": False, "detail": "loading"}, {}),
    ],
)  # fmt: skip
def test_our_paths_get_our_shape(
    client: TestClient, name: str, status: int, body: object, headers: dict[str, str]
) -> None:
    resp = client.get(f"/ours/{name}")
    assert (resp.status_code, resp.json()) == (status, body)
    assert headers.items() <= resp.headers.items()


@pytest.mark.parametrize(
    ("name", "status", "code", "message"),
    [
        ("too-large", 413, "INVALID_PARAMETER_VALUE",
         "body: larger than 10 bytes (CHURN_MAX_BODY_BYTES)"),
        ("unauthenticated", 401, "UNAUTHENTICATED", "missing Authorization header"),
        ("not-ready", 503, "TEMPORARILY_UNAVAILABLE", "no model loaded: loading"),
    ],
)  # fmt: skip
def test_mlflows_paths_get_mlflows_shape(
    client: TestClient, name: str, status: int, code: str, message: str
) -> None:
    resp = client.get(f"/mlflow/{name}")
    assert resp.status_code == status
    assert resp.json() == {"error_code": code, "message": message}


def test_an_unexpected_error_says_nothing_internal() -> None:
    app = FastAPI(exception_handlers=http_errors.handlers(set(), lambda _r: ""))

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError("/secret/path/in/a/traceback")

    resp = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert resp.status_code == 500
    assert "secret" not in resp.text
    assert resp.json()["detail"] == "request: internal error; the service log has the details"
