"""MLflow's own webhook delivery, from a real `mlflow server`, moves the served model.

Polling is off in this service, so only the signed webhook can make it pick up the promotion.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import promote
from churn import tracking
from churn.training import train
from tests.conftest import running_mlflow_server, small_params
from tests.e2e.test_serve import seconds_until_served, service

pytestmark = pytest.mark.e2e

SECRET = "webhook-test-secret"


def test_a_signed_mlflow_webhook_swaps_the_model_without_polling(
    tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow only delivers to https on public addresses unless told otherwise (SSRF guard).
    server_env = {
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    }
    with running_mlflow_server(tmp_path, **server_env) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        client = tracking.connect(uri)
        env = {"CHURN_RELOAD_INTERVAL": "0", "CHURN_WEBHOOK_SECRET": SECRET}
        with service(tmp_path, uri, **env) as url:
            assert httpx.get(f"{url}/ready").status_code == 503  # empty registry
            # Register the webhook first: the server caches its webhook list (60 s by default,
            # MLFLOW_WEBHOOK_CACHE_TTL), so one added after an alias event is seen only later.
            client.create_webhook(
                name="churn-serve",
                url=f"{url}/webhooks/mlflow",
                events=["model_version_alias.created"],
                secret=SECRET,
            )
            train(small_params(), client, uri, data_path=small_data, reports_dir=None)
            assert promote.main([]) == 0  # cold start: v1 becomes champion
            seconds_until_served(url, 1, timeout=30)
            train(small_params(), client, uri, data_path=small_data, reports_dir=None)
            assert promote.main(["--epsilon", "0"]) == 0  # v2 ties v1, epsilon 0 promotes
            seconds = seconds_until_served(url, 2, timeout=30)
            print(f"\nwebhook: v2 served {seconds:.2f} s after promotion (polling off)")
            assert httpx.get(f"{url}/model").json()["reload"]["interval_s"] == 0

            # A forged delivery (wrong secret) is refused and changes nothing.
            forged = httpx.post(
                f"{url}/webhooks/mlflow",
                content=b'{"entity": "model_version_alias", "action": "created"}',
                headers={
                    "X-MLflow-Signature": "v1,Zm9yZ2Vk",
                    "X-MLflow-Delivery-Id": "x",
                    "X-MLflow-Timestamp": "0",
                },
            )
            assert forged.status_code == 401
