"""The container layer: the images built by a real engine, run, and the compose stack brought up.

The engine is the one `make images` picks (deploy/containers.py: docker when its daemon answers,
else podman). Without one, the layer skips with the reason; under CI=true it fails. Every
container, network and volume a test starts is removed in a fixture's teardown, also when the
test fails; the tests reach containers only through ports published on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from churn.procs import free_port
from deploy import containers
from deploy.containers import Engine, EngineError

# Each test run's names are its own: a second run, or a developer's stack, never collides.
PREFIX = f"churn-ct-{os.getpid()}"
HEALTHY_TIMEOUT_S = 420  # a loaded 2-core machine: mlflow server's first start is slow
READY_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def engine() -> Engine:
    try:
        return containers.detect()
    except EngineError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"container layer: {exc}")
        pytest.skip(f"container layer: {exc}")


@dataclass
class Built:
    bases: dict[str, str]
    tags: dict[str, str]  # target -> image
    seconds: dict[str, float] = field(default_factory=dict)


def image_size_mb(engine: Engine, image: str) -> float:
    proc = engine.run("image", "inspect", "--format", "{{.Size}}", image, check=True)
    return int(proc.stdout.strip()) / 1e6


@pytest.fixture(scope="session")
def built(engine: Engine) -> Built:
    """Every target compose.yaml names, built once for the session (stand-in bases if needed)."""
    started = time.monotonic()
    bases = containers.base_images(engine)
    containers.check_runs(engine, bases["PYTHON_IMAGE"])
    print(f"\nbases ready in {time.monotonic() - started:.0f} s: {bases}")
    result = Built(bases, containers.compose_images())
    for target, tag in result.tags.items():
        result.seconds[target] = containers.build(engine, target, tag, bases)
    for target, tag in result.tags.items():
        size = image_size_mb(engine, tag)
        print(f"image {tag:28} {size:7.0f} MB  built in {result.seconds[target]:4.0f} s")
    print(f"all images: {time.monotonic() - started:.0f} s (engine {engine.name})")
    return result


# ---- containers -------------------------------------------------------------------------------


@dataclass
class Container:
    engine: Engine
    name: str
    port: int | None = None  # the host port (127.0.0.1) its service is published on

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        proc = self.engine.run("logs", "--tail", "80", self.name)
        return proc.stdout + proc.stderr

    def state(self) -> dict[str, Any]:
        proc = self.engine.run("inspect", "--format", "{{json .State}}", self.name, check=True)
        return dict(json.loads(proc.stdout))

    def healthy(self) -> bool:
        """One run of the container's own HEALTHCHECK: podman without systemd runs no timer for
        it, so the test does (`podman healthcheck run`); Docker's daemon runs it by itself."""
        if self.engine.name == "podman":
            return self.engine.run("healthcheck", "run", self.name, timeout=60).returncode == 0
        health = self.state().get("Health") or {}
        return bool(health.get("Status") == "healthy")

    def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT_S) -> float:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not self.state().get("Running"):
                raise AssertionError(f"{self.name} exited:\n{self.logs()}")
            if self.healthy():
                return time.monotonic() - started
            time.sleep(3)
        raise AssertionError(f"{self.name} not healthy within {timeout:.0f} s:\n{self.logs()}")

    def remove(self) -> None:
        self.engine.run("rm", "--force", self.name, timeout=120)


@pytest.fixture(scope="module")
def start(engine: Engine) -> Iterator[Any]:
    """start(image, name, port=, network=, env=) -> Container, removed at the module's end."""
    started: list[Container] = []

    def _start(
        image: str,
        name: str,
        port: int | None = None,
        network: str | None = None,
        alias: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Container:
        flags = ["--detach", "--name", f"{PREFIX}-{name}"]
        if network:
            flags += ["--network", network] + (["--network-alias", alias] if alias else [])
        host_port = free_port() if port else None
        if port:
            flags += ["--publish", f"127.0.0.1:{host_port}:{port}"]
        for key, value in (env or {}).items():
            flags += ["--env", f"{key}={value}"]
        container = Container(engine, f"{PREFIX}-{name}", host_port)
        started.append(container)
        engine.run("run", *flags, image, timeout=120, check=True)
        return container

    yield _start
    for container in started:
        container.remove()


@pytest.fixture(scope="module")
def network(engine: Engine) -> Iterator[str]:
    """A network of the test's own: containers call each other by name on it."""
    name = f"{PREFIX}-net"
    engine.run("network", "create", name, check=True)
    try:
        yield name
    finally:
        engine.run("network", "rm", "--force", name, timeout=120)


# ---- HTTP from the host -------------------------------------------------------------------------


def http(method: str, url: str, body: object | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError) as exc:
        return 0, {"detail": str(exc)}


def wait_served(
    url: str, version: int | None = None, timeout: float = READY_TIMEOUT_S
) -> dict[str, Any]:
    """/ready 200 (and serving `version`, when given) within `timeout` s; its body."""
    deadline = time.monotonic() + timeout
    code, body = http("GET", f"{url}/ready")
    while time.monotonic() < deadline:
        if code == 200 and (version is None or body["model"]["version"] == version):
            return body
        time.sleep(1)
        code, body = http("GET", f"{url}/ready")
    raise AssertionError(f"{url}/ready: {code} {body} (wanted v{version}) after {timeout:.0f} s")
