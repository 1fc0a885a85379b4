"""Two worker processes (`WEB_CONCURRENCY=2`, `make serve`'s uvicorn command) against a real
SQLite registry holding two really trained versions: requests spread over both workers (each
keep-alive connection is served by one worker, named by `GET /model`'s `worker.pid`) while the
champion moves, by a promotion (each worker's poll) or by `/admin/reload` received by one worker
(the others follow through serve/workers.py). No request fails, and within the reload bound
every answer, from every worker, is the new version's."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from churn import data, registry
from churn.settings import MODEL_NAME
from churn.training import train
from serve.example import request_rows
from tests.conftest import ROOT, free_port, small_params, stop_process, wait_for_http
from tests.serve_helpers import serve_command

pytestmark = pytest.mark.e2e

TOKEN = "e2e-admin-token"
POLL_S = 1.0
LOAD_S = 15.0  # one model load on two busy cores (1-6 s seen with load average 9), with margin
CONNECTIONS_PER_WORKER = 3


@dataclass(frozen=True)
class Store:
    uri: str
    client: Any
    v1: int
    v2: int
    body: dict[str, Any]
    expected: dict[int, float]  # version -> P(churn) of the body's row


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, template_db: Path
) -> tuple[Path, Path, list[int]]:
    """Two small real versions, trained once; each test copies the database."""
    import mlflow
    from mlflow import MlflowClient

    work = tmp_path_factory.mktemp("workers-registry")
    path = work / "customers.parquet"
    data.write_parquet(data.normalise(data.generate(rows=3_000, seed=7)), path)
    db = work / "mlflow.db"
    shutil.copy(template_db, db)
    uri = f"sqlite:///{db}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri, uri)
        versions = [
            train(small_params(C=c), client, uri, data_path=path, reports_dir=None).version
            for c in (1.0, 0.001)
        ]
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # back to the default
    return db, path, versions


@pytest.fixture
def store(trained: tuple[Path, Path, list[int]], tmp_path: Path) -> Store:
    """A private copy of the registry: @champion v1, @challenger v2, and one row whose P(churn)
    differs between them (so an answer's probability proves which version scored it)."""
    import mlflow
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copy(trained[0], db)
    uri = f"sqlite:///{db}"
    os.environ["MLFLOW_TRACKING_URI"] = uri  # restored by conftest's monkeypatch
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    v1, v2 = trained[2]
    client.set_registered_model_alias(MODEL_NAME, "champion", str(v1))
    client.set_registered_model_alias(MODEL_NAME, "challenger", str(v2))
    frame = data.read_parquet(trained[1]).head(1)
    expected = {
        v: float(mlflow.pyfunc.load_model(f"models:/churn/{v}").predict(data.features(frame))[0])
        for v in (v1, v2)
    }
    assert expected[v1] != expected[v2]
    return Store(uri, client, v1, v2, {"instances": request_rows(frame)}, expected)


@contextmanager
def two_workers(tmp_path: Path, tracking_uri: str, **env: str) -> Iterator[str]:
    """`make serve`'s command with WEB_CONCURRENCY=2 on a free port; its base URL; stopped."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    full_env.update(
        MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_DISABLE_TELEMETRY="true", WEB_CONCURRENCY="2",
        TMPDIR=str(tmp_path), **env,
    )  # fmt: skip
    log = tmp_path / f"serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            serve_command(port), cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ready", timeout=90, proc=proc)
        yield url
    except BaseException:
        print(log.read_text()[-6000:])
        raise
    finally:
        stop_process(proc)


@dataclass
class Connection:
    """One keep-alive connection, so one worker: every answer on it is that worker's."""

    client: httpx.Client
    pid: int
    answers: list[tuple[float, int, float]] = field(default_factory=list)  # (t, version, p)
    failures: list[str] = field(default_factory=list)

    def drive(self, body: dict[str, Any], stop: threading.Event, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while not stop.is_set() and time.monotonic() < end:
            try:
                resp = self.client.post("/predict", json=body)
            except httpx.HTTPError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if resp.status_code != 200:
                self.failures.append(f"{resp.status_code}: {resp.text[:200]}")
                continue
            answer = resp.json()
            version = int(answer["model"]["version"])
            probability = answer["predictions"][0]["churn_probability"]
            self.answers.append((time.monotonic(), version, probability))


def worker_pid(client: httpx.Client) -> int:
    info = client.get("/model").json()
    assert info["ready"] and info["worker"]["one_of_several"], info
    return int(info["worker"]["pid"])


def connections_to_both(url: str, stack: ExitStack) -> list[Connection]:
    """CONNECTIONS_PER_WORKER connections to each of the two workers: the kernel hands each new
    connection to a worker that takes connections (one still loading takes none); open
    connections until both have their share, for at most 90 s."""
    by_pid: dict[int, list[Connection]] = {}
    deadline = time.monotonic() + 90
    while not (len(by_pid) == 2 and all(len(c) >= CONNECTIONS_PER_WORKER for c in by_pid.values())):
        assert time.monotonic() < deadline, {pid: len(c) for pid, c in by_pid.items()}
        client = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1))
        pid = worker_pid(client)
        if len(by_pid.setdefault(pid, [])) < CONNECTIONS_PER_WORKER:
            stack.callback(client.close)
            by_pid[pid].append(Connection(client, pid))
            time.sleep(0.01)
        else:
            client.close()
            time.sleep(0.2)  # the other worker may still be loading
    return [c for conns in by_pid.values() for c in conns]


def drive_during(
    conns: list[Connection], body: dict[str, Any], move: Any, new: int, bound_s: float
) -> float:
    """Every connection posts `body` back to back; `move()` after 1 s moves the champion to
    `new`; the load goes on until every connection's last answer is `new`'s (or `bound_s`
    passed), then 1 s more. The monotonic time of the move."""
    stop = threading.Event()
    threads = [threading.Thread(target=c.drive, args=(body, stop, 120)) for c in conns]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        moved_at = time.monotonic()
        move()
        while time.monotonic() < moved_at + bound_s + 1 and not all(
            c.answers and c.answers[-1][1] == new for c in conns
        ):
            time.sleep(0.1)
        time.sleep(1.0)  # none goes back
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=35)
    return moved_at


def check_every_worker_switched(conns: list[Connection], store: Store, moved_at: float) -> float:
    """No failure; each answer scored by the version it names; every worker answered before
    and after; on every connection, once v2 answered, v1 never again. The seconds from the move
    to the last v1 answer on any connection."""
    assert [f for c in conns for f in c.failures] == []
    last_old = moved_at
    for conn in conns:
        versions = [v for _, v, _ in conn.answers]
        assert versions[0] == store.v1 and versions[-1] == store.v2, (conn.pid, versions[-5:])
        first_new = versions.index(store.v2)
        assert set(versions[first_new:]) == {store.v2}, f"worker {conn.pid} went back to v1"
        for _, version, probability in conn.answers:
            assert probability == pytest.approx(store.expected[version], abs=1e-9)
        last_old = max(last_old, conn.answers[first_new - 1][0])
    assert len({c.pid for c in conns if c.answers}) == 2
    return last_old - moved_at


def test_admin_reload_on_one_worker_reaches_the_other(store: Store, tmp_path: Path) -> None:
    # Polling off: only the reload one worker receives can move the other.
    env = {"CHURN_RELOAD_INTERVAL": "0", "CHURN_ADMIN_TOKEN": TOKEN}
    with two_workers(tmp_path, store.uri, **env) as url, ExitStack() as stack:
        conns = connections_to_both(url, stack)
        answered: list[httpx.Response] = []

        def reload_one_worker() -> None:
            store.client.set_registered_model_alias(MODEL_NAME, "champion", str(store.v2))
            answered.append(
                httpx.post(
                    f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
                )
            )

        moved_at = drive_during(conns, store.body, reload_one_worker, store.v2, LOAD_S)
        assert answered[0].status_code == 200, answered[0].text
        assert answered[0].json()["version"] == store.v2
        switched_s = check_every_worker_switched(conns, store, moved_at)
        assert switched_s <= LOAD_S, switched_s
    assert list(tmp_path.glob("churn-serve-*")) == []  # the workers' shared directory: removed
    answers = sum(len(c.answers) for c in conns)
    print(f"{answers} answers, 0 failed; both workers on v{store.v2} {switched_s:.2f} s after")


def test_a_promotion_reaches_every_worker_within_the_poll_bound(
    store: Store, tmp_path: Path
) -> None:
    with two_workers(tmp_path, store.uri, CHURN_RELOAD_INTERVAL=str(POLL_S)) as url:
        with ExitStack() as stack:
            conns = connections_to_both(url, stack)

            def promote() -> None:
                assert registry.promote(store.client, "auc", epsilon=-1.0).promoted

            moved_at = drive_during(conns, store.body, promote, store.v2, POLL_S + LOAD_S)
            switched_s = check_every_worker_switched(conns, store, moved_at)
        assert switched_s <= POLL_S + LOAD_S, switched_s
        answers = sum(len(c.answers) for c in conns)
        print(f"{answers} answers, 0 failed; both workers on v{store.v2} {switched_s:.2f} s after")


def test_an_invalid_setting_stops_every_worker_instead_of_restarting_them(
    tmp_path: Path,
) -> None:
    """uvicorn's supervisor restarts a worker that exits, except one that failed to start
    (its STARTUP_FAILURE status): an invalid setting must stop the server, not loop."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env.update(WEB_CONCURRENCY="2", CHURN_THRESHOLD="7", TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        serve_command(port), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        stop_process(proc)
    errors = [line for line in out.splitlines() if "invalid setting threshold" in line]
    assert 1 <= len(errors) <= 2, out[-3000:]  # one per worker, not a restart loop
    assert "Traceback" not in out, out[-3000:]
