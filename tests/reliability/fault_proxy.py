"""A reverse proxy on 127.0.0.1 in front of a real `mlflow server` that counts the registry's
writes and, at the Nth, lets it commit upstream and then injects a fault: the registry's own
events decide the moment, never a sleep.

Faults (after the Nth write has committed on the server):
- kill: SIGKILL the client process, answer nothing;
- stop: SIGSTOP the client process (a hung run that still holds the lock);
- drop: close the connection without an answer (a lost response);
- stall: hold that answer and every later request until `release()` (a server that hangs
  after committing); they are then dropped;
- crash: `on_crash()` (the test kills the server with SIGKILL), answer nothing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_port

FAULTS = ("kill", "stop", "drop", "stall", "crash")


def is_write(method: str, path: str) -> bool:
    """A request that changes the store: every non-GET call of the REST and artifact APIs,
    except the searches MLflow sends as POST."""
    path = path.split("?")[0]
    return method != "GET" and path.startswith("/api/") and not path.endswith("/search")


def label(method: str, path: str, body: bytes) -> str:
    """`METHOD /path`, and for an alias write the alias (`... @champion`): what a test names
    a write by, whatever its place in the order."""
    text = f"{method} {path.split('?')[0]}"
    if not path.split("?")[0].endswith("/registered-models/alias"):
        return text
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    alias = query.get("alias", [""])[0]
    with contextlib.suppress(ValueError, AttributeError):
        alias = alias or str(json.loads(body or b"{}").get("alias", ""))
    return f"{text} @{alias}" if alias else text


@dataclass
class Armed:
    at: int  # fault at this write (1-based)
    fault: str
    pid: int | None = None  # the client to kill or stop
    on_crash: Callable[[], None] | None = None


@dataclass
class FaultProxy:
    upstream_port: int
    port: int = field(default_factory=free_port)
    writes: list[str] = field(default_factory=list)  # counted while armed or counting
    counting: bool = False
    armed: Armed | None = None
    fired_at: float | None = None  # time.time() of the fault
    # refuse_once(): the first request whose label matches is answered 503, not forwarded;
    # every matching request is counted (a client that retries sends it again).
    refusing: Callable[[str], bool] | None = None
    matched: list[str] = field(default_factory=list)
    _stalled: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def arm(self, armed: Armed) -> None:
        self.writes, self.armed, self.fired_at = [], armed, None
        self._stalled = threading.Event()

    def count(self) -> None:
        self.writes, self.armed, self.counting, self.fired_at = [], None, True, None

    def disarm(self) -> None:
        self.armed, self.counting = None, False

    def refuse_once(self, matches: Callable[[str], bool]) -> None:
        self.refusing, self.matched = matches, []

    def release(self) -> None:
        self._stalled.set()

    @property
    def stalling(self) -> bool:
        return self.fired_at is not None and self.armed is not None and not self._stalled.is_set()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        armed = self.armed
        if armed is not None and armed.fault == "stall" and self.fired_at is not None:
            self._stalled.wait(60)  # the server hangs: nothing is answered
            req.close_connection = True
            return
        if self._refused(req, body):
            return
        fire = False
        if (self.counting or armed is not None) and is_write(req.command, req.path):
            self.writes.append(label(req.command, req.path, body))
            fire = armed is not None and len(self.writes) == armed.at
        try:
            status, headers, payload = self._forward(req, body)
        except OSError:  # upstream down (crashed): as if the port were closed
            req.close_connection = True
            return
        if fire:
            assert armed is not None
            self.fired_at = time.time()
            self._fault(armed)
            req.close_connection = True
            return
        req.send_response(status)
        for key, value in headers:
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                req.send_header(key, value)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)

    def _refused(self, req: BaseHTTPRequestHandler, body: bytes) -> bool:
        text = label(req.command, req.path, body)
        if self.refusing is None or not req.path.startswith("/api/") or not self.refusing(text):
            return False
        self.matched.append(text)
        if len(self.matched) > 1:
            return False
        payload = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "refused once"}'
        req.send_response(503)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)
        return True

    def _fault(self, armed: Armed) -> None:
        if armed.fault == "kill" and armed.pid is not None:
            os.kill(armed.pid, signal.SIGKILL)
        elif armed.fault == "stop" and armed.pid is not None:
            os.kill(armed.pid, signal.SIGSTOP)
        elif armed.fault == "stall":
            self._stalled.wait(60)
        elif armed.fault == "crash" and armed.on_crash is not None:
            armed.on_crash()

    def _forward(
        self, req: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
            conn.request(req.command, req.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()
