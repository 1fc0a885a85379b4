"""params.yaml parsing and the tracking-URI precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from churn import settings
from churn.settings import ParamsError, load_params


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_load() -> None:
    p = load_params()
    assert p.model_type in settings.MODEL_TYPES
    assert p.gate.metric in settings.METRICS
    assert p.flat()["model.type"] == p.model_type


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {type: xgboost}", "model.type 'xgboost' is not one of logistic_regression"),
        ("gate: {metric: speed}", "gate.metric 'speed' is not one of auc, f1"),
        ("split: {test_size: 1.5}", "split.test_size must be in (0, 1), got 1.5"),
        ("threshold: 0", "threshold must be in (0, 1), got 0.0"),
        ("data: {rows: 10}", "data.rows must be at least 100, got 10"),
        ("seed: abc", "invalid literal for int()"),
        ("data: [1, 2]", "'data' must be a mapping"),
        ("seed: [", "is not valid YAML"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ParamsError) as exc:
        load_params(write(tmp_path, text))
    assert message in str(exc.value)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found: run from the repository root"):
        load_params(tmp_path / "nope.yaml")


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert settings.tracking_uri() == f"sqlite:///{settings.ROOT / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert settings.tracking_uri() == "http://127.0.0.1:5000"
    assert settings.tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_embedded_store_keeps_artifacts_beside_the_database(tmp_path: Path) -> None:
    from churn.tracking import artifact_root_for

    assert (
        artifact_root_for(f"sqlite:///{tmp_path}/mlflow.db") == (tmp_path / "mlartifacts").as_uri()
    )
    assert artifact_root_for("http://127.0.0.1:5000") is None
