"""One real stack for the whole directory: a `mlflow server` (in its own process group, so a test
can hang it, kill it and bring it back on the same port) holding really trained versions plus
broken and hostile ones, and the service started by `make serve`'s uvicorn command against it.

Sharing is safe because every test first sets the aliases it needs (`Stack.serve`) and waits
until the service serves what it expects; the destructive outage test runs last.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port, small_params, wait_for_http
from tests.serve_helpers import serve_command, wait_until

ADMIN_TOKEN = "reliability-admin-token"
WEBHOOK_SECRET = "reliability-webhook-secret"
# Small limits, so generated requests reach them (the defaults are 4 MiB and 1,000 rows).
MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_SIZE = 100
POLL_S = 0.5
BACKOFF_MAX_S = 4.0
REQUEST_TIMEOUT_S = 3.0

# Destructive or long tests last, whatever their file names.
_ORDER = ("test_fuzz", "test_limits", "test_below_app", "test_keepalive", "test_artifacts",
          "test_racing", "test_crash_safety", "test_bad_data", "test_faults", "test_secrets",
          "test_soak", "test_outage")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Reorder this directory's tests among themselves; every other test keeps its place."""
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        module = Path(str(item.fspath)).stem
        return _ORDER.index(module) if module in _ORDER else len(_ORDER)

    slots = [i for i, item in enumerate(items) if Path(str(item.fspath)).parent == here]
    ordered = sorted((items[i] for i in slots), key=rank)  # stable within a module
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


@dataclass
class MlflowServer:
    """`mlflow server` on a fixed port; pause / kill / start again like a real outage."""

    work: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> float:
        """Start and wait for /health; returns the seconds that took."""
        began = time.monotonic()
        self.spawn()
        self.wait_ready(timeout)
        return time.monotonic() - began

    def spawn(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"), "server",
                "--backend-store-uri", f"sqlite:///{self.work / 'mlflow.db'}",
                "--artifacts-destination", str(self.work / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ],
            stdout=(self.work / "server.log").open("a"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            # Its own group: the CLI runs uvicorn as a child, and an outage stops both.
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 120) -> None:
        wait_for_http(f"{self.uri}/health", timeout=timeout, proc=self.proc)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def pause(self) -> None:
        """Hung, not dead: connections are accepted by the kernel and never answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """A crash: the whole group dies at once, the port is closed."""
        assert self.proc is not None
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


@dataclass
class Service:
    """The real service process (`make serve`'s uvicorn command)."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=30, **kwargs)

    def served_version(self) -> int | None:
        resp = self.get("/ready")
        return int(resp.json()["model"]["version"]) if resp.status_code == 200 else None

    def model_info(self) -> dict[str, Any]:
        return dict(self.get("/model").json())

    def metric(self, name: str) -> float | None:
        """One unlabelled sample of /metrics, or None if absent."""
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return None

    def reload(self) -> httpx.Response:
        return self.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


class RaceWorkers:
    """Processes that run promote.py / rollback.py on command (tests/reliability/race_worker.py),
    started with the stack so that their seconds of imports overlap the server's start-up."""

    def __init__(self, scripts: tuple[str, ...]) -> None:
        self.scripts = scripts
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.race_worker"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in scripts
        ]

    def run(self, argv: dict[str, list[str]], at: list[float]) -> list[dict[str, Any]]:
        """Each worker runs its script with `argv[script]` at the unix time `at[i]`; their
        answers (code, out, err, began, ended) in worker order."""
        return self.run_each([(script, argv[script]) for script in self.scripts], at)

    def run_each(
        self, commands: list[tuple[str, list[str]]], at: list[float]
    ) -> list[dict[str, Any]]:
        """Worker i runs `commands[i]` (script, argv) at the unix time `at[i]`; answers as `run`.
        Fewer commands than workers leave the last workers idle."""
        busy = self.procs[: len(commands)]
        for proc, (script, argv), when in zip(busy, commands, at, strict=True):
            assert proc.stdin is not None
            command = {"script": script, "argv": argv, "at": when}
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        answers = []
        for proc in busy:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, f"race worker {proc.pid} exited with {proc.wait(timeout=10)}"
            answers.append(json.loads(line))
        return answers

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@dataclass
class Stack:
    server: MlflowServer
    service: Service
    data: Path  # the training data of the good versions
    holdout: Path  # other rows in the same layout, labelled (promote.py --holdout)
    # Really trained versions, worst to best by logged auc.
    good: tuple[int, ...]
    # Registered versions whose artifact is damaged, by what is wrong with it.
    bad: dict[str, int]
    markers: Path  # where a hostile artifact's payload would leave its mark
    racers: RaceWorkers  # two promote.py and a rollback.py, ready to run
    # `python -m churn score` on the garbage-estimator version, started with the stack (its
    # seconds of imports overlap the service's start-up); test_artifacts reads its answer.
    cold_score: ColdRun

    @property
    def uri(self) -> str:
        return self.server.uri

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def set_aliases(self, **aliases: int) -> None:
        """Exactly these aliases (prev_champion= for @prev-champion), every other one removed."""
        from churn.registry_reads import aliases as read_aliases

        client = self.client()
        wanted = {a.replace("_", "-"): v for a, v in aliases.items()}
        for alias in read_aliases(client):
            if alias not in wanted:
                client.delete_registered_model_alias("churn", alias)
        for alias, version in wanted.items():
            client.set_registered_model_alias("churn", alias, str(version))

    def serve(self, version: int, timeout: float = 30, **aliases: int) -> None:
        """Point @champion at `version` (plus `aliases`) and wait until the service serves it."""
        self.set_aliases(champion=version, **aliases)
        assert wait_until(lambda: self.service.served_version() == version, timeout, 0.1), (
            self.service.model_info()
        )


@dataclass
class ColdRun:
    """A command started in a fresh interpreter, as a user runs it."""

    argv: list[str]
    out: Path  # what it must not create
    proc: subprocess.Popen[str]

    def result(self, timeout: float = 300) -> tuple[int, str, str]:
        stdout, stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, stdout, stderr

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def cold_score(uri: str, data: Path, version: int, work: Path) -> ColdRun:
    out = work / f"cold-score-v{version}"
    args = ["--input", str(data), "--output", str(out), "--model-uri", f"models:/churn/{version}"]
    argv = [sys.executable, "-m", "churn", "score", *args, "--tracking-uri", uri]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return ColdRun(argv, out, proc)


def _model_dir(client: Any, version: int, dest: Path) -> Path:
    import mlflow.artifacts

    return Path(
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/churn/{version}", dst_path=dest)
    )


def _register_dir(client: Any, uri: str, model_dir: Path, what: str) -> int:
    """A new version of `churn` whose artifact is exactly `model_dir`, from its own run."""
    from churn.tracking import ensure_experiment

    exp = ensure_experiment(client, uri)
    run = client.create_run(exp, run_name=f"damaged artifact: {what}", tags={"damage": what})
    client.log_metric(run.info.run_id, "auc", 0.99)  # looks like the best challenger ever
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/model"
    return int(client.create_model_version("churn", source, run.info.run_id).version)


def _set_flavor(model_dir: Path, **sklearn: Any) -> None:
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    meta["flavors"]["sklearn"].update(sklearn)
    if "pickled_model" in sklearn:
        meta["flavors"]["python_function"]["model_path"] = sklearn["pickled_model"]
    (model_dir / "MLmodel").write_text(yaml.safe_dump(meta, sort_keys=False))


def _damaged_versions(
    client: Any, uri: str, good: int, work: Path, markers: Path
) -> dict[str, int]:
    import pickle

    import skops.io

    from tests.reliability.hostile import Canary, Unpickled

    source = _model_dir(client, good, work / "good")
    made: dict[str, Path] = {}

    def copy(what: str) -> Path:
        made[what] = shutil.copytree(source, work / what)
        return made[what]

    # Corrupt: the serialised estimator is missing, or is not a skops file at all.
    for f in copy("missing-estimator").glob("*.skops"):
        f.unlink()
    (copy("garbage-estimator") / "model.skops").write_bytes(b"PK\x03\x04 not really a zip" * 40)
    (copy("no-mlmodel") / "MLmodel").unlink()
    # Hostile: a pickle whose loading runs code; a skops file whose MLmodel trusts its payload.
    hostile = copy("pickle")
    (hostile / "model.skops").unlink()
    (hostile / "model.pkl").write_bytes(pickle.dumps(Unpickled(markers / "pickle")))
    _set_flavor(hostile, serialization_format="cloudpickle", pickled_model="model.pkl")
    hostile = copy("skops-trusts-its-payload")
    skops.io.dump(Canary(str(markers / "skops")), hostile / "model.skops")
    _set_flavor(hostile, skops_trusted_types=[f"{Canary.__module__}.{Canary.__qualname__}"])
    return {what: _register_dir(client, uri, path, what) for what, path in made.items()}


@contextlib.contextmanager
def _service(server_uri: str, work: Path, **extra_env: str) -> Iterator[Service]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=server_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        CHURN_RELOAD_INTERVAL=str(POLL_S),
        CHURN_RELOAD_BACKOFF_MAX_S=str(BACKOFF_MAX_S),
        CHURN_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
        CHURN_ADMIN_TOKEN=ADMIN_TOKEN,
        CHURN_WEBHOOK_SECRET=WEBHOOK_SECRET,
        CHURN_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        CHURN_MAX_BATCH_SIZE=str(MAX_BATCH_SIZE),
        CHURN_LOG_LEVEL="WARNING",
    )
    env.update(extra_env)
    log = work / f"serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            serve_command(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield Service(f"http://127.0.0.1:{port}", proc, log)  # starting: see `wait_ready`
    finally:
        from tests.conftest import stop_process

        stop_process(proc)


@pytest.fixture(scope="package")  # stopped as soon as this directory's tests are done
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with build_stack(tmp_path_factory.mktemp("reliability")) as built:
        yield built


@contextlib.contextmanager
def build_stack(work: Path) -> Iterator[Stack]:
    """About 45 s on two idle cores, most of it the processes' imports, overlapped: the server,
    the race workers and the service start while this process imports and trains."""
    (work / "server").mkdir()
    markers = work / "markers"
    markers.mkdir()
    racers = RaceWorkers(("promote", "promote", "rollback"))
    cold: ColdRun | None = None
    server = MlflowServer(work / "server")
    server.spawn()
    try:
        import mlflow

        from churn import data, tracking
        from churn.registry_reads import aliases as read_aliases
        from churn.training import train

        path = work / "customers.parquet"
        data.write_parquet(data.normalise(data.generate(rows=3_000, seed=7)), path)
        holdout = work / "holdout.parquet"
        data.write_parquet(data.normalise(data.generate(rows=2_000, seed=8)), holdout)
        server.wait_ready()
        uri = server.uri
        with _service(uri, work) as service:  # starts now, serves once @champion exists
            client = tracking.connect(uri)
            trained = [
                train(small_params(C=c), client, uri, data_path=path, reports_dir=None)
                for c in (1.0, 0.05, 0.001)
            ]
            good = tuple(r.version for r in sorted(trained, key=lambda r: r.metrics["auc"]))
            bad = _damaged_versions(client, uri, good[-1], work, markers)
            cold = cold_score(uri, path, bad["garbage-estimator"], work)
            for alias in read_aliases(client):
                client.delete_registered_model_alias("churn", alias)
            client.set_registered_model_alias("churn", "champion", str(good[0]))
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
            mlflow.set_registry_uri(None)  # type: ignore[arg-type]
            stack = Stack(server, service, path, holdout, good, bad, markers, racers, cold)
            wait_for_http(f"{service.url}/health", timeout=90, proc=service.proc)
            assert wait_until(lambda: service.served_version() == good[0], 90, 0.2), (
                service.log.read_text()[-3000:]
            )
            yield stack
    finally:
        if cold is not None:
            cold.stop()
        racers.close()
        server.stop()
