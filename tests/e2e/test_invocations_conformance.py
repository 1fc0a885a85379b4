"""A client of `mlflow models serve` works unchanged against our API.

The real `mlflow models serve --env-manager local` and our service (`make serve`'s uvicorn
command) run on the same trained champion; both get the same corpus: every MLflow body format,
CSV, 1, 100 and 1,000 rows, the model's own serving_input_example.json, and bad inputs. The
predictions must match to 1e-9 and the status classes must agree, except where ours is
deliberately stricter (STRICTER below; serve/README.md states the same list).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from churn import data
from churn.settings import CHAMPION, MODEL_NAME
from churn.training import train
from serve.example import request_rows
from tests.conftest import ROOT, free_port, small_params, stop_process
from tests.serve_helpers import serve_command, wait_until

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}

# Inputs MLflow's server scores (200) and ours refuses (400, naming the field and the row): rows
# the model was never trained on get a made-up probability there (its one-hot encoder ignores an
# unknown category; a tenure of 500 is extrapolated; 1.5 months is scored as it is, although
# the signature says `long`).
STRICTER = {"unknown category", "tenure out of range", "non-integral tenure"}


@dataclass(frozen=True)
class Servers:
    ours: str
    theirs: str
    model_dir: Path
    tracking_uri: str
    logs: Path


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> tuple[str, Path]:
    """One small real model, @champion in its own SQLite store; its artifacts downloaded."""
    import mlflow
    from mlflow import MlflowClient

    work = tmp_path_factory.mktemp("conformance")
    path = work / "customers.parquet"
    data.write_parquet(data.normalise(data.generate(rows=3_000, seed=5)), path)
    db = work / "mlflow.db"
    shutil.copy(template_db, db)
    uri = f"sqlite:///{db}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri, uri)
        version = train(small_params(), client, uri, data_path=path, reports_dir=None).version
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(version))
        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=str(work / "model")
            )
        )
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return uri, model_dir


def _env(uri: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    # `mlflow models serve --env-manager local` execs `uvicorn` from PATH: the venv's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[str]:
    """`argv` started with its output in `log`; yields its URL once `ready` answers 200."""
    port = int(argv[argv.index("--port" if "--port" in argv else "-p") + 1])
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def up() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(url + ready, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(up, timeout=180, interval=0.2), log.read_text()[-3000:]
        yield url
    finally:
        stop_process(proc)


def ours_command(port: int) -> list[str]:
    argv = serve_command(port)
    return argv if "--port" in argv else [*argv, "--port", str(port)]


@pytest.fixture(scope="module")
def servers(
    champion: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    uri, model_dir = champion
    logs = tmp_path_factory.mktemp("logs")
    theirs_argv = [
        str(Path(sys.executable).parent / "mlflow"), "models", "serve",
        "-m", f"models:/{MODEL_NAME}@{CHAMPION}", "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(free_port()),
    ]  # fmt: skip
    env = _env(uri)
    with (
        running(theirs_argv, env, logs / "theirs.log", "/ping") as theirs,
        running(ours_command(free_port()), env, logs / "ours.log", "/ping") as ours,
    ):
        yield Servers(ours, theirs, model_dir, uri, logs)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    """1,000 customers as clients send them (null for a new customer's TotalCharges)."""
    frame = data.normalise(data.generate(rows=1_000, seed=23))
    out = request_rows(frame)
    assert any(r["TotalCharges"] is None for r in out)  # the null path is in the corpus
    return out


def bodies(rows: list[dict[str, Any]]) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Every way MLflow's protocol carries `rows`: name -> (body, headers)."""
    features = [{k: v for k, v in r.items() if k != "customerID"} for r in rows]
    columns = list(rows[0])
    split = {"columns": columns, "data": [list(r.values()) for r in rows]}
    frame = pd.DataFrame(rows)
    out: dict[str, tuple[bytes, dict[str, str]]] = {
        "dataframe_split": (json.dumps({"dataframe_split": split}).encode(), JSON),
        "dataframe_split reordered + index": (
            pd.DataFrame(features)[columns[:0:-1]]
            .to_json(orient="split")
            .join(['{"dataframe_split": ', "}"])
            .encode(),
            JSON,
        ),
        "dataframe_records": (json.dumps({"dataframe_records": rows}).encode(), JSON),
        "dataframe_records + params": (
            json.dumps({"dataframe_records": features, "params": {"unused": 1}}).encode(),
            JSON,
        ),
        "instances": (json.dumps({"instances": rows}).encode(), JSON),
        "inputs": (json.dumps({"inputs": features}).encode(), JSON),
        "inputs + params": (json.dumps({"inputs": rows, "params": {}}).encode(), JSON),
        "csv": (frame.to_csv(index=False).encode(), CSV),
        "csv with index, charset": (
            frame.to_csv().encode(),
            {"Content-Type": "text/csv; charset=utf-8"},
        ),
    }
    return out


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=60)


@pytest.mark.parametrize("size", [1, 100, 1_000])
def test_every_format_gets_mlflows_predictions(
    servers: Servers, rows: list[dict[str, Any]], size: int
) -> None:
    for name, (body, headers) in bodies(rows[:size]).items():
        theirs, ours = post(servers.theirs, body, headers), post(servers.ours, body, headers)
        assert theirs.status_code == 200, (name, theirs.text[:500])
        assert ours.status_code == 200, (name, ours.text[:500])
        assert ours.headers["content-type"] == "application/json"
        expected, got = theirs.json()["predictions"], ours.json()["predictions"]
        assert list(ours.json()) == ["predictions"]
        assert len(got) == len(expected) == size, name
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, err_msg=name)


def test_the_models_own_serving_input_example(servers: Servers) -> None:
    example = (servers.model_dir / "serving_input_example.json").read_bytes()
    assert b"dataframe_split" in example
    theirs, ours = post(servers.theirs, example, JSON), post(servers.ours, example, JSON)
    assert theirs.status_code == ours.status_code == 200, ours.text
    np.testing.assert_allclose(
        ours.json()["predictions"], theirs.json()["predictions"], rtol=0, atol=1e-9
    )


def test_ping_and_version_answer_as_mlflow(servers: Servers) -> None:
    for path in ("/ping", "/version"):
        theirs, ours = httpx.get(servers.theirs + path), httpx.get(servers.ours + path)
        assert (ours.status_code, ours.text) == (theirs.status_code, theirs.text), path
        assert ours.headers["content-type"] == theirs.headers["content-type"]


def bad_inputs(row: dict[str, Any]) -> dict[str, tuple[bytes, dict[str, str]]]:
    def records(*changed: dict[str, Any]) -> bytes:
        return json.dumps({"dataframe_records": list(changed)}).encode()

    no_tenure = {k: v for k, v in row.items() if k != "tenure"}
    return {
        "not JSON": (b'{"dataframe_records": [', JSON),
        "a list": (json.dumps([row]).encode(), JSON),
        "no format field": (json.dumps({"rows": [row]}).encode(), JSON),
        "another field beside the format": (
            json.dumps({"inputs": [row], "signature_name": "x"}).encode(),
            JSON,
        ),  # 200 on both
        "two format fields": (json.dumps({"inputs": [row], "instances": [row]}).encode(), JSON),
        "missing column": (records(no_tenure), JSON),
        "non-integral tenure": (records({**row, "tenure": 1.5}), JSON),
        "whole-number float tenure": (records({**row, "tenure": 8.0}), JSON),  # 200 on both
        "text for tenure": (records({**row, "tenure": "twelve"}), JSON),
        "unknown category": (records({**row, "Contract": "Monthly"}), JSON),
        "tenure out of range": (records({**row, "tenure": 500}), JSON),
        "no rows": (
            json.dumps({"dataframe_split": {"columns": list(row), "data": []}}).encode(),
            JSON,
        ),
        "csv non-integral tenure": (pd.DataFrame([{**row, "tenure": 1.5}]).to_csv().encode(), CSV),
        "text/plain": (records(row), {"Content-Type": "text/plain"}),
        "latin-1": (records(row), {"Content-Type": "application/json; charset=latin-1"}),
    }


def test_bad_inputs_same_status_class_except_where_stricter(
    servers: Servers, rows: list[dict[str, Any]]
) -> None:
    seen: dict[str, tuple[int, int]] = {}
    for name, (body, headers) in bad_inputs(rows[0]).items():
        theirs, ours = post(servers.theirs, body, headers), post(servers.ours, body, headers)
        seen[name] = (ours.status_code, theirs.status_code)
        assert ours.status_code < 500, (name, ours.text)
        if ours.status_code != 200:  # MLflow's error shape
            assert set(ours.json()) == {"error_code", "message"}, (name, ours.text)
    differ = {name for name, (o, t) in seen.items() if o // 100 != t // 100}
    assert differ == STRICTER, seen
    for name in STRICTER:
        assert seen[name] == (400, 200), (name, seen[name])
    assert seen["whole-number float tenure"] == (200, 200), seen
    assert seen["another field beside the format"] == (200, 200), seen
    assert seen["text/plain"] == seen["latin-1"] == (415, 415), seen


def test_stricter_errors_name_the_field_and_row(
    servers: Servers, rows: list[dict[str, Any]]
) -> None:
    body = json.dumps({"inputs": [rows[0], {**rows[1], "Contract": "Monthly"}]}).encode()
    answer = post(servers.ours, body, JSON)
    assert answer.status_code == 400
    assert answer.json() == {
        "error_code": "BAD_REQUEST",
        "message": "inputs[1].Contract: must be one of 'Month-to-month', 'One year', 'Two year'; "
        "got 'Monthly'",
    }


def test_predict_points_an_mlflow_body_to_invocations(servers: Servers) -> None:
    example = (servers.model_dir / "serving_input_example.json").read_bytes()
    answer = httpx.post(f"{servers.ours}/predict", content=example, headers=JSON)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(
        "body: this is MLflow's scoring format (dataframe_split): send it to POST /invocations"
    )


def test_request_id_is_returned_and_logged(
    champion: tuple[str, Path], tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    """CHURN_REQUEST_ID: the id comes back and ends uvicorn's access-log line (real uvicorn)."""
    uri, _ = champion
    log = tmp_path / "ours.log"
    env = _env(uri, CHURN_REQUEST_ID="true")
    with running(ours_command(free_port()), env, log, "/ping") as url:
        body = json.dumps({"dataframe_records": rows[:3]}).encode()
        given = httpx.post(
            f"{url}/invocations", content=body, headers={**JSON, "X-Request-ID": "req-42"}
        )
        made = httpx.post(f"{url}/predict", json={"instances": rows[:2]})
        assert given.status_code == made.status_code == 200
        assert given.headers["x-request-id"] == "req-42"
        generated = made.headers["x-request-id"]
        assert len(generated) == 32
        assert wait_until(lambda: generated in log.read_text(), timeout=10)
    lines = log.read_text().splitlines()
    assert any('"POST /invocations HTTP/1.1" 200' in ln and ln.endswith("request_id=req-42")
               for ln in lines), lines[-5:]  # fmt: skip
    assert any(ln.endswith(f"request_id={generated}") for ln in lines)
