"""compose.yaml's default stack, unchanged, brought up by Docker Compose v2 (`docker compose`,
or the dev tools' `docker-compose` on podman's Docker-compatible API): mlflow healthy, the
pipeline done, the API ready and answering /predict on its published 127.0.0.1 port; then
`down -v` leaves no container, network or volume."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from churn.procs import free_port
from deploy import containers
from deploy.containers import Engine
from serve.api_models import EXAMPLE_REQUEST
from tests.containers.conftest import PREFIX, Built, Container, http, wait_served

# The first test of a session also builds every image (cold: ~10 min on a loaded 2-core machine).
pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]

PROJECT = f"{PREFIX}-stack"
SERVICES = ("mlflow", "api", "pipeline")


@dataclass
class Stack:
    engine: Engine
    argv: list[str]
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        argv = [*self.argv, "--project-name", PROJECT, "--file", str(containers.COMPOSE), *args]
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout,
            cwd=containers.ROOT,
        )  # fmt: skip

    def ids(self, *filters: str, all_states: bool = True) -> list[str]:
        flags = ["--all"] if all_states else []
        for f in (f"label=com.docker.compose.project={PROJECT}", *filters):
            flags += ["--filter", f]
        return self.engine.run("ps", *flags, "--format", "{{.ID}}", check=True).stdout.split()

    def left(self, kind: str) -> list[str]:
        """Containers, networks or volumes of the project that still exist."""
        if kind == "container":
            return self.ids()
        label = f"label=com.docker.compose.project={PROJECT}"
        proc = self.engine.run(kind, "ls", "--filter", label, "--quiet", check=True)
        return proc.stdout.split()

    def container(self, service: str, port: int | None = None) -> Container:
        ids = self.ids(f"label=com.docker.compose.service={service}")
        assert len(ids) == 1, f"{service}: {len(ids)} containers"
        return Container(self.engine, ids[0], port)


def tick_healthchecks(stack: Stack, stop: threading.Event) -> None:
    """podman without systemd runs no healthcheck timer: run each running container's own
    check every 3 s while compose waits on `service_healthy` (Docker's daemon needs none)."""
    while not stop.wait(3):
        for cid in stack.ids(all_states=False):
            stack.engine.run("healthcheck", "run", cid, timeout=60)


@pytest.fixture(scope="module")
def stack(
    engine: Engine, built: Built, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {"API_PORT": str(free_port()), "MLFLOW_PORT": str(free_port())}
    containers.check_ports_free(env, SERVICES)
    with containers.compose(engine, tmp_path_factory.mktemp("compose")) as (argv, environ):
        running = Stack(engine, argv, {**environ, **env})
        stop = threading.Event()
        ticker = threading.Thread(target=tick_healthchecks, args=(running, stop), daemon=True)
        if engine.name == "podman":
            ticker.start()
        try:
            started = time.monotonic()
            up = running.compose("up", "--detach")
            assert up.returncode == 0, f"compose up:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
            seconds = time.monotonic() - started
            print(f"\ncompose up -d (mlflow healthy, then api and pipeline): {seconds:.0f} s")
            yield running
        finally:
            stop.set()
            down = running.compose("down", "--volumes", timeout=300)
            print(f"compose down -v: exit {down.returncode}")


def test_the_default_stack_comes_up_trains_and_serves(stack: Stack) -> None:
    mlflow = stack.container("mlflow")
    assert mlflow.healthy(), mlflow.logs()
    pipeline = stack.container("pipeline")
    stack.engine.run("wait", pipeline.name, timeout=1200, check=True)
    exit_code = pipeline.state()["ExitCode"]
    assert exit_code == 0, f"pipeline exit {exit_code}:\n{pipeline.logs()}"
    api = stack.container("api", int(stack.env["API_PORT"]))
    try:
        api.wait_healthy()
        ready = wait_served(api.url, timeout=180)
    except AssertionError:
        print(api.logs())
        raise
    code, body = http("POST", f"{api.url}/predict", EXAMPLE_REQUEST)
    assert code == 200, body
    assert body["model"]["version"] == ready["model"]["version"] == 1


def test_down_leaves_no_container_network_or_volume(stack: Stack) -> None:
    down = stack.compose("down", "--volumes", timeout=300)
    assert down.returncode == 0, down.stderr[-3000:]
    for kind in ("container", "network", "volume"):
        assert stack.left(kind) == [], f"{kind}s left after down -v"
