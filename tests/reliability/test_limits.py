"""Limits, enforced by the real service before it spends memory or time on a request.

Each test names the protection it proves; removing it makes the test fail:
- body limit checked against Content-Length before reading (serve/limits.py `read_body`): a
  declared 100 MB body is refused at once, not after the client sent it;
- body limit while streaming (no Content-Length): reading stops at the limit;
- batch size (CHURN_MAX_BATCH_SIZE): 422 naming `instances`, before any row is scored;
- request deadline (serve/limits.py RequestTimeoutMiddleware): a client that stalls mid-body
  gets 408 and frees its worker; a request the model cannot answer in time gets 503;
- error bodies (serve/http_errors.py handlers): 404/405/500 are JSON naming the problem, with no
  stack trace or path;
- the admin token is compared in constant time (serve/security.py `check_bearer`).
"""

from __future__ import annotations

import contextlib
import hmac
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serve.api_models import EXAMPLE_ROWS
from serve.app import create_app
from serve.config import ServeSettings
from serve.security import AuthError, check_bearer
from tests.reliability.conftest import MAX_BATCH_SIZE, MAX_BODY_BYTES, REQUEST_TIMEOUT_S, Stack
from tests.reliability.fuzz_checks import leaks
from tests.serve_helpers import FakeRegistry, wait_until

pytestmark = pytest.mark.integration


def raw_exchange(url: str, request: bytes, wait_s: float) -> tuple[bytes, float]:
    """Send `request` bytes, then read until the server closes or `wait_s` passes."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"}" in answer.split(b"\r\n\r\n", 1)[1]:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return answer, time.monotonic() - start


def status_and_body(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode()


def test_a_declared_huge_body_is_refused_before_it_is_sent(stack: Stack) -> None:
    request = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n" + b'{"instances": ['
    )
    answer, seconds = raw_exchange(stack.service.url, request, wait_s=REQUEST_TIMEOUT_S + 5)
    status, body = status_and_body(answer)
    assert status == 413, answer[:300]
    assert f"larger than {MAX_BODY_BYTES} bytes (CHURN_MAX_BODY_BYTES)" in body
    # Answered at once: not after a deadline, not after reading 100 MB that never comes.
    assert seconds < REQUEST_TIMEOUT_S / 2


def test_a_streamed_body_is_cut_off_at_the_limit(stack: Stack) -> None:
    """No Content-Length (chunked): the service stops reading at the limit, answers 413 and
    closes the connection instead of reading (and discarding) whatever else the client sends."""
    host, port = stack.service.url.removeprefix("http://").split(":")
    chunk = b" " * (32 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(2_000):  # 64 MB if the service read it all
                sock.sendall(frame)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the service hung up: what we want
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while data := sock.recv(65536):
                answer += data
    status, body = status_and_body(answer)
    assert status == 413 and "CHURN_MAX_BODY_BYTES" in body
    assert sent < 100 * MAX_BODY_BYTES, f"the service read {sent} bytes before closing"


def test_a_batch_over_the_maximum_is_refused_naming_instances(stack: Stack) -> None:
    stack.serve(stack.good[0])
    rows = [EXAMPLE_ROWS[i % 2] for i in range(MAX_BATCH_SIZE + 1)]
    resp = stack.service.post("/predict", json={"instances": rows})
    assert resp.status_code == 422
    assert resp.json()["errors"] == [
        {
            "field": "instances",
            "message": f"must hold 1 to {MAX_BATCH_SIZE} rows; got {MAX_BATCH_SIZE + 1}",
        }
    ]
    assert stack.service.post("/predict", json={"instances": rows[:-1]}).status_code == 200


def test_a_client_stalling_mid_body_gets_408_and_others_are_served(stack: Stack) -> None:
    stack.serve(stack.good[0])
    request = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"instances": ['
    )
    result: list[tuple[bytes, float]] = []
    stalled = threading.Thread(
        target=lambda: result.append(
            raw_exchange(stack.service.url, request, wait_s=REQUEST_TIMEOUT_S + 10)
        )
    )
    stalled.start()
    time.sleep(0.3)
    # Meanwhile the service answers everyone else at once.
    ok = stack.service.post("/predict", json={"instances": EXAMPLE_ROWS})
    assert ok.status_code == 200 and ok.elapsed.total_seconds() < REQUEST_TIMEOUT_S
    stalled.join(timeout=REQUEST_TIMEOUT_S + 15)
    [(answer, seconds)] = result
    status, body = status_and_body(answer)
    assert status == 408, answer[:300]
    assert f"not received within {REQUEST_TIMEOUT_S:g} s" in body
    assert REQUEST_TIMEOUT_S - 0.5 < seconds < REQUEST_TIMEOUT_S + 5


def test_unknown_paths_and_methods_get_json_naming_the_problem(stack: Stack) -> None:
    resp = stack.service.get("/predictions")
    assert resp.status_code == 404
    assert resp.json()["errors"] == [
        {"field": "path", "message": "no such endpoint GET /predictions; see /docs"}
    ]
    resp = httpx.delete(f"{stack.service.url}/health")
    assert resp.status_code == 405 and resp.headers["allow"] == "GET"
    assert resp.json()["detail"] == "method: DELETE is not allowed on /health; allowed: GET"
    resp = stack.service.post("/predict", content=b"a=1", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415
    assert resp.json()["detail"] == "Content-Type: must be application/json; got 'text/plain'"


# ---------------------------------------------------------------------------------------------
# What the real service cannot be made to do on demand (a model that hangs or raises), with the
# same app in-process.


class Stuck:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        time.sleep(self.seconds)
        return np.full(len(data), 0.5)


class Broken:
    def predict(self, data: pd.DataFrame) -> np.ndarray:
        raise ValueError(f"boom in {__file__} with {data.shape}")


def _client(predictor: Any, **settings: Any) -> TestClient:
    registry = FakeRegistry()
    registry.add(1, champion=True)
    registry.predictors[1] = predictor
    values = {"tracking_uri": "sqlite:///fake.db", "reload_interval": 0, **settings}
    # The 500 answer is what is tested, not the exception behind it.
    return TestClient(
        create_app(ServeSettings(**values), registry=registry), raise_server_exceptions=False
    )


def test_a_request_the_model_cannot_answer_in_time_gets_503() -> None:
    with _client(Stuck(3.0), request_timeout_s=0.5) as client:
        assert wait_until(lambda: client.get("/ready").status_code == 200, 5)
        start = time.monotonic()
        resp = client.post("/predict", json=EXAMPLE_ROWS[0])
        assert time.monotonic() - start < 2.5
        assert resp.status_code == 503
        assert resp.json()["detail"] == (
            "request: not answered within 0.5 s (CHURN_REQUEST_TIMEOUT_S); retry later"
        )


def test_an_unexpected_error_is_a_json_500_without_internals() -> None:
    with _client(Broken()) as client:
        assert wait_until(lambda: client.get("/ready").status_code == 200, 5)
        resp = client.post("/predict", json=EXAMPLE_ROWS[0])
    assert resp.status_code == 500
    message = "internal error; the service log has the details"
    assert resp.json() == {
        "detail": f"request: {message}",
        "errors": [{"field": "request", "message": message}],
    }
    assert leaks(resp.text) is None


def test_the_admin_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every well-formed bearer token reaches hmac.compare_digest: no early exit on length or
    prefix, which would let response times reveal the token byte by byte."""
    token = "s3cret-admin-token"
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for guess in ("x", "s3cret", "s3cret-admin-tokeX", "s3cret-admin-token-and-more"):
        with pytest.raises(AuthError) as excinfo:
            check_bearer(f"Bearer {guess}", token)
        assert excinfo.value.status == 403
    check_bearer(f"bearer {token}", token)
    assert [a for a, _ in compared] == [
        b"x",
        b"s3cret",
        b"s3cret-admin-tokeX",
        b"s3cret-admin-token-and-more",
        token.encode(),
    ]
    assert {b for _, b in compared} == {token.encode()}


# ---------------------------------------------------------------------------------------------
# Not ready: the answers say why, without where the store lives on this machine.


@pytest.mark.parametrize("store", ["empty", "unopenable"])
def test_not_ready_answers_name_the_problem_without_paths(
    store: str, tmp_path: Path, template_db: Path
) -> None:
    """Protection proved: serve/model_source.py and serve/reloader.py pass store URIs and error
    messages through churn.tracking.hide_paths. Without it /ready's 503 (and /model, and
    /predict's 503) show sqlite:////<tmp_path>/srv/private-store/mlflow.db."""
    import mlflow

    private = tmp_path / "srv" / "private-store"
    private.mkdir(parents=True)
    db = private / "mlflow.db"
    if store == "empty":
        shutil.copy(template_db, db)
    else:  # a database file that is not one: every read fails
        db.write_bytes(b"not a database" * 100)
    settings = ServeSettings(tracking_uri=f"sqlite:///{db}", reload_interval=0.2)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:

            def reason() -> str | None:
                info = client.get("/model").json()["reload"]
                last = info.get("last_error") or {}
                return info.get("waiting") or last.get("message")

            assert wait_until(lambda: reason() is not None, 30, 0.1), client.get("/model").text
            answers = {
                "/ready": client.get("/ready"),
                "/model": client.get("/model"),
                "/predict": client.post("/predict", json=EXAMPLE_ROWS[0]),
            }
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    assert answers["/ready"].status_code == 503
    assert answers["/predict"].status_code == 503
    detail = answers["/ready"].json()["detail"]
    if store == "empty":
        assert detail.startswith(
            "model 'churn' is not in the registry at sqlite:///…/mlflow.db: run the pipeline"
        ), detail
    else:
        assert detail.endswith("; retrying"), detail
    for path, resp in answers.items():
        text = resp.text
        assert str(tmp_path) not in text and "private-store" not in text, (path, text)
        assert leaks(text) is None, (path, text)
        assert "\n" not in detail
