"""The answers of /predict and /model built from what was scored, without HTTP (serve/answers.py):
champion only, a split between champion and challenger, and why nothing is served yet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from serve import answers, api_models
from serve.holder import LoadedModel, Scored
from serve.reloader import ReloadStatus
from serve.rows import FEATURE_NAMES, Batch


def model(version: int, threshold: float = 0.5) -> LoadedModel:
    return LoadedModel(
        name="churn", version=version, run_id=f"run{version}", predictor=None,  # type: ignore[arg-type]
        threshold=threshold, loaded_at=datetime(2026, 7, 1, tzinfo=UTC),
        source=f"models:/churn/{version}",
    )  # fmt: skip


def scored(version: int, *proba: float, threshold: float = 0.5) -> Scored:
    return Scored(model(version, threshold), np.array(proba))


def rows(*ids: str | None) -> Batch:
    return Batch(tuple(() for _ in FEATURE_NAMES), ids)


def test_a_champion_answer_names_each_row_its_decision_and_the_version() -> None:
    body = orjson.loads(answers.champion(rows("a", None), scored(3, 0.2, 0.7, threshold=0.6)))
    assert body == {
        "predictions": [
            {"customerID": "a", "churn_probability": 0.2, "churn": False, "model_version": 3},
            {"customerID": None, "churn_probability": 0.7, "churn": True, "model_version": 3},
        ],
        "model": {"name": "churn", "version": 3, "run_id": "run3"},
        "threshold": 0.6,
    }
    api_models.PredictResponse.model_validate(body)  # the documented shape


def test_a_split_answer_keeps_request_order_and_each_sides_threshold() -> None:
    champ = scored(1, 0.4, 0.6, threshold=0.5)  # rows a, c
    chal = scored(2, 0.45, threshold=0.4)  # row b
    body = orjson.loads(answers.split(["a", "b", "c"], [False, True, False], champ, chal))
    assert [(p["customerID"], p["churn"], p["model_version"]) for p in body["predictions"]] == [
        ("a", False, 1),
        ("b", True, 2),  # 0.45 >= the challenger's 0.4, though below the champion's 0.5
        ("c", True, 1),
    ]
    assert body["model"]["version"] == 1 and body["threshold"] == 0.5
    assert body["challenger"] == {"name": "churn", "version": 2, "run_id": "run2", "threshold": 0.4}
    api_models.PredictResponse.model_validate(body)


def test_a_split_answer_with_every_row_on_the_challenger_names_only_it() -> None:
    body = orjson.loads(answers.split(["a"], [True], None, scored(2, 0.9)))
    assert body["model"]["version"] == 2
    assert "challenger" not in body
    assert body["predictions"][0]["model_version"] == 2


@pytest.mark.parametrize(
    ("status", "interval", "detail"),
    [
        (ReloadStatus(), 30, "starting: the model is loading"),
        (ReloadStatus(waiting="no @champion"), 30,
         "no @champion; it is picked up within 30 s, no restart needed"),
        (ReloadStatus(waiting="no @champion"), 0, "no @champion"),
        (ReloadStatus(last_error={"message": "store down"}), 30, "store down; retrying"),
    ],
)  # fmt: skip
def test_not_ready_says_why_and_what_happens_next(
    status: ReloadStatus, interval: float, detail: str
) -> None:
    assert answers.not_ready_detail(status, interval) == detail


def test_served_lists_the_aliases_on_its_version_only() -> None:
    doc: dict[str, Any] = answers.served(model(2), {"champion": 2, "challenger": 3, "b": 2})
    assert doc["aliases"] == ["b", "champion"]
    assert doc["loaded_at"] == "2026-07-01T00:00:00+00:00"
    assert doc["uri"] == "models:/churn/2"
