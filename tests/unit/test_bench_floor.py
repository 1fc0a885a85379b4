"""The floor `make bench` measures ours against (bench/floor.py): both apps start on our exact
uvicorn command line (only the factory swapped), answer /ready, and parse the body they are sent
before giving their fixed answer. No timing here: a few seconds of real processes."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from bench import floor
from bench import serve as bench
from churn.procs import free_port

ROW = {"instances": [{"customerID": "0001-TEST", "gender": "Male", "tenure": 3}]}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(floor.FLOORS))
def test_floor_app_starts_on_our_command_line_and_answers(name: str, tmp_path: Path) -> None:
    port = free_port()
    argv = [floor.FLOORS[name] if a == "serve.app:main" else a for a in bench.ours_command(port, 1)]
    assert floor.FLOORS[name] in argv and "serve.protocol:LimitedHttpToolsProtocol" in argv
    server = bench.Server(
        name, argv, bench.server_env(tmp_path), "/ready", "/predict", port, tmp_path / "log",
        floor=True,
    )  # fmt: skip
    server.start(timeout=45)
    try:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            resp = client.post("/predict", content=orjson.dumps(ROW))
            assert (resp.status_code, resp.content) == (200, floor.ANSWER)
            assert resp.headers["content-type"] == "application/json"
            # It does parse the body: a broken one is an error, not the fixed answer.
            broken = client.post("/predict", content=b'{"instances": [')
            assert broken.status_code == 500
    finally:
        server.stop()
    assert server.proc is not None and server.proc.poll() is not None
