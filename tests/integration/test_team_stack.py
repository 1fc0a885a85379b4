"""compose.yaml's `team` profile, for real: PostgreSQL backend store + S3-compatible artifacts.

A PostgreSQL cluster of our own (initdb/pg_ctl in a tmp dir, on a free port), moto's S3 server,
and `mlflow server` started with the very command line compose renders for the team profile
(`docker compose config`, with the hosts turned into these loopback servers). Then the course's
scripts run against it: train -> promote -> serve (the real uvicorn service, /predict) ->
train a better model -> promote -> the service follows -> rollback -> the service follows.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.api_models import EXAMPLE_REQUEST
from tests.conftest import ROOT, free_port, stop_process, wait_for_http
from tests.serve_helpers import serve_command

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
BUCKET = "churn-artifacts"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SAMPLE = EXAMPLE_REQUEST["instances"][1]  # 5575-GNVDE


def pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: p.split("/")[4])
    return Path(versions[-1]).parent if versions else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields the mlflow database URL."""
    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(
                "PostgreSQL binaries (initdb, pg_ctl) are missing: make system-deps installs them"
            )
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) are not installed (apt-get install postgresql)"
        )
    # initdb refuses to run as root: run the server as an unprivileged user, in a dir it owns.
    as_user: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    if os.geteuid() == 0:
        user = "postgres" if _has_user("postgres") else "nobody"
        entry = pwd.getpwnam(user)
        os.chown(work, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    data, port = work / "data", free_port()

    def pg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user, *args], capture_output=True, text=True, check=check, timeout=120
        )

    pg(str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8")
    options = (
        f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    started = pg(
        str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(work / "pg.log"),
        "-w", "-t", "60", "start", check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr + (work / "pg.log").read_text()
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="mlflow", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE mlflow")
        conn.close()
        # The driver named explicitly: SQLAlchemy 2.1 defaults postgresql:// to psycopg 3.
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(work, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server on a free loopback port, with the artifact bucket."""
    import boto3

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **AWS},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/", timeout=60, proc=proc)
        boto3.client("s3", endpoint_url=url, **_creds()).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        stop_process(proc)


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_DEFAULT_REGION"],
    }


def compose_team_mlflow(backend: str, artifacts: str, s3_url: str) -> dict:  # type: ignore[type-arg]
    """The `mlflow` service as `docker compose --env-file deploy/team.env config` renders it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(MLFLOW_BACKEND_STORE_URI=backend, MLFLOW_ARTIFACTS_DESTINATION=artifacts,
               MLFLOW_S3_ENDPOINT_URL=s3_url, **AWS)  # fmt: skip
    rendered = subprocess.run(
        [str(BIN / "docker-compose"), "-f", "compose.yaml", "--env-file", "deploy/team.env",
         "config", "--format", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return json.loads(rendered)["services"]["mlflow"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def team_server(postgres: str, s3: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    artifacts = f"s3://{BUCKET}/mlflow"
    service = compose_team_mlflow(postgres, artifacts, s3)
    argv = list(service["command"])
    assert argv[:2] == ["mlflow", "server"]
    assert argv[argv.index("--backend-store-uri") + 1] == postgres
    assert argv[argv.index("--artifacts-destination") + 1] == artifacts
    assert service["environment"]["MLFLOW_S3_ENDPOINT_URL"] == s3
    port = free_port()
    argv[0] = str(BIN / "mlflow")
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    argv += ["--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({k: str(v) for k, v in service["environment"].items()})
    log = tmp_path_factory.mktemp("team") / "mlflow.log"
    proc = subprocess.Popen(argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", timeout=120, proc=proc)
        yield url
    except Exception:
        print(log.read_text()[-5000:])
        raise
    finally:
        stop_process(proc)


def script(uri: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """A course script as a user runs it: only the tracking URI; no S3 credentials needed
    (the server proxies artifacts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _params(path: Path, model: str) -> Path:
    text = (ROOT / "params.yaml").read_text().replace("type: logistic_regression", f"type: {model}")
    if model == "random_forest":  # deliberately weak: stumps, so the next model clearly wins
        text = text.replace("n_estimators: 200", "n_estimators: 3").replace(
            "max_depth: 10", "max_depth: 1"
        )
    path.write_text(text)
    return path


def _call(url: str, path: str, body: object | None = None, token: str | None = None) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None and token is None else "POST",
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_train_promote_serve_rollback_on_postgres_and_s3(
    team_server: str, postgres: str, s3: str, small_data: Path, tmp_path: Path
) -> None:
    uri = team_server
    weak = _params(tmp_path / "weak.yaml", "random_forest")
    good = _params(tmp_path / "good.yaml", "logistic_regression")
    common = ["--data", str(small_data), "--reports", str(tmp_path / "reports")]

    r = script(uri, "train.py", "--params", str(weak), *common)
    assert r.returncode == 0, r.stderr
    assert "registered churn v1 as @challenger" in r.stdout
    r = script(uri, "promote.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "PROMOTED: @champion -> v1 (cold start)"

    # The real service, configured as the compose `api` service is, against the team server.
    port, token = free_port(), "team-stack-token"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(MLFLOW_TRACKING_URI=uri, CHURN_RELOAD_INTERVAL="0", CHURN_ADMIN_TOKEN=token)
    log = tmp_path / "api.log"
    api = subprocess.Popen(
        serve_command(port),  # the compose `api` service runs the image's CMD: the same line
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ready", timeout=120, proc=api)
        assert _call(url, "/predict", {"instances": [SAMPLE]})["model"]["version"] == 1

        r = script(uri, "train.py", "--params", str(good), *common)
        assert r.returncode == 0, r.stderr
        r = script(uri, "promote.py")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.splitlines()[-1] == "PROMOTED: @champion -> v2"
        assert _call(url, "/admin/reload", {}, token=token)["version"] == 2, log.read_text()
        assert _call(url, "/predict", {"instances": [SAMPLE]})["model"]["version"] == 2

        r = script(uri, "rollback.py")
        assert r.returncode == 0, r.stderr
        assert _call(url, "/admin/reload", {}, token=token)["version"] == 1
        assert _call(url, "/predict", {"instances": [SAMPLE]})["model"]["version"] == 1
    except Exception:
        print(log.read_text()[-5000:])
        raise
    finally:
        stop_process(api)

    # The metadata is in PostgreSQL and the model files are in the S3 bucket.
    import boto3
    import psycopg2

    with psycopg2.connect(postgres.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT alias, version FROM registered_model_aliases ORDER BY alias")
        assert cur.fetchall() == [("champion", 1), ("prev-champion", 2)]
    keys = [
        o["Key"]
        for o in boto3.client("s3", endpoint_url=s3, **_creds())
        .list_objects_v2(Bucket=BUCKET)
        .get("Contents", [])
    ]
    assert any(k.startswith("mlflow/") and k.endswith("MLmodel") for k in keys), keys[:20]
