"""A keep-alive connection left idle for longer than uvicorn's default timeout is still open, and
the next request on it is answered.

Protection proved: `--timeout-keep-alive 75` on the service's command line (the Makefile's
SERVE_CMD, the Dockerfile's CMD). uvicorn's default closes a connection 5 s after its last
response: the same as httpx's client-side expiry and shorter than nginx's or an AWS ALB's idle
timeout (60 s), so a client sending on the connection just as the server closes it gets a reset
(an empty `ReadError` in the soak under load, sporadic 502s behind a load balancer). Without
the flag the idle connection here is closed by the server before the second request.
"""

from __future__ import annotations

import http.client
import json
import select
import time
from urllib.parse import urlsplit

import pytest

from serve.api_models import EXAMPLE_ROWS
from tests.reliability.conftest import Stack
from tests.serve_helpers import wait_until

pytestmark = pytest.mark.integration

IDLE_S = 6.0  # > uvicorn's default keep-alive timeout (5 s), well under the service's 75 s


def test_an_idle_keep_alive_connection_is_still_served_after_uvicorns_default_timeout(
    stack: Stack,
) -> None:
    service = stack.service
    assert wait_until(lambda: service.served_version() is not None, 30, 0.1), service.model_info()
    url = urlsplit(service.url)
    body = json.dumps({"instances": EXAMPLE_ROWS}).encode()
    # http.client: no client-side expiry and no reconnect, like a proxy in front of the service.
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)

    def predict() -> tuple[int, bool]:
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.will_close

    try:
        assert predict() == (200, False)  # 200, and the connection is kept open
        sock = conn.sock
        assert sock is not None
        local = sock.getsockname()
        time.sleep(IDLE_S)
        # Readable while idle means the server closed it (EOF or reset waiting to be read).
        closed, _, _ = select.select([sock], [], [], 0)
        assert not closed, f"the service closed the keep-alive connection within {IDLE_S} s idle"
        assert predict() == (200, False)
        assert conn.sock is sock and sock.getsockname() == local  # the same connection reused
    finally:
        conn.close()
