"""The README's first command, `make demo`, on a fresh clone: data -> train -> register ->
promote -> serve -> a real /predict; then the README's own curl against that live service."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.e2e.conftest import clean_env

pytestmark = pytest.mark.e2e


def readme_curl(port: int) -> str:
    """The ```bash block of README.md that calls /predict, pointed at `port`."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if "curl" in b and "/predict" in b]
    return block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def _lines(stream, sink: queue.Queue[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        sink.put(line)
    sink.put("")


def test_make_demo_then_the_readme_curl(clone: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        ["make", "demo", f"PORT={port}"],
        cwd=clone,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so the whole process group (make, uvicorn) can be stopped
    )
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while not any("The API keeps running" in line for line in seen):
            assert time.monotonic() < deadline, "make demo did not serve within 600 s"
            try:
                line = out.get(timeout=5)
            except queue.Empty:
                continue
            assert line or proc.poll() is None, "make demo exited:\n" + "".join(seen)
            seen.append(line)
        text = "".join(seen)
        assert "PROMOTED: @champion -> v1 (cold start)" in text
        assert f"POST http://127.0.0.1:{port}/predict -> HTTP 200" in text
        answer = json.loads(text[text.index("{", text.index("-> HTTP 200")) : text.rindex("}") + 1])
        assert answer["model"]["name"] == "churn" and answer["model"]["version"] == 1
        assert [p["customerID"] for p in answer["predictions"]] == ["7590-VHVEG", "5575-GNVDE"]

        # The README's curl, verbatim but for the port, against the live service.
        curl = subprocess.run(
            ["bash", "-c", readme_curl(port)], capture_output=True, text=True, timeout=30
        )
        assert curl.returncode == 0, curl.stderr
        body = json.loads(curl.stdout)
        assert body["model"]["version"] == 1
        assert len(body["predictions"]) == 2
        assert all(0 <= p["churn_probability"] <= 1 for p in body["predictions"])
        assert body["predictions"] == answer["predictions"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
