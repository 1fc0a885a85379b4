"""What goes wrong with containers says so in one line: no engine, an engine that refuses
containers, a base that can be neither found nor pulled, a published port already in use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from churn.procs import free_port
from deploy import containers
from deploy.containers import Engine, EngineError
from tests.conftest import ROOT
from tests.containers.conftest import PREFIX, Built

# The first test of a session also builds every image (cold: ~10 min on a loaded 2-core machine).
pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.containers", *args], cwd=ROOT,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_no_engine_is_one_line_and_exit_4() -> None:
    proc = cli("engine", PATH=str(Path(sys.executable).parent))
    assert proc.returncode == 4
    line = one_line(proc)
    assert line.startswith(f"{containers.PROG}: no container engine: docker: not installed"), line
    assert "podman + runc" in line


def test_an_engine_that_refuses_containers_names_the_settings(
    engine: Engine, tmp_path: Path
) -> None:
    if engine.name != "podman":
        pytest.skip("the settings named are podman's containers.conf")
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nruntime = "churn-no-such-runtime"\n')
    proc = cli("base-images", CONTAINERS_CONF=str(conf))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    line = one_line(proc)
    assert f"runtime, cgroup_manager and default_ulimits in {conf}" in line, line


def test_a_base_that_cannot_be_had_is_named(engine: Engine, built: Built) -> None:
    missing = "localhost/churn-no-such-base:0"
    with pytest.raises(EngineError) as raised:
        containers.build(
            engine, "runtime", f"{PREFIX}-never", {**built.bases, "PYTHON_IMAGE": missing}
        )
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and f"PYTHON_IMAGE={missing}" in message, message
    assert "make base-images" in message


def test_a_published_port_in_use_is_named_with_its_variable() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(EngineError) as raised:
            containers.check_ports_free({"API_PORT": str(port)}, ["api"])
    assert str(raised.value) == (
        f"port 127.0.0.1:{port} (api) is in use: stop what listens there, or set API_PORT"
    )
