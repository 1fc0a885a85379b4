"""The images run: tracking + pipeline on a network of the test's own, the API against them,
and the baked image with no tracking server at all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from churn import data
from churn.settings import MODEL_NAME
from deploy import containers
from deploy.containers import Engine
from serve.api_models import EXAMPLE_REQUEST
from serve.example import request_rows
from tests.conftest import small_params
from tests.containers.conftest import PREFIX, Built, Container, http, wait_served

# The first test of a session also builds every image (cold: ~10 min on a loaded 2-core machine).
pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]


def compose_default(service: str, variable: str) -> str:
    """The value compose.yaml gives `variable` in `service` when nothing overrides it."""
    compose = yaml.safe_load(containers.COMPOSE.read_text())
    value = str(compose["services"][service]["environment"][variable])
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


@dataclass
class Tracking:
    container: Container
    network: str

    @property
    def uri(self) -> str:  # from the host
        return self.container.url


@pytest.fixture(scope="module")
def tracking(built: Built, start: Any, network: str) -> Iterator[Tracking]:
    """The tracking image on the test's network (as `mlflow`), published on 127.0.0.1."""
    hosts = compose_default("mlflow", "MLFLOW_SERVER_ALLOWED_HOSTS")
    mlflow = start(
        built.tags["tracking"], "mlflow", port=5000, network=network, alias="mlflow",
        env={"MLFLOW_SERVER_ALLOWED_HOSTS": hosts},
    )  # fmt: skip
    seconds = mlflow.wait_healthy()
    print(f"\ntracking container healthy (its HEALTHCHECK) after {seconds:.0f} s")
    yield Tracking(mlflow, network)


@pytest.fixture(scope="module")
def champion(engine: Engine, built: Built, tracking: Tracking) -> int:
    """The pipeline image, run once to its end: it trains and promotes into the tracking one."""
    from mlflow import MlflowClient

    proc = engine.run(
        "run", "--rm", "--name", f"{PREFIX}-pipeline", "--network", tracking.network,
        "--env", "MLFLOW_TRACKING_URI=http://mlflow:5000", built.tags["pipeline"],
        timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"pipeline container failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )
    version = MlflowClient(tracking.uri).get_model_version_by_alias(MODEL_NAME, "champion")
    return int(version.version)


def test_the_pipeline_container_promotes_into_the_tracking_container(champion: int) -> None:
    assert champion == 1


def _pyfunc(tracking_uri: str, uri: str, frame: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    return np.asarray(mlflow.pyfunc.load_model(uri).predict(data.features(frame)))


def test_the_api_container_serves_the_champion_and_follows_a_promotion(
    built: Built,
    start: Any,
    tracking: Tracking,
    champion: int,
    small_data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    from churn.training import train

    api = start(
        built.tags["runtime"], "api", port=8000, network=tracking.network,
        env={"MLFLOW_TRACKING_URI": "http://mlflow:5000", "CHURN_RELOAD_INTERVAL": "1"},
    )  # fmt: skip
    api.wait_healthy()
    assert wait_served(api.url)["model"]["version"] == champion
    frame = data.read_parquet(small_data).head(40)
    code, body = http("POST", f"{api.url}/predict", {"instances": request_rows(frame)})
    assert code == 200, body
    got = np.array([p["churn_probability"] for p in body["predictions"]])
    expected = _pyfunc(tracking.uri, f"models:/{MODEL_NAME}/{champion}", frame, monkeypatch)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)

    # A promotion made from the host, against the same server: the API follows, no restart.
    client = MlflowClient(tracking.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    newer = train(small_params(C=0.5), client, tracking.uri, data_path=small_data, reports_dir=None)
    client.set_registered_model_alias(MODEL_NAME, "champion", str(newer.version))
    assert wait_served(api.url, newer.version, timeout=120)["model"]["version"] == newer.version
    assert api.state()["Running"] and api.state().get("RestartCount", 0) == 0


def test_the_baked_image_scores_with_no_tracking_server(
    engine: Engine, built: Built, start: Any, tracking: Tracking, champion: int
) -> None:
    tag = f"{PREFIX}-api:v{champion}"
    args = {"MODEL_VERSION": str(champion), "SOURCE_TRACKING_URI": tracking.uri}
    try:
        seconds = containers.build(engine, "baked", tag, built.bases, args, network="host")
        print(f"\nbaked image built in {seconds:.0f} s")
        # Not on the test's network: no tracking server can be reached from there.
        baked = start(tag, "baked", port=8000)
        baked.wait_healthy()
        ready = wait_served(baked.url)
        assert ready["model"]["version"] == champion
        uid = engine.run("exec", baked.name, "id", "-u", check=True)
        assert uid.stdout.strip() == "10001", "the baked image runs as root"
        code, body = http("POST", f"{baked.url}/predict", EXAMPLE_REQUEST)
        assert code == 200 and body["model"]["version"] == champion, body
        code, model = http("GET", f"{baked.url}/model")
        assert code == 200 and model["served"]["uri"] == f"models:/{MODEL_NAME}/{champion}", model
    finally:
        engine.run("rm", "--force", f"{PREFIX}-baked", timeout=120)
        engine.run("rmi", "--force", tag, timeout=120)
