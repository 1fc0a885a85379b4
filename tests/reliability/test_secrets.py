"""A tracking URI with a password in it (`http://churn:<secret>@host:port`), against a server that
checks it: the stack's `mlflow server` behind a reverse proxy that lets through only requests
carrying those credentials as HTTP basic auth (as nginx's auth_basic in front of MLflow does).

Protection proved; what fails without it:
- credentials in the URI work for the scripts as for the service: they leave the URI for
  MLflow's MLFLOW_TRACKING_USERNAME / _PASSWORD in one place (churn/settings.py
  `use_credentials`), and the scripts' /health check sends them (churn/tracking.py). Before,
  urllib read `churn:<secret>@127.0.0.1` as a host name: every script said "unreachable";
- no output shows the password (churn/redact.py, applied at each boundary): every endpoint's
  body through a cold start, serving, a failing, a refusing and a vanished server; the service's
  log at DEBUG; every script's stdout and stderr on success and for each failure class (exit 2,
  3, 4 refused, 4 failing, 4 unreachable), in this process and in a fresh one. Before,
  /model's last_error, /ready, /admin/reload and the log quoted MLflow's "API request to
  http://churn:<secret>@... failed", and each script's error line the URI itself.
"""

from __future__ import annotations

import base64
import http.client
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import promote
import rollback
from churn.__main__ import main as churn_main
from serve.api_models import EXAMPLE_ROWS
from tests.conftest import ROOT, free_port, wait_for_http
from tests.reliability.conftest import ADMIN_TOKEN, Service, Stack, _service
from tests.serve_helpers import wait_until

pytestmark = pytest.mark.integration

USER = "churn"
SECRET = "Zq7-s3cret-4Kp"
WRONG = "Wr0ng-pa55-9x"
# Headers a proxy does not pass on (hop-by-hop), plus the credentials it checked itself.
_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "trailer",
     "upgrade", "proxy-authorization", "authorization"}
)  # fmt: skip


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def forms(*secrets: str) -> list[str]:
    """How a password could show up: as is, URL-quoted, inside a basic-auth header."""
    return [f for s in secrets for f in (s, quote(s, safe=""), basic(USER, s).split()[1])]


class AuthProxy:
    """A reverse proxy on 127.0.0.1 to `upstream_port`, requiring USER:SECRET (basic auth).
    `failing`: it answers 503 to API calls (a broken server behind a healthy front);
    `expected`: the credentials it accepts (change them to refuse everyone)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.expected = basic(USER, SECRET)
        self.failing = False
        self.allowed = 0
        self.refused = 0
        self._server: ThreadingHTTPServer | None = None

    def uri(self, password: str = SECRET) -> str:
        return f"http://{USER}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Relay)
        server.daemon_threads = True
        server.proxy = self  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        """The port closes (HTTP/1.0: no kept-alive connection outlives its request)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Relay(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._relay()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _relay(self) -> None:
        proxy: AuthProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._body()
        if self.headers.get("Authorization") != proxy.expected:
            proxy.refused += 1
            refusal = b'{"error_code": "UNAUTHENTICATED", "message": "not authenticated"}'
            self._answer(401, refusal, [("WWW-Authenticate", 'Basic realm="mlflow"')])
            return
        proxy.allowed += 1
        if proxy.failing and self.path.startswith("/api/"):
            self._answer(503, b"upstream failing", [("Content-Type", "text/plain")])
            return
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
            upstream.request(self.command, self.path, body=body, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _NOT_FORWARDED]
            self._answer(resp.status, data, kept)
        finally:
            upstream.close()

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _answer(self, status: int, data: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(stack: Stack) -> Iterator[AuthProxy]:
    """Not started: the port is reserved, nothing listens yet."""
    made = AuthProxy(stack.server.port)
    yield made
    made.stop()


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """The scripts (in this process) put the URI's credentials into MLflow's variables."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def leaks(seen: list[tuple[str, str]], *secrets: str) -> list[str]:
    """The labels of the outputs that show any form of `secrets`."""
    return [label for label, text in seen if any(f in text for f in forms(*secrets))]


# --- the service --------------------------------------------------------------------------------


def every_body(service: Service, phase: str) -> dict[str, httpx.Response]:
    """One request to every endpoint the service has, right and wrong."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    calls: dict[str, Callable[[], httpx.Response]] = {
        "GET /health": lambda: service.get("/health"),
        "GET /ready": lambda: service.get("/ready"),
        "GET /model": lambda: service.get("/model"),
        "GET /metrics": lambda: service.get("/metrics"),
        "GET /monitoring/profile": lambda: service.get("/monitoring/profile"),
        "GET /openapi.json": lambda: service.get("/openapi.json"),
        "GET /nowhere": lambda: service.get("/nowhere"),
        "POST /predict": lambda: service.post("/predict", json={"instances": EXAMPLE_ROWS}),
        "POST /predict (invalid)": lambda: service.post("/predict", json={"instances": [{}]}),
        "POST /admin/reload": lambda: service.post("/admin/reload", headers=admin),
        "POST /admin/reload (wrong token)": lambda: service.post(
            "/admin/reload", headers={"Authorization": "Bearer nope"}
        ),
        "POST /webhooks/mlflow (unsigned)": lambda: service.post("/webhooks/mlflow", json={}),
    }
    return {f"{phase}: {name}": call() for name, call in calls.items()}


def test_the_service_never_shows_the_password(
    stack: Stack, proxy: AuthProxy, tmp_path: Path
) -> None:
    version = stack.good[0]
    stack.set_aliases(champion=version)
    answers: dict[str, httpx.Response] = {}
    # CHURN_REQUEST_TIMEOUT_S: a reload against a failing server must answer, not time out.
    with _service(
        proxy.uri(), tmp_path, CHURN_LOG_LEVEL="DEBUG", CHURN_REQUEST_TIMEOUT_S="30"
    ) as service:
        # Cold start: the registry is not there yet (nothing listens on the proxy's port).
        wait_for_http(f"{service.url}/health", timeout=120, proc=service.proc)
        assert wait_until(lambda: service.model_info()["reload"]["failures"] >= 1, 120, 0.2)
        answers |= every_body(service, "cold")
        assert answers["cold: GET /ready"].status_code == 503
        assert "resolving the alias failed" in answers["cold: GET /ready"].json()["detail"]
        assert answers["cold: POST /admin/reload"].json()["outcome"] == "failed"

        proxy.start()
        assert wait_until(lambda: service.served_version() == version, 90, 0.2), (
            service.model_info()
        )
        answers |= every_body(service, "serving")
        assert answers["serving: POST /predict"].status_code == 200
        assert answers["serving: POST /admin/reload"].json()["outcome"] == "unchanged"

        def reload_fails(phase: str) -> None:
            answers.update(every_body(service, phase))
            reload = answers[f"{phase}: POST /admin/reload"]
            assert (reload.status_code, reload.json()["outcome"]) == (503, "failed"), reload.text
            assert answers[f"{phase}: GET /ready"].status_code == 200  # still serving

        proxy.failing = True  # healthy front, failing API
        reload_fails("failing")
        proxy.failing, proxy.expected = False, basic(USER, "changed-since")  # refuses the service
        reload_fails("refused")
        proxy.expected = basic(USER, SECRET)
        proxy.stop()
        reload_fails("gone")

    log = service.log.read_text()
    assert "resolving the alias failed" in log and " DEBUG " in log, log[-2000:]
    seen = [(label, f"{r.status_code} {r.headers} {r.text}") for label, r in answers.items()]
    seen.append(("service log", log))
    assert leaks(seen, SECRET) == []
    assert proxy.allowed > 0  # the service did log in, with the URI's credentials


# --- the scripts --------------------------------------------------------------------------------

ScriptMain = Callable[[list[str]], int]


def run_script(
    capfd: pytest.CaptureFixture[str], seen: list[tuple[str, str]], label: str,
    main: ScriptMain, argv: list[str],
) -> tuple[int, str, str]:  # fmt: skip
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capfd.readouterr()
    seen.append((label, out + err))
    return code, out, err


def test_scripts_work_with_the_password_in_the_uri_and_never_show_it(
    stack: Stack, proxy: AuthProxy, capfd: pytest.CaptureFixture[str], restored_environment: None
) -> None:
    champion, middle, best = stack.good[0], stack.good[1], stack.good[2]
    seen: list[tuple[str, str]] = []
    uri = ["--tracking-uri", proxy.uri()]

    def run(label: str, main: ScriptMain, argv: list[str], code: int) -> tuple[str, str]:
        got, out, err = run_script(capfd, seen, label, main, argv)
        assert got == code, (label, got, out, err)
        return out, err

    proxy.start()
    stack.set_aliases(champion=champion, prev_champion=middle, challenger=best)
    out, _ = run("status", churn_main, ["status", *uri], 0)
    assert f"v{champion}" in out
    run("lineage", churn_main, ["lineage", *uri], 0)
    run("history", churn_main, ["history", *uri], 0)
    out, _ = run("rollback --dry-run", rollback.main, [*uri, "--dry-run"], 0)
    assert f"v{middle}" in out
    run("promote --dry-run", promote.main, [*uri, "--dry-run", "--no-reevaluate"], 0)
    out, _ = run("promote", promote.main, [*uri, "--no-reevaluate"], 0)
    assert f"PROMOTED: @champion -> v{best}" in out
    assert _aliases(stack)["champion"] == best  # it wrote, through the proxy

    # A fresh interpreter, the URI in MLflow's own variable, as CI would run it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    fresh = subprocess.run(
        [sys.executable, "-m", "churn", "status"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**env, "MLFLOW_TRACKING_URI": proxy.uri(), "MLFLOW_DISABLE_TELEMETRY": "true"},
    )  # fmt: skip
    seen.append(("fresh status", fresh.stdout + fresh.stderr))
    assert (fresh.returncode, f"v{best}" in fresh.stdout) == (0, True), fresh.stderr

    # Each failure class, with its exit code.
    stack.set_aliases(champion=champion)
    _, err = run("rollback, no @prev-champion", rollback.main, uri, 3)
    run("promote, bad flag", promote.main, [*uri, "--epsilon", "-1"], 2)
    wrong = ["status", "--tracking-uri", proxy.uri(WRONG)]
    _, err = run("status, wrong password", churn_main, wrong, 4)
    assert "refused the credentials (HTTP 401)" in err, err
    proxy.failing = True
    _, err = run("status, failing server", churn_main, ["status", *uri], 4)
    assert "503" in err or "failed" in err, err
    proxy.failing = False
    proxy.stop()
    _, err = run("promote, server gone", promote.main, uri, 4)
    assert "is unreachable" in err, err

    assert leaks(seen, SECRET, WRONG) == []
    assert proxy.allowed > 0 and proxy.refused >= 1  # logged in; the wrong password was refused


def _aliases(stack: Stack) -> dict[str, int]:
    from churn.registry_reads import aliases

    return aliases(stack.client())
