"""The service with a fake registry: validation messages, response shape, readiness, admin auth,
hot-swap bookkeeping, webhook signatures, metrics. No MLflow, no network."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from churn import schema
from serve import api_models
from serve.api_models import EXAMPLE_REQUEST, EXAMPLE_ROWS
from serve.app import create_app, main
from serve.config import ServeSettings
from serve.example import curl
from serve.security import DeliveryLog, sign
from tests.serve_helpers import FakeRegistry, wait_until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"
SECRET = "whsec-test"
NO_CHAMPION = (
    "no version of model 'churn' has alias @champion at sqlite:///fake.db: "
    "run the pipeline (make pipeline) to train and promote one"
)


def settings(**overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "tracking_uri": "sqlite:///fake.db",
        "reload_interval": 0,
        "max_batch_size": 5,
        **overrides,
    }
    return ServeSettings(**values)


def start(registry: FakeRegistry, **overrides: Any) -> TestClient:
    return TestClient(create_app(settings(**overrides), registry=registry))


def ready(client: TestClient, timeout: float = 5.0) -> None:
    assert wait_until(lambda: client.get("/ready").status_code == 200, timeout)


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add(1, champion=True)
    return reg


@pytest.fixture
def client(registry: FakeRegistry) -> Iterator[TestClient]:
    with start(registry, admin_token=TOKEN, webhook_secret=SECRET) as c:
        ready(c)
        yield c


def row(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(EXAMPLE_ROWS[0])
    for key, value in changes.items():
        if value is ...:
            del out[key]
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# /predict: the response


def test_predict_batch_returns_one_prediction_per_row_and_the_model(
    client: TestClient, registry: FakeRegistry
) -> None:
    resp = client.post("/predict", json=EXAMPLE_REQUEST)
    assert resp.status_code == 200
    assert resp.json() == {
        "predictions": [
            {
                "customerID": "7590-VHVEG",
                "churn_probability": 0.01,
                "churn": False,
                "model_version": 1,
            },
            {
                "customerID": "5575-GNVDE",
                "churn_probability": 0.34,
                "churn": False,
                "model_version": 1,
            },
        ],
        "model": {"name": "churn", "version": 1, "run_id": "run1"},
        "threshold": 0.5,
    }
    assert len(registry.predictors[1].frames) == 1  # one predict call per request


def test_the_encoded_prediction_is_the_documented_one() -> None:
    """/predict encodes `PredictionRow` structs; OpenAPI documents `Prediction`: same fields,
    same order (the answer's bytes put them in this order)."""
    assert api_models.PredictionRow.__struct_fields__ == tuple(api_models.Prediction.model_fields)


def test_predict_single_object_optional_id_and_threshold(
    client: TestClient, registry: FakeRegistry
) -> None:
    one = row(customerID=..., tenure=60)
    resp = client.post("/predict", json=one)
    assert resp.status_code == 200
    assert resp.json()["predictions"] == [
        {"customerID": None, "churn_probability": 0.6, "churn": True, "model_version": 1}
    ]
    # Exactly at the threshold counts as churn (>=).
    resp = client.post("/predict", json=row(tenure=50))
    assert resp.json()["predictions"][0]["churn"] is True


def test_model_input_frame_has_the_training_dtypes(
    client: TestClient, registry: FakeRegistry
) -> None:
    rows = [
        row(MonthlyCharges=70, TotalCharges=None, tenure=0),
        row(TotalCharges="", customerID="x"),
        row(TotalCharges=" "),
        row(TotalCharges=100),
    ]
    assert client.post("/predict", json={"instances": rows}).status_code == 200
    frame = registry.predictors[1].frames[-1]
    assert list(frame.columns) == list(schema.FEATURE_NAMES)
    for name in schema.FEATURE_NAMES:
        expected = "object" if name in schema.CATEGORICAL_FEATURES else None
        expected = expected or schema.BY_NAME[name].pandas_dtype
        assert str(frame[name].dtype) == expected, name
    assert frame["MonthlyCharges"].tolist()[0] == 70.0
    total = frame["TotalCharges"].to_numpy()
    assert np.isnan(total[:3]).all() and total[3] == 100.0


def test_a_blank_total_charges_is_accepted_exactly_as_the_openapi_schema_says(
    client: TestClient,
) -> None:
    """The fuzzer sends what the schema forbids and expects a 4xx: a blank TotalCharges taken as
    null must be documented, with the very pattern the service applies."""
    spec = client.get("/openapi.json").json()["components"]["schemas"]["Customer"]
    allowed = spec["properties"]["TotalCharges"]["anyOf"]
    (pattern,) = [a["pattern"] for a in allowed if a.get("type") == "string"]
    for value in ["", " ", "\t\r\n ", "\x1c", "\u00a0", "0", "n/a"]:
        status = client.post("/predict", json=row(TotalCharges=value)).status_code
        assert status == (200 if re.fullmatch(pattern, value) else 422), repr(value)


# ---------------------------------------------------------------------------------------------
# /predict: every validation path, with the exact message a client reads


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"Contract": "Monthly"},
            "Contract",
            "must be one of 'Month-to-month', 'One year', 'Two year'; got 'Monthly'",
        ),
        ({"gender": None}, "gender", "must be one of 'Female', 'Male'; got null"),
        ({"Partner": 1}, "Partner", "must be one of 'Yes', 'No'; got 1"),
        ({"gender": ...}, "gender", "field required"),
        ({"foo": 1}, "foo", "unknown field"),
        (
            {"Churn": "Yes"},
            "Churn",
            "unknown field (the label is what the model predicts; leave it out)",
        ),
        ({"tenure": "12"}, "tenure", "must be an integer from 0 to 72; got '12'"),
        ({"tenure": 12.5}, "tenure", "must be an integer from 0 to 72; got 12.5"),
        ({"tenure": 73}, "tenure", "must be an integer from 0 to 72; got 73"),
        ({"tenure": -1}, "tenure", "must be an integer from 0 to 72; got -1"),
        ({"SeniorCitizen": True}, "SeniorCitizen", "must be 0 or 1; got true"),
        ({"SeniorCitizen": 2}, "SeniorCitizen", "must be 0 or 1; got 2"),
        ({"MonthlyCharges": "70"}, "MonthlyCharges", "must be a number >= 0; got '70'"),
        ({"MonthlyCharges": -5}, "MonthlyCharges", "must be a number >= 0; got -5"),
        ({"MonthlyCharges": None}, "MonthlyCharges", "must be a number >= 0; got null"),
        ({"TotalCharges": "29.85"}, "TotalCharges", "must be a number >= 0 or null; got '29.85'"),
        ({"TotalCharges": [1]}, "TotalCharges", "must be a number >= 0 or null; got a list"),
        (
            {"customerID": 7590},
            "customerID",
            "must be a string of at most 64 characters or null; got 7590",
        ),
    ],
)
def test_an_invalid_field_is_named_with_its_row(
    client: TestClient, changes: dict[str, Any], field: str, message: str
) -> None:
    rows = [row(), row(), row(), row(**changes)]
    resp = client.post("/predict", json={"instances": rows})
    assert resp.status_code == 422
    assert resp.json() == {
        "detail": f"instances[3].{field}: {message}",
        "errors": [{"field": f"instances[3].{field}", "message": message}],
    }
    # The same customer sent alone is named without the batch prefix.
    alone = client.post("/predict", json=row(**changes)).json()
    assert alone["detail"] == f"{field}: {message}"


def test_every_error_is_listed_in_body_order(client: TestClient) -> None:
    rows = [row(Contract="Monthly"), row(), row(tenure="x", gender=...)]
    body = client.post("/predict", json={"instances": rows}).json()
    assert body["detail"] == (
        "instances[0].Contract: must be one of 'Month-to-month', 'One year', 'Two year'; "
        "got 'Monthly' (and 2 more errors)"
    )
    assert [e["field"] for e in body["errors"]] == [
        "instances[0].Contract",
        "instances[2].gender",
        "instances[2].tenure",
    ]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b'{"instances": [', "body", "not valid JSON: unexpected end of data (line 1, column 16)"),
        (b"", "body", "not valid JSON: input is a zero-length, empty document (line 1, column 1)"),
        (
            b"[1, 2]",
            "body",
            'must be an object: {"instances": [...]} or one customer; got a list',
        ),
        (b'{"instances": []}', "instances", "must hold 1 to 5 rows; got 0"),
        (
            orjson.dumps({"instances": [EXAMPLE_ROWS[0]] * 6}),
            "instances",
            "must hold 1 to 5 rows; got 6",
        ),
        (
            b'{"instances": {"a": 1}}',
            "instances",
            "must be a list of customer objects; got an object",
        ),
        (
            b'{"instances": "x"}',
            "instances",
            "must be a list of customer objects; got 'x'",
        ),
        (b'{"instances": [3]}', "instances[0]", "must be a customer object; got 3"),
        (
            orjson.dumps({"instances": [EXAMPLE_ROWS[0]], "threshold": 0.2}),
            "threshold",
            "unknown field",
        ),
    ],
)
def test_an_invalid_body_is_named(
    client: TestClient, body: bytes, field: str, message: str
) -> None:
    resp = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert resp.json() == {
        "detail": f"{field}: {message}",
        "errors": [{"field": field, "message": message}],
    }


def test_a_body_over_the_size_limit_is_refused(registry: FakeRegistry) -> None:
    with start(registry, max_body_bytes=2048) as c:
        ready(c)
        resp = c.post("/predict", json={"instances": [EXAMPLE_ROWS[0]] * 5})
        assert resp.status_code == 413
        message = "larger than 2048 bytes (CHURN_MAX_BODY_BYTES)"
        assert resp.json() == {
            "detail": f"body: {message}",
            "errors": [{"field": "body", "message": message}],
        }
        assert c.post("/predict", json=EXAMPLE_ROWS[0]).status_code == 200


# ---------------------------------------------------------------------------------------------
# Readiness and reloading


def test_no_champion_503_then_ready_without_restart() -> None:
    reg = FakeRegistry()
    with start(reg, reload_interval=0.05) as c:
        assert wait_until(lambda: c.get("/model").json()["reload"]["waiting"] is not None, 5)
        expected = {
            "ready": False,
            "detail": f"{NO_CHAMPION}; it is picked up within 0.05 s, no restart needed",
        }
        resp = c.get("/ready")
        assert (resp.status_code, resp.json()) == (503, expected)
        resp = c.post("/predict", json=EXAMPLE_REQUEST)
        assert (resp.status_code, resp.json()) == (503, expected)
        assert c.get("/health").json() == {"status": "ok"}
        info = c.get("/model").json()
        assert info["served"] is None and info["ready"] is False
        assert info["reload"]["waiting"] == NO_CHAMPION
        assert info["reload"]["failures"] == 0  # an empty registry is a state, not a failure

        reg.add(1, champion=True)
        ready(c)
        assert c.post("/predict", json=EXAMPLE_REQUEST).json()["model"]["version"] == 1


def test_admin_reload_swaps_to_the_new_champion(client: TestClient, registry: FakeRegistry) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = client.post("/admin/reload", headers=auth)
    assert resp.json() == {
        "outcome": "unchanged",
        "version": 1,
        "previous_version": 1,
        "detail": "serving v1",
    }
    registry.add(2, offset=0.5, champion=True)
    resp = client.post("/admin/reload", headers=auth)
    assert (resp.status_code, resp.json()) == (
        200,
        {"outcome": "loaded", "version": 2, "previous_version": 1, "detail": "now serving v2"},
    )
    body = client.post("/predict", json=EXAMPLE_ROWS[0]).json()
    assert body["model"]["version"] == 2
    assert body["predictions"][0]["churn_probability"] == pytest.approx(0.51)
    served = client.get("/model").json()["served"]
    assert served["version"] == 2 and served["aliases"] == ["champion"]
    assert served["data_md5"] == "md5-2" and served["metrics"] == {"auc": 0.82}


def test_a_broken_version_keeps_the_old_one_serving_and_is_retried(
    client: TestClient, registry: FakeRegistry
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    registry.add(2, champion=True)
    registry.broken.add(2)
    # The file's directory is not shown: answers never say where files live on the server.
    error = "loading v2 failed: OSError: No such file or directory: '…/model.skops'"
    resp = client.post("/admin/reload", headers=auth)
    assert (resp.status_code, resp.json()) == (
        503,
        {
            "outcome": "failed",
            "version": 1,
            "previous_version": 1,
            "detail": f"{error}; still serving v1",
        },
    )
    assert client.post("/predict", json=EXAMPLE_ROWS[0]).json()["model"]["version"] == 1
    assert client.get("/ready").status_code == 200
    info = client.get("/model").json()
    assert info["served"]["version"] == 1
    assert info["served"]["aliases"] == []  # @champion has moved on to v2
    reload = info["reload"]
    assert reload["last_error"]["message"] == error
    assert (reload["last_error"]["stage"], reload["last_error"]["version"]) == ("load", 2)
    assert (reload["failures"], reload["consecutive_failures"]) == (1, 1)

    client.post("/admin/reload", headers=auth)  # the next check tries again
    assert registry.loads == [1, 2, 2]
    assert client.get("/model").json()["reload"]["failures"] == 2
    registry.broken.clear()
    assert client.post("/admin/reload", headers=auth).json()["outcome"] == "loaded"
    reload = client.get("/model").json()["reload"]
    assert (reload["failures"], reload["consecutive_failures"]) == (2, 0)
    metrics = client.get("/metrics").text
    assert 'churn_model_reload_failures_total{stage="load"} 2.0' in metrics
    assert "churn_model_reloads_total 2.0" in metrics


def test_an_unreachable_registry_is_a_counted_failure(
    client: TestClient, registry: FakeRegistry
) -> None:
    registry.unreachable = True
    resp = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 503
    assert resp.json()["detail"] == (
        "resolving the alias failed: ConnectionError: tracking server unreachable; still serving v1"
    )
    assert client.get("/model").json()["reload"]["last_error"]["stage"] == "resolve"


def test_with_polling_off_a_failed_start_is_still_retried() -> None:
    """CHURN_RELOAD_INTERVAL=0: a registry down at start must not leave the service empty (it
    said "retrying" and never did); once something is served, nothing polls."""
    reg = FakeRegistry(unreachable=True)
    reg.add(1, champion=True)
    with start(reg, reload_interval=0) as c:
        assert wait_until(lambda: c.get("/model").json()["reload"]["last_error"] is not None, 5)
        assert c.get("/ready").json()["detail"].endswith("; retrying")
        reg.unreachable = False
        ready(c, timeout=8)  # first retry after ~1 s, then 2 s, 4 s ...
        reg.add(2, champion=True)
        time.sleep(2.5)
        assert reg.loads == [1]


def test_polling_picks_up_a_promotion_and_a_rollback() -> None:
    reg = FakeRegistry()
    reg.add(1, champion=True)
    reg.add(2)
    with start(reg, reload_interval=0.05) as c:
        ready(c)

        def version() -> int:
            return int(c.post("/predict", json=EXAMPLE_ROWS[0]).json()["model"]["version"])

        reg.aliases["champion"] = 2
        assert wait_until(lambda: version() == 2, 5)
        reg.aliases["champion"] = 1
        assert wait_until(lambda: version() == 1, 5)
        assert reg.loads == [1, 2, 1]


# ---------------------------------------------------------------------------------------------
# Admin auth


def test_admin_reload_is_absent_without_a_token(registry: FakeRegistry) -> None:
    with start(registry, admin_token="  ") as c:
        resp = c.post("/admin/reload", headers={"Authorization": "Bearer x"})
        assert resp.status_code == 404
        assert resp.json()["detail"] == "path: no such endpoint POST /admin/reload; see /docs"
        assert "/admin/reload" not in c.get("/openapi.json").json()["paths"]


MALFORMED = "malformed Authorization header: send 'Authorization: Bearer <token>'"


@pytest.mark.parametrize(
    ("header", "status", "detail"),
    [
        (None, 401, "missing Authorization header: send 'Authorization: Bearer <token>'"),
        ("Basic czNjcmV0", 401, MALFORMED),
        ("Bearer", 401, MALFORMED),
        ("Bearer a b", 401, MALFORMED),
        ("Bearer wrong-token", 403, "invalid admin token"),
        (f"Bearer {TOKEN}x", 403, "invalid admin token"),
    ],
)
def test_admin_reload_refuses_bad_credentials(
    client: TestClient, registry: FakeRegistry, header: str | None, status: int, detail: str
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    resp = client.post("/admin/reload", headers=headers)
    assert (resp.status_code, resp.json()) == (status, {"detail": detail})
    if status == 401:
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert registry.loads == [1]  # nothing was reloaded


def test_admin_reload_accepts_the_token_any_case_scheme(client: TestClient) -> None:
    resp = client.post("/admin/reload", headers={"Authorization": f"bearer {TOKEN}"})
    assert resp.status_code == 200


# ---------------------------------------------------------------------------------------------
# MLflow webhook


def alias_event(alias: str = "champion", name: str = "churn", version: str = "2") -> bytes:
    return orjson.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "timestamp": "2026-07-01T00:00:00+00:00",
            "data": {"name": name, "alias": alias, "version": version},
        }
    )


def signed(body: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if at is None else at)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": "d-1",
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(secret, "d-1", ts, body),
    }


def test_our_signature_is_mlflows() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = alias_event()
    assert sign(SECRET, "d-1", "1700000000", body) == _generate_hmac_signature(
        SECRET, "d-1", "1700000000", body.decode()
    )


def test_a_signed_alias_event_triggers_a_reload(client: TestClient, registry: FakeRegistry) -> None:
    registry.add(2, champion=True)
    body = alias_event()
    resp = client.post("/webhooks/mlflow", content=body, headers=signed(body))
    assert (resp.status_code, resp.json()) == (
        202,
        {"accepted": True, "detail": "re-checking @champion of 'churn'"},
    )
    assert wait_until(lambda: client.get("/ready").json()["model"]["version"] == 2, 5)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (alias_event(alias="challenger"), "ignored: model_version_alias.created for 'churn'"),
        (alias_event(name="other"), "ignored: model_version_alias.created for 'other'"),
        (
            orjson.dumps(
                {"entity": "model_version", "action": "created", "data": {"name": "churn"}}
            ),
            "ignored: model_version.created for 'churn'",
        ),
    ],
)
def test_other_events_are_acknowledged_and_ignored(
    client: TestClient, registry: FakeRegistry, body: bytes, detail: str
) -> None:
    resp = client.post("/webhooks/mlflow", content=body, headers=signed(body))
    assert (resp.status_code, resp.json()) == (200, {"accepted": False, "detail": detail})
    assert registry.loads == [1]


def test_a_replayed_delivery_is_acknowledged_and_not_acted_on(
    client: TestClient, registry: FakeRegistry
) -> None:
    registry.add(2, champion=True)
    body = alias_event()
    headers = signed(body)
    assert client.post("/webhooks/mlflow", content=body, headers=headers).status_code == 202
    assert wait_until(lambda: registry.loads == [1, 2], 5)
    registry.add(3, champion=True)
    replay = client.post("/webhooks/mlflow", content=body, headers=headers)
    assert (replay.status_code, replay.json()) == (
        200,
        {"accepted": False, "detail": "duplicate delivery 'd-1'; ignored"},
    )
    time.sleep(0.3)
    assert registry.loads == [1, 2]  # the replay did not trigger a check


def test_the_delivery_log_forgets_ids_only_after_the_window_and_is_bounded() -> None:
    now = [1_000_000.0]
    log = DeliveryLog(tolerance_s=300, capacity=3, clock=lambda: now[0])
    assert [log.record(i, 1_000_000) for i in ("a", "b", "a")] == ["new", "new", "duplicate"]
    now[0] += 300  # still replayable: the timestamp check accepts it until sent_at + 300
    assert log.record("a", 1_000_000) == "duplicate"
    assert log.record("c", int(now[0])) == "new"
    assert log.record("d", int(now[0])) == "full"  # a and b are still in their window
    now[0] += 1  # a and b expire: room again
    assert log.record("d", int(now[0])) == "new"
    assert len(log) == 2


def test_bad_webhook_deliveries_are_refused(client: TestClient, registry: FakeRegistry) -> None:
    body = alias_event()
    registry.add(2, champion=True)
    unsigned = (
        "unsigned webhook: X-MLflow-Signature, X-MLflow-Timestamp and X-MLflow-Delivery-Id "
        "are required"
    )
    mismatch = "webhook signature does not match"
    cases = [
        ({}, unsigned),
        (signed(body, secret="other"), mismatch),
        ({**signed(body), "X-MLflow-Delivery-Id": "d-2"}, mismatch),
        (signed(body, at=int(time.time()) - 3600), "webhook timestamp is more than 300 s from now"),
        (
            {**signed(body), "X-MLflow-Timestamp": "yesterday"},
            "X-MLflow-Timestamp must be a unix timestamp",
        ),
    ]
    for headers, detail in cases:
        resp = client.post("/webhooks/mlflow", content=body, headers=headers)
        assert (resp.status_code, resp.json()) == (401, {"detail": detail})
    tampered = body.replace(b'"2"', b'"3"')
    resp = client.post("/webhooks/mlflow", content=tampered, headers=signed(body))
    assert resp.status_code == 401
    junk = b"not json"
    resp = client.post("/webhooks/mlflow", content=junk, headers=signed(junk))
    assert resp.status_code == 400
    assert registry.loads == [1]


def test_webhook_is_absent_without_a_secret(registry: FakeRegistry) -> None:
    with start(registry) as c:
        body = alias_event()
        assert c.post("/webhooks/mlflow", content=body, headers=signed(body)).status_code == 404


# ---------------------------------------------------------------------------------------------
# Metrics, docs, settings


def test_metrics_count_requests_by_route_and_status_and_rows_by_version(
    client: TestClient,
) -> None:
    client.post("/predict", json=EXAMPLE_REQUEST)
    client.post("/predict", json={"instances": []})
    client.get("/nowhere")
    text = client.get("/metrics").text
    assert 'churn_http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'churn_http_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert 'churn_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert (
        'churn_http_request_duration_seconds_count{method="POST",route="/predict",status="200"} 1.0'
        in text
    )
    assert 'churn_predictions_total{model_version="1",role="champion"} 2.0' in text
    assert "churn_model_version 1.0" in text


def test_openapi_documents_the_request_with_a_worked_example(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    content = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert content["examples"]["batch"]["value"] == EXAMPLE_REQUEST
    customer = doc["components"]["schemas"]["Customer"]
    assert set(customer["properties"]) == {schema.ID_COLUMN, *schema.FEATURE_NAMES}
    assert customer["properties"]["Contract"]["enum"] == list(schema.BY_NAME["Contract"].categories)
    assert (
        doc["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["maxItems"] == 5
    )
    # The documented example is a valid request.
    assert client.post("/predict", json=content["examples"]["single"]["value"]).status_code == 200


def test_readme_curl_is_the_documented_example() -> None:
    readme = (ROOT / "serve" / "README.md").read_text()
    assert curl("127.0.0.1", 8000) in readme


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("CHURN_RELOAD_INTERVAL", "2.5")
    monkeypatch.setenv("CHURN_ADMIN_TOKEN", "")
    monkeypatch.setenv("CHURN_MODEL_URI", "models:/churn/3")
    monkeypatch.setenv("CHURN_MAX_BATCH_SIZE", "10")
    s = ServeSettings()
    assert s.tracking_uri == "http://127.0.0.1:5000"
    assert s.reload_interval == 2.5 and s.admin_token is None and s.max_batch_size == 10
    assert (s.model_name, s.model_alias, s.pinned_version) == ("churn", None, 3)
    monkeypatch.delenv("CHURN_MODEL_URI")
    s = ServeSettings()
    assert (s.model_uri, s.model_alias, s.pinned_version) == (
        "models:/churn@champion",
        "champion",
        None,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHURN_MODEL_URI", "runs:/abc/model"),
        ("CHURN_RELOAD_INTERVAL", "-1"),
        ("CHURN_MAX_BATCH_SIZE", "0"),
        ("CHURN_THRESHOLD", "1.5"),
    ],
)
def test_invalid_settings_stop_the_start_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "invalid setting" in caplog.text


def test_each_swap_freezes_the_heap_out_of_the_cyclic_gc() -> None:
    """A full GC over the ~350k objects a loaded model brings takes ~200 ms and stalls every
    request in flight (bench p99 showed it); after a swap the heap is frozen, so collections
    scan only what requests allocate."""
    import gc

    gc.unfreeze()
    try:
        reg = FakeRegistry()
        reg.add(1, champion=True)
        with start(reg) as c:
            ready(c)
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
