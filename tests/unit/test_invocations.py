"""MLflow's scoring protocol and the opt-in server features (issue 22) with a fake registry:
every body format, MLflow's error shape, the /predict hint, CHURN_API_TOKEN, CHURN_CORS_ORIGINS,
CHURN_REQUEST_ID, the new metrics and the OpenAPI document. The real `mlflow models serve` side
by side is tests/e2e/test_invocations_conformance.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serve import apidoc, validation
from serve import invocations as inv
from serve.accesslog import RequestIdFormatter, request_id
from tests.serve_helpers import FakeRegistry
from tests.unit.test_serve import ready, row, start

TOKEN = "api-token-1"
ROWS = [row(), row(tenure=10, customerID="B"), row(tenure=20, TotalCharges=None)]
EXPECTED = [0.01, 0.1, 0.2]  # the fake model: tenure / 100


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add(1, champion=True)
    return reg


@pytest.fixture
def client(registry: FakeRegistry) -> Iterator[TestClient]:
    with start(registry) as c:
        ready(c)
        yield c


def split(rows: list[dict[str, Any]], reverse: bool = False) -> dict[str, Any]:
    columns = list(rows[0])[:: -1 if reverse else 1]
    return {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}


BODIES: dict[str, Any] = {
    "dataframe_split": {"dataframe_split": split(ROWS)},
    "dataframe_split, other column order, index": {
        "dataframe_split": {**split(ROWS, reverse=True), "index": [7, 8, 9]}
    },
    "dataframe_records": {"dataframe_records": ROWS},
    "instances + params": {"instances": ROWS, "params": {"k": 1}},
    "inputs": {"inputs": ROWS},
    "inputs as columns": {"inputs": {k: [r[k] for r in ROWS] for k in ROWS[0]}},
    "extra columns ignored": {"dataframe_records": [{**r, "Churn": "No", "x": 1} for r in ROWS]},
    "other fields ignored": {"inputs": ROWS, "signature_name": "serving_default"},
}


@pytest.mark.parametrize("name", BODIES)
def test_every_json_format_scores_the_same_rows(client: TestClient, name: str) -> None:
    answer = client.post("/invocations", json=BODIES[name])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": EXPECTED}


@pytest.mark.parametrize("name", BODIES)
def test_both_paths_accept_the_same_rows(name: str) -> None:
    """The msgspec fast path and the checked path give the same validated rows."""
    body = json.dumps(BODIES[name]).encode()
    fast = inv._fast(body, 5)
    payload = json.loads(body)
    fmt = next(k for k in inv.FORMATS if k in payload)
    slow = inv._checked(inv._records(fmt, payload[fmt]), fmt)
    assert list(slow) == list(validation.parse(json.dumps({"instances": ROWS}).encode(), 5)[0])
    if name in ("inputs as columns", "other fields ignored"):  # the checked path's only
        assert fast is None
    else:
        assert fast is not None and list(fast) == list(slow)


def test_csv_with_and_without_the_index_column(client: TestClient) -> None:
    for text in (pd.DataFrame(ROWS).to_csv(index=False), pd.DataFrame(ROWS).to_csv()):
        answer = client.post(
            "/invocations", content=text, headers={"Content-Type": "text/csv; charset=utf-8"}
        )
        assert answer.json() == {"predictions": EXPECTED}


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"dataframe_records": [row(Contract="Monthly")]}, None, 400,
         "dataframe_records[0].Contract: must be one of 'Month-to-month', 'One year', "
         "'Two year'; got 'Monthly'"),
        ({"dataframe_split": split([row(), row(tenure=1.5)])}, None, 400,
         "dataframe_split.data[1].tenure: must be an integer from 0 to 72; got 1.5"),
        ({"inputs": []}, None, 400, "inputs: must hold 1 to 5 rows; got 0"),
        ({"rows": []}, None, 400,
         "body: must be a JSON object with exactly one of the fields dataframe_split, "
         "dataframe_records, instances, inputs (and optionally params); got the fields ['rows']"),
        ({"inputs": ROWS}, {"Content-Type": "text/plain"}, 415,
         "Content-Type: must be application/json or text/csv; got 'text/plain'"),
        ({"inputs": ROWS}, {"Content-Type": "application/json; charset=latin-1"}, 415,
         "Content-Type: only charset=utf-8 is supported; got 'charset=latin-1'"),
    ],
)  # fmt: skip
def test_errors_in_mlflows_shape(
    client: TestClient, body: Any, headers: dict[str, str] | None, status: int, message: str
) -> None:
    answer = client.post(
        "/invocations",
        content=json.dumps(body),
        headers=headers or {"Content-Type": "application/json"},
    )
    assert answer.status_code == status
    code = "BAD_REQUEST" if status == 400 else "INVALID_PARAMETER_VALUE"
    assert answer.json() == {"error_code": code, "message": message}


def test_csv_errors_name_the_row(client: TestClient) -> None:
    text = pd.DataFrame([row(), row(tenure="twelve")]).to_csv(index=False)
    answer = client.post("/invocations", content=text, headers={"Content-Type": "text/csv"})
    assert answer.status_code == 400
    assert answer.json()["message"] == (
        "rows[1].tenure: must be an integer from 0 to 72; got 'twelve'"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n", "rows[0].gender: field required (and 18 more errors)"),
        ("gender,tenure\n", "body: must hold 1 to 5 rows; got 0"),
        ("", "body: empty CSV; the first line names columns"),
        ("gender,tenure\nMale\n", "rows[0]: 1 values for 2 columns"),
        (pd.DataFrame([row()] * 6).to_csv(index=False), "body: must hold 1 to 5 rows; got 6"),
    ],
)
def test_csv_refusals(client: TestClient, text: str, message: str) -> None:
    answer = client.post("/invocations", content=text, headers={"Content-Type": "text/csv"})
    assert answer.status_code == 400
    assert answer.json() == {"error_code": "BAD_REQUEST", "message": message}


def test_body_too_large_and_csv_still_refused_on_predict(registry: FakeRegistry) -> None:
    with start(registry, max_body_bytes=2048) as c:
        ready(c)
        big = c.post("/invocations", json={"inputs": [row()] * 5})
        assert big.status_code == 413 and big.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        csv = c.post("/predict", content="a\n1\n", headers={"Content-Type": "text/csv"})
        assert csv.status_code == 415


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "inputs", "instances"])
def test_predict_points_mlflow_bodies_to_invocations(client: TestClient, fmt: str) -> None:
    value = split(ROWS) if fmt == "dataframe_split" else ROWS
    answer = client.post("/predict", json={fmt: value, "params": {}})
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        f"body: this is MLflow's scoring format ({fmt}): send it to POST /invocations, "
        'or send {"instances": [customer, ...]} here'
    )
    # our own format is unaffected
    assert client.post("/predict", json={"instances": ROWS}).status_code == 200


def test_ping_version_and_not_ready() -> None:
    empty = FakeRegistry()  # no champion: nothing to serve
    with start(empty) as c:
        assert c.get("/ping").status_code == 503
        answer = c.post("/invocations", json={"inputs": ROWS})
        assert answer.status_code == 503
        assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        version = c.get("/version")
        assert version.status_code == 200 and version.text.count(".") == 2


# ---------------------------------------------------------------------------------------------
# CHURN_API_TOKEN


def test_api_token_guards_scoring_only(registry: FakeRegistry) -> None:
    with start(registry, api_token=TOKEN) as c:
        ready(c)
        for path, body in (("/predict", {"instances": ROWS}), ("/invocations", {"inputs": ROWS})):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                answer = c.post(path, json=body, headers=headers)
                assert answer.status_code == 401, (path, headers)
                assert answer.headers["www-authenticate"] == "Bearer"
            good = c.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            assert good.status_code == 200
        wrong = c.post("/invocations", json={"inputs": ROWS}, headers={"Authorization": "Bearer x"})
        assert wrong.json() == {"error_code": "UNAUTHENTICATED", "message": "invalid API token"}
        missing = c.post("/predict", json={"instances": ROWS})
        assert missing.json()["errors"][0]["field"] == "Authorization"
        for path in ("/health", "/ready", "/ping", "/metrics", "/model"):
            assert c.get(path).status_code == 200, path
        security = c.get("/openapi.json").json()["paths"]["/invocations"]["post"]["security"]
        assert security == [{"HTTPBearer": []}]


def test_no_token_no_guard(client: TestClient) -> None:
    assert client.post("/invocations", json={"inputs": ROWS}).status_code == 200


# ---------------------------------------------------------------------------------------------
# CHURN_CORS_ORIGINS


def preflight(c: TestClient) -> Any:
    return c.options(
        "/invocations",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )


def test_cors_for_listed_origins(registry: FakeRegistry) -> None:
    with start(registry, cors_origins=["https://app.example.com"], api_token=TOKEN) as c:
        ready(c)
        answer = preflight(c)  # a preflight carries no token: answered before the guard
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
        scored = c.post(
            "/invocations", json={"inputs": ROWS},
            headers={"Origin": "https://app.example.com", "Authorization": f"Bearer {TOKEN}"},
        )  # fmt: skip
        assert scored.headers["access-control-allow-origin"] == "https://app.example.com"
        other = c.get("/ready", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_by_default(client: TestClient) -> None:
    assert "access-control-allow-origin" not in preflight(client).headers


# ---------------------------------------------------------------------------------------------
# CHURN_REQUEST_ID


def test_request_id_taken_or_made(registry: FakeRegistry) -> None:
    with start(registry, request_id=True) as c:
        ready(c)
        given = c.post("/predict", json={"instances": ROWS}, headers={"X-Request-ID": "abc-1"})
        assert given.headers["x-request-id"] == "abc-1"
        made = c.get("/health").headers["x-request-id"]
        assert len(made) == 32 and made != c.get("/health").headers["x-request-id"]
        # a value that could forge a log line is replaced, not echoed
        forged = c.get("/health", headers={"X-Request-ID": "a b\tc"}).headers["x-request-id"]
        assert forged != "a b\tc" and len(forged) == 32


def test_no_request_id_by_default(client: TestClient) -> None:
    assert "x-request-id" not in client.get("/health", headers={"X-Request-ID": "a"}).headers


def test_access_log_line_ends_with_the_id() -> None:
    formatter = RequestIdFormatter(logging.Formatter("%(message)s"))
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "GET / 200", None, None)
    assert formatter.format(record) == "GET / 200"
    token = request_id.set("r-1")
    try:
        assert formatter.format(record) == "GET / 200 request_id=r-1"
    finally:
        request_id.reset(token)


# ---------------------------------------------------------------------------------------------
# /metrics and OpenAPI


def test_metrics_show_batch_sizes_and_in_flight(client: TestClient) -> None:
    client.post("/invocations", json={"inputs": ROWS})
    client.post("/predict", json={"instances": ROWS[:1]})
    text = client.get("/metrics").text
    assert "churn_batch_rows_count 2.0" in text
    assert "churn_batch_rows_sum 4.0" in text
    assert 'churn_batch_rows_bucket{le="1.0"} 1.0' in text
    # the /metrics request itself is in flight while it renders
    assert "churn_http_requests_in_flight 1.0" in text


def test_openapi_ids_tags_and_answer_schemas(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    ops = {(path, method): op for path, item in doc["paths"].items() for method, op in item.items()}
    assert ops["/predict", "post"]["operationId"] == "predict"
    assert ops["/invocations", "post"]["operationId"] == "invocations"
    assert ops["/model", "get"]["operationId"] == "model_info"
    assert ops["/invocations", "post"]["tags"] == ["mlflow"]
    assert ops["/ready", "get"]["tags"] == ["operations"]
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids)) and all("_post" not in i and "_get" not in i for i in ids)
    for path, name in (("/ready", "Ready"), ("/model", "ModelInfo")):
        schema = ops[path, "get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}
        assert name in doc["components"]["schemas"]
    # the documented shapes are the answers' shapes
    apidoc.Ready.model_validate(client.get("/ready").json())
    apidoc.ModelInfo.model_validate(client.get("/model").json())


def test_bench_table_shows_invocations_beside_predict() -> None:
    from bench import serve as bench

    row = {"req_per_s": 100.0, "rows_per_s": 100.0, "p50_ms": 5.0, "p99_ms": 9.0, "errors": 0}
    side = {
        "start_to_ready_s": 1.0,
        "peak_rss_mb": 300.0,
        "scenarios": {sc.key: dict(row) for sc in bench.SCENARIOS},
        "soak": {
            **row,
            "duration_s": 60,
            "rss_start_mb": 300,
            "rss_end_mb": 300,
            "rss_growth_pct": 0.0,
        },
    }
    result: dict[str, Any] = {
        "ours": side,
        "ours_invocations": {"scenarios": {sc.key: dict(row) for sc in bench.SCENARIOS}},
        "raw_pyfunc_ms": {"1": 5.0, "100": 5.5, "1000": 4.0},
        "client": {"name": "wrk", "version": "4.1", "ceiling": {}},
    }
    result["targets"] = bench.targets(result)
    lines = bench.table(result).splitlines()
    for sc in bench.SCENARIOS:
        at = next(i for i, line in enumerate(lines) if line.startswith(sc.title))
        assert lines[at + 1].split()[0] == "/invoc"
