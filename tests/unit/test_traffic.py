"""Champion/challenger on live traffic with a fake registry: the sticky split, shadow scoring,
the traffic profile, and the settings that choose between them."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from churn import profile
from serve.api_models import EXAMPLE_ROWS
from serve.app import create_app
from serve.config import ServeSettings
from serve.traffic import bucket
from tests.serve_helpers import FakeRegistry, wait_until

CHAMPION_OFFSET, CHALLENGER_OFFSET = 0.0, 0.45  # v1: tenure/100; v2: tenure/100 + 0.45


def settings(**overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {"tracking_uri": "sqlite:///fake.db", "reload_interval": 0}
    return ServeSettings(**{**values, **overrides})


@pytest.fixture
def registries() -> tuple[FakeRegistry, FakeRegistry]:
    champion = FakeRegistry()
    champion.add(1, CHAMPION_OFFSET, champion=True)
    champion.add(2, CHALLENGER_OFFSET)
    champion.aliases["challenger"] = 2
    # The challenger's registry reads the same aliases and versions, following another alias.
    challenger = FakeRegistry(
        alias="challenger", aliases=champion.aliases, predictors=champion.predictors
    )
    return champion, challenger


def start(registries: tuple[FakeRegistry, FakeRegistry], **overrides: Any) -> TestClient:
    champion, challenger = registries
    app = create_app(settings(**overrides), registry=champion, challenger_registry=challenger)
    return TestClient(app)


def customer(cid: str | None, tenure: int = 10) -> dict[str, Any]:
    row = copy.deepcopy(EXAMPLE_ROWS[0])
    row["tenure"] = tenure
    if cid is None:
        del row["customerID"]
    else:
        row["customerID"] = cid
    return row


def challenger_loaded(client: TestClient) -> bool:
    chal = client.get("/model").json().get("challenger") or {}
    return (chal.get("served") or {}).get("version") == 2


@pytest.fixture
def split_client(registries: tuple[FakeRegistry, FakeRegistry]) -> Iterator[TestClient]:
    with start(registries, challenger_traffic=0.25) as client:
        assert wait_until(lambda: challenger_loaded(client), 5)
        yield client


def test_bucket_is_crc32_so_every_replica_and_restart_agrees() -> None:
    # Pinned: a customer must not change sides between replicas, restarts or releases (Python's
    # hash() is salted per process, so it would).
    assert bucket("7590-VHVEG") == 1621424270 / 2**32
    values = [bucket(f"{i:04d}-CUST") for i in range(5000)]
    assert 0.23 < sum(v < 0.25 for v in values) / len(values) < 0.27


def test_split_sends_rows_by_customer_hash_and_each_prediction_names_its_version(
    split_client: TestClient,
) -> None:
    ids = [f"{i:04d}-SPLIT" for i in range(400)]
    seen: dict[str, int] = {}
    for cid in ids:
        body = split_client.post("/predict", json=customer(cid)).json()
        (pred,) = body["predictions"]
        expected = 2 if bucket(cid) < 0.25 else 1
        assert pred["model_version"] == expected == body["model"]["version"], cid
        offset = CHALLENGER_OFFSET if expected == 2 else CHAMPION_OFFSET
        assert pred["churn_probability"] == pytest.approx(0.10 + offset)
        seen[cid] = expected
    assert 0.18 < sum(v == 2 for v in seen.values()) / len(seen) < 0.32
    # Sticky: the same customers again, in one batch, land on the same sides.
    batch = split_client.post("/predict", json={"instances": [customer(c) for c in ids[:40]]})
    body = batch.json()
    assert [p["model_version"] for p in body["predictions"]] == [seen[c] for c in ids[:40]]
    assert [p["customerID"] for p in body["predictions"]] == ids[:40]
    assert {1, 2} <= {p["model_version"] for p in body["predictions"]}
    assert body["model"]["version"] == 1
    assert body["challenger"] == {"name": "churn", "version": 2, "run_id": "run2", "threshold": 0.5}
    metrics = split_client.get("/metrics").text
    n2 = sum(v == 2 for v in seen.values()) + sum(seen[c] == 2 for c in ids[:40])
    assert f'churn_predictions_total{{model_version="2",role="challenger"}} {float(n2)}' in metrics
    assert f'churn_predictions_total{{model_version="1",role="champion"}} {440.0 - n2}' in metrics
    assert "churn_challenger_version 2.0" in metrics


def test_split_without_a_challenger_alias_serves_everything_from_the_champion(
    registries: tuple[FakeRegistry, FakeRegistry],
) -> None:
    del registries[0].aliases["challenger"]
    with start(registries, challenger_traffic=0.5) as client:
        assert wait_until(lambda: client.get("/ready").status_code == 200, 5)
        versions = {
            client.post("/predict", json=customer(f"{i}-X")).json()["predictions"][0][
                "model_version"
            ]
            for i in range(50)
        }
        assert versions == {1}
        chal = client.get("/model").json()["challenger"]
        assert chal["served"] is None
        assert "@challenger" in chal["reload"]["waiting"]


def test_challenger_alias_removed_stops_the_split(
    registries: tuple[FakeRegistry, FakeRegistry],
) -> None:
    with start(registries, challenger_traffic=1.0, admin_token="t0ken") as client:
        assert wait_until(lambda: challenger_loaded(client), 5)
        assert client.post("/predict", json=customer("a")).json()["model"]["version"] == 2
        del registries[0].aliases["challenger"]  # e.g. promoted, or dropped by hand
        resp = client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
        assert resp.json()["challenger"]["outcome"] == "no_model"
        assert client.post("/predict", json=customer("a")).json()["model"]["version"] == 1
        assert "churn_challenger_version 0.0" in client.get("/metrics").text


def test_shadow_answers_with_the_champion_and_compares_in_the_background(
    registries: tuple[FakeRegistry, FakeRegistry],
) -> None:
    with start(registries, shadow=True) as client:
        assert wait_until(lambda: challenger_loaded(client), 5)
        app_shadow = client.app.state.services.shadow  # type: ignore[attr-defined]
        app_shadow.interval_s = 0.05
        # tenure 10: champion 0.10 (no churn), challenger 0.55 (churn): decisions differ;
        # tenure 60: 0.60 and 1.0 (clipped): both churn.
        for i in range(30):
            body = client.post("/predict", json=customer(f"{i}-S", tenure=10)).json()
            assert body["predictions"][0]["model_version"] == 1
            assert body["predictions"][0]["churn_probability"] == pytest.approx(0.10)
            assert "challenger" not in body
        client.post("/predict", json={"instances": [customer(f"{i}-T", 60) for i in range(10)]})

        def compared() -> dict[str, Any]:
            return dict(client.get("/model").json()["challenger"]["shadow"])

        assert wait_until(lambda: compared()["rows"] == 40, 5), compared()
        stats = compared()
        assert stats["challenger_version"] == 2 and stats["champion_version"] == 1
        assert stats["decision_agreement"] == pytest.approx(10 / 40)
        assert stats["mean_abs_diff"] == pytest.approx((30 * 0.45 + 10 * 0.40) / 40)
        metrics = client.get("/metrics").text
        assert 'churn_shadow_rows_total{model_version="2"} 40.0' in metrics
        assert 'churn_shadow_disagreements_total{model_version="2"} 30.0' in metrics
        # Callers were answered by the champion only.
        assert 'churn_predictions_total{model_version="1",role="champion"} 40.0' in metrics
        assert 'role="challenger"' not in metrics


def test_shadow_queue_is_bounded_and_drops_rather_than_grows(
    registries: tuple[FakeRegistry, FakeRegistry],
) -> None:
    with start(registries, shadow=True) as client:
        assert wait_until(lambda: challenger_loaded(client), 5)
        shadow = client.app.state.services.shadow  # type: ignore[attr-defined]
        # Nothing drains during the test: the loop's pending 0.5 s sleep ends (an empty queue)
        # before the requests, and its next sleep is an hour (under load, a drain mid-test
        # made the dropped count 0).
        wait_s, shadow.interval_s = shadow.interval_s, 3600.0
        time.sleep(wait_s + 0.3)
        shadow.max_queued_rows = 5
        for i in range(8):
            assert client.post("/predict", json=customer(f"{i}-Q")).status_code == 200
        assert shadow.stats.dropped == 3
        assert "churn_shadow_dropped_rows_total 3.0" in client.get("/metrics").text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"challenger_traffic": 0.1, "shadow": True}, "set one of them"),
        ({"challenger_traffic": 1.5}, "less than or equal to 1"),
        ({"shadow": True, "challenger_alias": "champion"}, "must be another alias"),
        ({"challenger_traffic": 0.1, "challenger_alias": "bad alias!"}, "should match pattern"),
    ],
)
def test_challenger_settings_are_validated(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**overrides)


def test_traffic_profile_counts_what_the_champion_scored_and_restarts_per_version(
    registries: tuple[FakeRegistry, FakeRegistry],
) -> None:
    champion, _ = registries
    with start(registries, admin_token="t0ken") as client:
        assert wait_until(lambda: client.get("/ready").status_code == 200, 5)
        for tenure in (1, 1, 5, 70):
            client.post("/predict", json=customer(None, tenure=tenure))
        doc = client.get("/monitoring/profile").json()
        got = profile.Profile.from_json(doc)  # the format drift reads
        assert got.rows == 4 and got.model_version == 1
        tenure_counts = got.counts["tenure"]
        edges = profile.GRIDS["tenure"].edges
        assert tenure_counts[edges.index(1.0) + 1] == 2  # bin [1, 2)
        assert tenure_counts.sum() == 4
        assert got.predictions == 4
        assert doc["dropped_rows"] == 0
        # A new champion: the profile describes the version serving, so it starts again.
        champion.aliases["champion"] = 2
        client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
        client.post("/predict", json=customer(None, tenure=3))
        got = profile.Profile.from_json(client.get("/monitoring/profile").json())
        assert (got.rows, got.model_version) == (1, 2)
