"""Attacks below the application, against the real service started with `make serve`'s command.

Each test names the protection it proves; removing it makes the test fail:
- request-head size limit (serve/protocol.py, CHURN_MAX_HEADER_BYTES): a client sending a 100 MB
  header is answered 431 and cut off after 64 KiB, while /health keeps answering other clients
  at once and the process does not grow (uvicorn's httptools parser has no limit: the event loop
  was held for seconds and ~200 MB allocated);
- request-head time limit (serve/protocol.py, CHURN_HEADER_TIMEOUT_S): a head trickled at one
  byte a second is answered 408 and its connection closed (uvicorn has no such timeout), while a
  kept-alive connection idle for longer than the limit still serves its next request;
- webhook replay guard (serve/security.py DeliveryLog): a captured, correctly signed delivery
  sent again is acknowledged as a duplicate and not acted on.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from serve.security import sign
from tests.reliability.conftest import WEBHOOK_SECRET, Stack

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 10.0  # CHURN_HEADER_TIMEOUT_S's default: the stack does not set it
MAX_HEADER_BYTES = 64 * 1024  # CHURN_MAX_HEADER_BYTES's default


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@dataclass
class Attack:
    sent: int = 0
    answer: bytes = b""
    closed_after_s: float | None = None
    error: str = ""


def _read_answer(sock: socket.socket, attack: Attack, began: float) -> None:
    """Read what the server says until it closes the connection."""
    try:
        while chunk := sock.recv(65536):
            attack.answer += chunk
    except OSError as exc:
        attack.error = attack.error or type(exc).__name__
    attack.closed_after_s = time.monotonic() - began


def huge_header(url: str, megabytes: int, attack: Attack) -> None:
    began = time.monotonic()
    with socket.create_connection(_address(url), timeout=30) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: churn\r\nX-Padding: ")
            chunk = b"a" * (1 << 20)
            for _ in range(megabytes):
                sock.sendall(chunk)
                attack.sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except OSError as exc:  # the server closed the connection: the point
            attack.error = type(exc).__name__
        _read_answer(sock, attack, began)


def trickled_header(url: str, attack: Attack, give_up_s: float) -> None:
    began = time.monotonic()
    head = b"GET /health HTTP/1.1\r\nHost: churn\r\nX-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    with socket.create_connection(_address(url), timeout=give_up_s) as sock:
        try:
            for byte in head:
                if time.monotonic() - began > give_up_s:
                    break
                sock.sendall(bytes([byte]))
                attack.sent += 1
                time.sleep(1.0)
        except OSError as exc:
            attack.error = type(exc).__name__
        _read_answer(sock, attack, began)


@dataclass
class Probe:
    """/health for another client, every 50 ms, while an attack runs."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run_while(self, url: str, attacker: threading.Thread, limit_s: float) -> None:
        """Probe while the attack lasts (at least 20 times: a refused attack ends at once)."""
        deadline = time.monotonic() + limit_s
        with httpx.Client(timeout=10) as client:
            while (attacker.is_alive() or len(self.latencies) < 20) and time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    if client.get(f"{url}/health").status_code != 200:
                        self.failures.append("not 200")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                self.latencies.append(time.monotonic() - began)
                time.sleep(0.05)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a kept-alive connection."""
    answer = b""
    while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
         if line.startswith(b"content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_a_huge_header_is_cut_off_and_health_stays_fast(stack: Stack) -> None:
    service = stack.service
    rss_before = service.rss_mb()
    attack, probe = Attack(), Probe()
    attacker = threading.Thread(target=huge_header, args=(service.url, 100, attack), daemon=True)
    attacker.start()
    probe.run_while(service.url, attacker, limit_s=60)
    attacker.join(timeout=30)
    grew_mb = service.rss_mb() - rss_before
    print(
        f"\nhuge header: {attack.sent / 2**20:.0f} MiB sent before the server closed "
        f"({attack.error}); /health worst {max(probe.latencies, default=0.0):.3f} s over "
        f"{len(probe.latencies)} probes; RSS {grew_mb:+.0f} MB"
    )
    assert not attacker.is_alive()
    assert status_of(attack.answer) == 431 or attack.error, attack.answer[:200]
    if attack.answer:
        assert b"CHURN_MAX_HEADER_BYTES" in attack.answer, attack.answer[:300]
    # Cut off early: far less than the 100 MiB reached the server (socket buffers hold a few).
    assert attack.sent < 32 * 2**20
    assert probe.failures == []
    assert max(probe.latencies, default=0.0) < 2.0, probe.latencies
    assert grew_mb < 50


def test_a_trickled_header_is_timed_out_and_an_idle_keepalive_is_not(stack: Stack) -> None:
    service = stack.service
    attack, probe = Attack(), Probe()
    give_up_s = HEADER_TIMEOUT_S + 20  # today's code never closes it: stop sending then
    attacker = threading.Thread(
        target=trickled_header, args=(service.url, attack, give_up_s), daemon=True
    )
    attacker.start()
    # Meanwhile a kept-alive connection idles longer than the head limit between two requests:
    # the limit counts from the first byte of a head, so it must still be served.
    with socket.create_connection(_address(service.url), timeout=10) as sock:
        request = b"GET /health HTTP/1.1\r\nHost: churn\r\n\r\n"
        sock.sendall(request)
        first = read_response(sock)
        probe.run_while(service.url, attacker, limit_s=HEADER_TIMEOUT_S + 2)
        sock.sendall(request)
        second = read_response(sock)
    attacker.join(timeout=give_up_s + 5)
    closed = "never" if attack.closed_after_s is None else f"after {attack.closed_after_s:.1f} s"
    print(
        f"\ntrickled header: closed {closed}, {attack.sent} bytes sent; /health worst "
        f"{max(probe.latencies, default=0.0):.3f} s"
    )
    assert status_of(first) == status_of(second) == 200, (first[:100], second[:100])
    assert status_of(attack.answer) == 408, attack.answer[:200]
    assert b"CHURN_HEADER_TIMEOUT_S" in attack.answer
    assert attack.closed_after_s is not None
    assert HEADER_TIMEOUT_S - 1 < attack.closed_after_s < HEADER_TIMEOUT_S + 5
    assert probe.failures == []
    assert max(probe.latencies, default=0.0) < 2.0


def test_an_ordinary_large_head_is_served(stack: Stack) -> None:
    """The limit leaves room for real clients: 48 KiB of cookies and tokens are fine."""
    cookies = "; ".join(f"c{i}={'x' * 1000}" for i in range(48))
    resp = httpx.get(f"{stack.service.url}/health", headers={"Cookie": cookies}, timeout=10)
    assert resp.status_code == 200
    assert len(cookies) < MAX_HEADER_BYTES


def _alias_event() -> bytes:
    data = {"name": "churn", "alias": "champion", "version": "1"}
    return orjson.dumps({"entity": "model_version_alias", "action": "created", "data": data})


def _signed(body: bytes, delivery_id: str) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(WEBHOOK_SECRET, delivery_id, ts, body),
    }


def test_a_replayed_webhook_is_acknowledged_and_ignored(stack: Stack) -> None:
    url = f"{stack.service.url}/webhooks/mlflow"
    body = _alias_event()
    captured = _signed(body, f"replay-{time.time_ns()}")
    first = httpx.post(url, content=body, headers=captured, timeout=10)
    assert (first.status_code, first.json()["accepted"]) == (202, True)
    replays = [httpx.post(url, content=body, headers=captured, timeout=10) for _ in range(20)]
    shown = captured["X-MLflow-Delivery-Id"]
    assert {(r.status_code, r.content) for r in replays} == {
        (200, orjson.dumps({"accepted": False, "detail": f"duplicate delivery {shown!r}; ignored"}))
    }
    # A new delivery of the same event (another id) is still acted on.
    fresh = httpx.post(url, content=body, headers=_signed(body, f"new-{time.time_ns()}"))
    assert fresh.status_code == 202
