"""The real service (`make serve`'s uvicorn command) against a real SQLite registry holding
really trained models: parity with pyfunc, hot-swap under load, broken versions, cold start."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from churn import data, registry, schema
from churn.settings import CHALLENGER, CHAMPION, MODEL_NAME
from churn.training import train
from serve.example import request_rows
from tests.conftest import ROOT, free_port, small_params, stop_process, wait_for_http
from tests.serve_helpers import LoadResult, load_loop, serve_command, wait_until

pytestmark = pytest.mark.e2e

POLL_S = 1.0
TOKEN = "e2e-admin-token"


@dataclass(frozen=True)
class Trained:
    db: Path
    data: Path
    versions: tuple[int, ...]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[Trained]:
    """Three small real versions, trained once; tests copy the database (artifact paths are
    absolute, so copies share the artifacts, which no test modifies)."""
    import mlflow
    from mlflow import MlflowClient

    work = tmp_path_factory.mktemp("serve-registry")
    path = work / "customers.parquet"
    data.write_parquet(data.normalise(data.generate(rows=3_000, seed=7)), path)
    db = work / "mlflow.db"
    shutil.copy(template_db, db)
    uri = f"sqlite:///{db}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri, uri)
        versions = tuple(
            train(small_params(C=c), client, uri, data_path=path, reports_dir=None).version
            for c in (1.0, 0.001, 0.05)
        )
        mlflow.set_tracking_uri(None)
    yield Trained(db, path, versions)


def copy_store(trained: Trained, tmp_path: Path, **aliases: int) -> tuple[str, Any]:
    """A private copy of the trained registry with exactly `aliases` set."""
    import mlflow
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copy(trained.db, db)
    uri = f"sqlite:///{db}"
    os.environ["MLFLOW_TRACKING_URI"] = uri  # restored by conftest's monkeypatch
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    for alias in registry.aliases(client):
        client.delete_registered_model_alias(MODEL_NAME, alias)
    for alias, version in aliases.items():
        client.set_registered_model_alias(MODEL_NAME, alias.replace("_", "-"), str(version))
    return uri, client


@contextmanager
def service(tmp_path: Path, tracking_uri: str, **env: str) -> Iterator[str]:
    """`make serve`'s command on a free port; yields its base URL; always stopped."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    full_env.update(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_DISABLE_TELEMETRY="true", **env)
    log = tmp_path / f"serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            serve_command(port), cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", timeout=60, proc=proc)
        yield url
    except BaseException:
        print(log.read_text()[-5000:])  # the service's log, for the failing test's report
        raise
    finally:
        stop_process(proc)


def wait_ready(url: str, timeout: float = 60.0) -> dict[str, Any]:
    assert wait_until(lambda: httpx.get(f"{url}/ready").status_code == 200, timeout, 0.1), (
        httpx.get(f"{url}/ready").text
    )
    return dict(httpx.get(f"{url}/ready").json())


def served_version(url: str) -> int | None:
    resp = httpx.get(f"{url}/ready")
    return int(resp.json()["model"]["version"]) if resp.status_code == 200 else None


def seconds_until_served(url: str, version: int, timeout: float) -> float:
    start = time.monotonic()
    assert wait_until(lambda: served_version(url) == version, timeout, 0.02), (
        f"v{version} not served within {timeout} s: {httpx.get(f'{url}/model').text}"
    )
    return time.monotonic() - start


def pyfunc_predict(uri: str, frame: pd.DataFrame) -> np.ndarray:
    import mlflow

    return np.asarray(mlflow.pyfunc.load_model(uri).predict(data.features(frame)))


def test_predictions_match_pyfunc_and_swaps_under_load_fail_nothing(
    trained: Trained, tmp_path: Path
) -> None:
    v1, v2, _ = trained.versions
    uri, client = copy_store(trained, tmp_path, champion=v1, challenger=v2)
    df = data.read_parquet(trained.data)
    # Include new customers (TotalCharges null) in the rows compared.
    sample = pd.concat([df[df["TotalCharges"].isna()].head(5), df.head(45)])
    rows = request_rows(sample)
    assert any(r["TotalCharges"] is None for r in rows)
    one = {"instances": rows[-1:]}
    expected = {v: float(pyfunc_predict(f"models:/churn/{v}", sample.tail(1))[0]) for v in (v1, v2)}
    assert expected[v1] != expected[v2]

    with service(tmp_path, uri, CHURN_RELOAD_INTERVAL=str(POLL_S)) as url:
        assert wait_ready(url)["model"]["version"] == v1
        resp = httpx.post(f"{url}/predict", json={"instances": rows})
        assert resp.status_code == 200
        body = resp.json()
        reference = pyfunc_predict("models:/churn@champion", sample)
        got = np.array([p["churn_probability"] for p in body["predictions"]])
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-9)
        assert [p["customerID"] for p in body["predictions"]] == list(sample[schema.ID_COLUMN])
        assert [p["churn"] for p in body["predictions"]] == list(reference >= 0.5)
        run_id = client.get_model_version(MODEL_NAME, str(v1)).run_id
        assert body["model"] == {"name": "churn", "version": v1, "run_id": run_id}
        assert body["threshold"] == 0.5
        # The same rows from 6 clients at once: requests in flight together share batches, a
        # lone one is scored in one go in the scoring thread; either way, pyfunc's numbers.
        barrier = threading.Barrier(6)
        answers: list[Any] = []

        def post_together() -> None:
            barrier.wait(10)
            answers.append(httpx.post(f"{url}/predict", json={"instances": rows}, timeout=30))

        clients = [threading.Thread(target=post_together) for _ in range(6)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(timeout=60)
        assert [a.status_code for a in answers] == [200] * 6
        for answer in answers:
            got = np.array([p["churn_probability"] for p in answer.json()["predictions"]])
            np.testing.assert_allclose(got, reference, rtol=0, atol=1e-9)

        stop = threading.Event()
        result = LoadResult()
        threads = [
            threading.Thread(target=load_loop, args=(f"{url}/predict", one, stop, result, 30))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            promoted = registry.promote(client, "auc", epsilon=-1.0)  # the real promotion
            assert promoted.promoted
            promote_s = seconds_until_served(url, v2, timeout=10)
            time.sleep(0.5)
            registry.rollback(client)  # the real rollback: @champion back to v1
            rollback_s = seconds_until_served(url, v1, timeout=10)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        assert result.failures == []
        seen = {v for v, _ in result.scored}
        assert seen == {v1, v2}, seen
        # Every response was scored by the version it reports.
        for version, probability in result.scored:
            assert probability == pytest.approx(expected[version], abs=1e-9)
        assert promote_s <= 2 * POLL_S and rollback_s <= 2 * POLL_S, (promote_s, rollback_s)
        info = httpx.get(f"{url}/model").json()
        assert info["served"]["aliases"] == [CHAMPION]
        assert info["reload"]["failures"] == 0
        metrics = httpx.get(f"{url}/metrics").text
        assert "churn_model_reloads_total 3.0" in metrics
        print(
            f"{result.ok} requests, 0 failed; promotion seen after {promote_s:.2f} s, "
            f"rollback after {rollback_s:.2f} s"
        )


def test_a_broken_version_keeps_the_old_one_and_admin_reload_is_immediate(
    trained: Trained, tmp_path: Path
) -> None:
    v1, v2, _ = trained.versions
    uri, client = copy_store(trained, tmp_path, champion=v1)
    # A version whose artifact is corrupt: the model's files without its serialised estimator.
    source = Path(
        client.get_model_version_download_uri(MODEL_NAME, str(v1)).removeprefix("file://")
    )
    broken = tmp_path / "broken-model"
    shutil.copytree(source, broken)
    for f in broken.glob("*.skops"):
        f.unlink()
    bad = int(client.create_model_version(MODEL_NAME, str(broken)).version)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    # Polling off (0: one check at start-up): only /admin/reload moves the served version.
    with service(tmp_path, uri, CHURN_RELOAD_INTERVAL="0", CHURN_ADMIN_TOKEN=TOKEN) as url:
        assert wait_ready(url)["model"]["version"] == v1
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(bad))
        resp = httpx.post(f"{url}/admin/reload", headers=auth, timeout=60)
        assert resp.status_code == 503
        assert resp.json()["outcome"] == "failed"
        assert resp.json()["detail"].startswith(
            f"loading v{bad} failed: FileNotFoundError: [Errno 2] No such file or directory: "
        )
        assert resp.json()["detail"].endswith(f"; still serving v{v1}")
        answer = httpx.post(
            f"{url}/predict",
            json={"instances": request_rows(data.read_parquet(trained.data).head(3))},
        )
        assert answer.status_code == 200 and answer.json()["model"]["version"] == v1
        info = httpx.get(f"{url}/model").json()
        assert info["served"]["version"] == v1
        assert info["reload"]["failures"] == 1
        assert info["reload"]["last_error"]["version"] == bad
        assert "model.skops" in info["reload"]["last_error"]["message"]
        assert (
            'churn_model_reload_failures_total{stage="load"} 1.0'
            in httpx.get(f"{url}/metrics").text
        )

        client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(v2))
        resp = httpx.post(f"{url}/admin/reload", headers=auth, timeout=60)
        assert (resp.status_code, resp.json()["outcome"]) == (200, "loaded")
        answer = httpx.post(
            f"{url}/predict",
            json={"instances": request_rows(data.read_parquet(trained.data).head(3))},
        )
        assert answer.json()["model"]["version"] == v2  # immediately, no poll involved
        assert (
            httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer no"}).status_code
            == 403
        )


def test_empty_registry_is_not_ready_until_a_champion_exists(
    trained: Trained, tmp_path: Path, template_db: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    db = tmp_path / "empty.db"
    shutil.copy(template_db, db)
    uri = f"sqlite:///{db}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with service(tmp_path, uri, CHURN_RELOAD_INTERVAL=str(POLL_S)) as url:
        assert wait_until(
            lambda: httpx.get(f"{url}/model").json()["reload"]["waiting"] is not None, 60, 0.1
        )
        resp = httpx.get(f"{url}/ready")
        assert resp.status_code == 503
        assert resp.json() == {
            "ready": False,
            # The store's directories are not shown to HTTP clients.
            "detail": "model 'churn' is not in the registry at sqlite:///…/empty.db: run the "
            "pipeline "
            "(make pipeline) to train and promote one; it is picked up within 1 s, "
            "no restart needed",
        }
        assert httpx.post(f"{url}/predict", json={"instances": []}).status_code == 422
        client = MlflowClient(uri, uri)
        result = train(small_params(), client, uri, data_path=trained.data, reports_dir=None)
        assert registry.aliases(client) == {CHALLENGER: result.version}
        assert httpx.get(f"{url}/ready").status_code == 503  # a challenger is not served
        assert registry.promote(client, "auc", epsilon=0.002).promoted
        seconds_until_served(url, result.version, timeout=2 * POLL_S + 5)
        info = httpx.get(f"{url}/model").json()["served"]
        assert info["run_id"] == result.run_id
        assert info["data_md5"] == result.data_md5
        assert set(info["metrics"]) == {"auc", "f1", "precision", "recall", "accuracy", "log_loss"}


def test_every_request_has_its_access_log_line_written_in_batches(
    trained: Trained, tmp_path: Path
) -> None:
    """uvicorn's access log is written every 0.1 s instead of per request (serve/accesslog.py):
    lines show up while the service runs, and none is lost when it stops."""
    uri, _client = copy_store(trained, tmp_path, champion=trained.versions[0])
    rows = request_rows(data.read_parquet(trained.data).head(3))
    with service(tmp_path, uri, CHURN_RELOAD_INTERVAL="0") as url:
        log = tmp_path / f"serve-{url.rsplit(':', 1)[1]}.log"
        wait_ready(url)
        with httpx.Client(base_url=url) as http:
            for _ in range(20):
                assert http.post("/predict", json={"instances": rows}).status_code == 200
            assert wait_until(lambda: log.read_text().count('"POST /predict') == 20, 5, 0.05), (
                log.read_text()[-2000:]
            )
            for _ in range(5):
                assert http.post("/predict", json={"instances": []}).status_code == 422
    lines = log.read_text()
    assert lines.count('"POST /predict HTTP/1.1" 200') == 20
    assert lines.count('"POST /predict HTTP/1.1" 422') == 5


# ---------------------------------------------------------------------------------------------
# Champion and challenger on live traffic (issue 7): the real service, real models, real HTTP.


def test_challenger_traffic_split_is_sticky_within_3_points_and_feeds_drift(
    trained: Trained, tmp_path: Path
) -> None:
    from serve.traffic import bucket

    v1, _, v3 = trained.versions
    uri, _ = copy_store(trained, tmp_path, champion=v1, challenger=v3)
    df = data.read_parquet(trained.data).head(2_000)
    rows = request_rows(df)
    expected = {v: pyfunc_predict(f"models:/churn/{v}", df) for v in (v1, v3)}
    with service(tmp_path, uri, CHURN_CHALLENGER_TRAFFIC="0.1") as url:
        wait_ready(url)
        assert wait_until(
            lambda: (
                (httpx.get(f"{url}/model").json()["challenger"]["served"] or {}).get("version")
                == v3
            ),
            30,
            0.1,
        )
        versions = []
        with httpx.Client(base_url=url, timeout=10) as http:
            for i, row in enumerate(rows):  # 2,000 requests, one customer each
                resp = http.post("/predict", json=row)
                assert resp.status_code == 200, resp.text
                (pred,) = resp.json()["predictions"]
                version = pred["model_version"]
                versions.append(version)
                # Scored by the version it names, and the side its customerID hashes to.
                assert version == (v3 if bucket(row["customerID"]) < 0.1 else v1)
                assert abs(pred["churn_probability"] - expected[version][i]) <= 1e-9
            share = versions.count(v3) / len(versions)
            assert 0.07 <= share <= 0.13, share
            # Sticky: the same customers in batches of 50 get the same sides.
            again = [
                p["model_version"]
                for k in range(0, 500, 50)
                for p in http.post("/predict", json={"instances": rows[k : k + 50]}).json()[
                    "predictions"
                ]
            ]
            assert again == versions[:500]
            metrics = http.get("/metrics").text
        n3 = versions.count(v3) + again.count(v3)
        n1 = len(versions) + len(again) - n3
        assert f'churn_predictions_total{{model_version="{v3}",role="challenger"}} {n3:.1f}' in (
            metrics
        )
        assert f'churn_predictions_total{{model_version="{v1}",role="champion"}} {n1:.1f}' in (
            metrics
        )
        # What the champion scored, as histograms, compared with its training data.
        out = tmp_path / "drift"
        proc = subprocess.run(
            [ROOT / ".venv/bin/python", "-m", "churn", "drift", "--reference", "champion",
             "--current", f"{url}/monitoring/profile", "--out-dir", str(out)],
            cwd=ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode in (0, 5), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr  # one line: where the report went
    report = __import__("json").loads((out / "drift.json").read_text())
    assert report["current_rows"] == n1
    assert report["champion_version"] == v1
    assert report["reference"].startswith(f"training data of v{v1}: ")
    assert report["prediction"] is not None
    print(f"split: {share:.1%} of 2,000 requests to v{v3}; drift level {report['level']}")


def test_shadow_scores_everything_in_the_background_and_adds_under_1ms_p50(
    trained: Trained, tmp_path: Path
) -> None:
    v1, _, v3 = trained.versions
    uri, _ = copy_store(trained, tmp_path, champion=v1, challenger=v3)
    rows = request_rows(data.read_parquet(trained.data).head(200))
    with (
        service(tmp_path, uri, CHURN_SHADOW="true") as shadow_url,
        service(tmp_path, uri) as plain_url,
    ):
        for url in (shadow_url, plain_url):
            wait_ready(url)
        assert wait_until(
            lambda: (
                (httpx.get(f"{shadow_url}/model").json()["challenger"]["served"] or {}).get(
                    "version"
                )
                == v3
            ),
            30,
            0.1,
        )
        times: dict[str, list[float]] = {shadow_url: [], plain_url: []}
        with httpx.Client(timeout=10) as http:
            for i in range(700):  # interleaved, so both see the same machine load
                for url in (shadow_url, plain_url):
                    start = time.perf_counter()
                    resp = http.post(f"{url}/predict", json=rows[i % len(rows)])
                    elapsed = time.perf_counter() - start
                    assert resp.status_code == 200
                    assert resp.json()["predictions"][0]["model_version"] == v1
                    if i >= 100:  # warm-up excluded
                        times[url].append(elapsed)

            def shadow_rows() -> int:
                return int(http.get(f"{shadow_url}/model").json()["challenger"]["shadow"]["rows"])

            assert wait_until(lambda: shadow_rows() == 700, 10, 0.1), shadow_rows()
            stats = http.get(f"{shadow_url}/model").json()["challenger"]["shadow"]
    p50 = {url: float(np.median(t)) * 1000 for url, t in times.items()}
    added = p50[shadow_url] - p50[plain_url]
    print(f"p50 with shadow {p50[shadow_url]:.2f} ms, without {p50[plain_url]:.2f} ms")
    assert added < 1.0, p50
    assert stats["challenger_version"] == v3 and stats["dropped_rows"] == 0
    assert 0.0 < stats["mean_abs_diff"] < 1.0 and stats["errors"] == 0


def test_the_prediction_log_holds_every_answered_row_with_its_version_role_and_request(
    trained: Trained, tmp_path: Path
) -> None:
    """CHURN_PREDICTION_LOG on the real service: split traffic and a shadow-free champion, then
    a graceful stop; the Parquet log holds exactly what was answered."""
    from churn import predlog

    v1, _, v3 = trained.versions
    uri, _ = copy_store(trained, tmp_path, champion=v1, challenger=v3)
    rows = request_rows(data.read_parquet(trained.data).head(300))
    log_dir = tmp_path / "predictions"
    env = {"CHURN_PREDICTION_LOG": str(log_dir), "CHURN_CHALLENGER_TRAFFIC": "0.3",
           "CHURN_REQUEST_ID": "true"}  # fmt: skip
    answered: list[tuple[str, str, int, float]] = []
    start = datetime.now(UTC)
    with service(tmp_path, uri, **env) as url, httpx.Client(base_url=url, timeout=10) as http:
        wait_ready(url)
        assert wait_until(
            lambda: (http.get("/model").json()["challenger"]["served"] or {}).get("version") == v3,
            30,
            0.1,
        )
        for k in range(0, len(rows), 30):
            rid = f"req-{k}"
            resp = http.post(
                "/predict", json={"instances": rows[k : k + 30]}, headers={"X-Request-ID": rid}
            )
            assert resp.status_code == 200, resp.text
            answered += [
                (rid, p["customerID"], p["model_version"], p["churn_probability"])
                for p in resp.json()["predictions"]
            ]

        def written() -> float:
            for line in http.get("/metrics").text.splitlines():
                if line.startswith('churn_prediction_log_rows_total{outcome="written"}'):
                    return float(line.split()[-1])
            return 0.0

        assert wait_until(lambda: written() == len(answered), 20, 0.2), written()
    log = predlog.read(predlog.Location.of(str(log_dir)), start, start + timedelta(hours=1))
    got = sorted(
        zip(log["request_id"], log[schema.ID_COLUMN], log["version"], log["p_churn"], strict=True)
    )
    assert [g[:3] for g in got] == sorted(a[:3] for a in answered)
    assert np.allclose([g[3] for g in got], [a[3] for a in sorted(answered)], atol=1e-12)
    roles = dict(zip(log["version"], log["role"], strict=False))
    assert roles == {v1: "champion", v3: "challenger"}
    assert (log["decision"] == (log["p_churn"] >= 0.5)).all()
    assert list(log.columns) == list(predlog.LOG_COLUMNS)
    assert not list(log_dir.rglob(".*"))  # no partial file left behind


def test_a_service_killed_mid_traffic_leaves_only_whole_log_files(
    trained: Trained, tmp_path: Path
) -> None:
    """kill -9 while requests flow and the log flushes: every file a reader sees is whole."""
    import pyarrow.parquet as pq

    from churn import predlog

    uri, _ = copy_store(trained, tmp_path, champion=trained.versions[0])
    log_dir = tmp_path / "predictions"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env.update(MLFLOW_TRACKING_URI=uri, CHURN_PREDICTION_LOG=str(log_dir))
    rows = request_rows(data.read_parquet(trained.data).head(200))
    url, stop = f"http://127.0.0.1:{port}", threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=url, timeout=5) as http:
            while not stop.is_set():
                try:
                    http.post("/predict", json={"instances": rows})
                except httpx.HTTPError:
                    return  # the service is gone

    proc = subprocess.Popen(
        serve_command(port), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    sender = threading.Thread(target=traffic)
    try:
        wait_for_http(f"{url}/health", timeout=60, proc=proc)
        wait_ready(url)
        sender.start()
        assert wait_until(lambda: any(log_dir.rglob("part-*.parquet")), 30, 0.1)
        time.sleep(2.5)  # between two flushes (every 5 s), with rows queued
        proc.kill()  # SIGKILL: no shutdown, no last flush
        proc.wait(timeout=10)
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(timeout=10)
        stop_process(proc)
    files = sorted(log_dir.rglob("part-*.parquet"))
    assert files and all(pq.read_table(f).num_rows > 0 for f in files)  # each one whole
    everything = predlog.read(
        predlog.Location.of(str(log_dir)),
        datetime.fromtimestamp(0, UTC),
        datetime.now(UTC) + timedelta(days=1),
    )
    assert len(everything) == sum(pq.read_metadata(f).num_rows for f in files)
    assert len(everything) % len(rows) == 0  # whole requests only: no file cut mid-batch
