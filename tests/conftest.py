"""Shared fixtures. Each test gets its own tracking store; none touches the repo's mlflow.db."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The process helpers live in churn/procs.py (deploy/ and bench/ use them too); imported here so
# tests keep importing them from tests.conftest beside the fixtures that use them.
from churn.procs import free_port, stop_process, wait_for_http

ROOT = Path(__file__).resolve().parent.parent

# The checkout's own store, data and lock. No test may write them: a learner's registry must
# survive `make test`, and the course (tests/docs) checks that they stay as they were.
GUARDED = (
    "mlflow.db", "mlartifacts", "mlruns", "dvc.lock", "params.yaml", "data/customers.parquet",
)  # fmt: skip


def stamps() -> dict[str, float | None]:
    return {
        name: (ROOT / name).stat().st_mtime if (ROOT / name).exists() else None for name in GUARDED
    }


_AT_START: dict[str, float | None] = {}
_SCRATCH: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    # The per-test fixture below covers tests; this covers what runs outside one (module and
    # session fixtures, their teardown, servers they start): without a URI in the environment,
    # MLflow's default is ./mlflow.db, i.e. this checkout.
    scratch = Path(tempfile.mkdtemp(prefix="churn-tests-"))
    _SCRATCH.append(scratch)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'session.db'}"
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    _AT_START.update(stamps())


# Worker-seconds of the units that take more than ~30 s (a fresh-clone `make test`, 2 workers).
# The scheduler starts the longest first: xdist's default order (most tests first) left the
# single-test workflow replay to start last, with the other worker idle for its whole length.
# A unit missing here only starts later; refresh the figures when one changes much
# (`make test ARGS="--junitxml=t.xml"`, summed per file).
SLOW_UNITS = {
    "tests/docs/test_docs.py": 170,
    "tests/reliability": 170,
    "tests/e2e/test_workflow_pipeline.py": 130,
    "tests/e2e/test_pipeline.py": 115,
    "tests/integration/test_docker.py": 85,
    "tests/e2e/test_serve.py": 75,
    "tests/e2e/test_quickstart.py": 65,
    "tests/integration/test_exercises.py": 60,
    "tests/integration/test_team_stack.py": 50,
    "tests/integration/test_score.py": 45,
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with two changes for a suite whose units differ 1000-fold in length:
    - tests/reliability is one unit of work: its files share one package-scoped stack (an MLflow
      server, trained versions, the service: ~60 s to build), which pytest rebuilds whenever a
      worker runs another directory's file in between;
    - the longest units start first (SLOW_UNITS), and a worker takes its next unit only when it
      is down to its last test (xdist's default, 2, pins a unit to a worker minutes early)."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/reliability/"):
                return "tests/reliability"
            return str(super()._split_scope(nodeid))

        def _assign_work_unit(self, node: Any) -> None:
            longest = max(self.workqueue, key=lambda scope: SLOW_UNITS.get(scope, 0))
            self.workqueue.move_to_end(longest, last=False)  # ties: xdist's order
            super()._assign_work_unit(node)

        def _reschedule(self, node: Any) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            # A worker holds its last test until it knows the next one (or shuts down), so
            # "one left" is the earliest point at which it needs more.
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return LongestFirst(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Every run (and every xdist worker) made one: leave nothing behind in /tmp.
    for scratch in _SCRATCH:
        shutil.rmtree(scratch, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):  # xdist worker: the controller checks once
        return
    changed = sorted(k for k, v in stamps().items() if _AT_START and v != _AT_START.get(k))
    if changed:
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(
            f"ERROR: the test run changed this checkout's {', '.join(changed)}: a test wrote into "
            "the repository instead of its own tmp dir (or something else ran in it meanwhile)",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A test that forgets --tracking-uri writes here, never into the repository's mlflow.db.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'isolated.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    yield
    # Scripts set MLflow's process-wide URIs; a later test must not inherit a deleted store.
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated SQLite store; copying it saves the seconds MLflow's migrations take."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@dataclass
class Store:
    """A real MLflow SQLite tracking store + registry in a test's tmp dir."""

    path: Path
    uri: str

    @property
    def client(self):  # type: ignore[no-untyped-def]
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def add_version(self, aliases: tuple[str, ...] = (), **metrics: float) -> int:
        """A run with `metrics` logged and a registered version of `churn` pointing at it.

        Promotion and rollback read only metrics and aliases, so no model artifact is needed here;
        tests that load models train real ones.
        """
        from churn.settings import EXPERIMENT_NAME, MODEL_NAME
        from churn.tracking import ensure_experiment

        c = self.client
        exp = ensure_experiment(c, self.uri, EXPERIMENT_NAME)
        run = c.create_run(exp)
        for k, v in metrics.items():
            c.log_metric(run.info.run_id, k, v)
        c.set_terminated(run.info.run_id)
        try:
            c.get_registered_model(MODEL_NAME)
        except Exception:
            c.create_registered_model(MODEL_NAME)
        mv = c.create_model_version(MODEL_NAME, f"runs:/{run.info.run_id}/model", run.info.run_id)
        for alias in aliases:
            c.set_registered_model_alias(MODEL_NAME, alias, mv.version)
        return int(mv.version)

    def aliases(self) -> dict[str, int]:
        from churn.registry_reads import aliases

        return aliases(self.client)

    def tags(self, version: int) -> dict[str, str]:
        from churn.settings import MODEL_NAME

        return dict(self.client.get_model_version(MODEL_NAME, str(version)).tags)


@pytest.fixture
def store(tmp_path: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    path = tmp_path / "mlflow.db"
    shutil.copy(template_db, path)
    uri = f"sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield Store(path, uri)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated data set (3,000 rows) as the prepare stage would write it."""
    from churn import data

    path = tmp_path_factory.mktemp("data") / "customers.parquet"
    data.write_parquet(data.normalise(data.generate(rows=3_000, seed=7)), path)
    return path


def small_params(**model_params: object):  # type: ignore[no-untyped-def]
    from churn.settings import DataParams, Params

    return Params(
        seed=7,
        data=DataParams(rows=3_000),
        model_params={"C": 1.0, "max_iter": 1000, **model_params},
    )


@contextlib.contextmanager
def running_mlflow_server(work: Path, **env: str) -> Iterator[str]:
    """A real `mlflow server` subprocess on a free loopback port with its own store in `work`."""
    import os
    import sys

    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(mlflow_bin), "server",
            "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
            "--artifacts-destination", str(work / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=(work / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        # MLflow 3's server also starts a job executor (GenAI evaluation jobs) we never use;
        # it costs ~15 s of start-up on this 2-core machine.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env},
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", timeout=90, proc=proc)
        yield uri
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mlflow_server(tmp_path_factory.mktemp("server")) as uri:
        yield uri
