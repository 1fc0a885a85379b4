"""params.yaml parsing and the tracking-URI precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from churn import model_types, settings
from churn.settings import ParamsError, load_params


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_load() -> None:
    p = load_params()
    assert p.model_type in model_types.MODEL_TYPES
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
        ("seed: abc", "seed must be an integer, got 'abc'"),
        ("seed: -1", "seed must be in 0..2**32-1, got -1"),
        ("data: {rows: 2.5}", "data.rows must be an integer, got 2.5"),
        ("threshold: .nan", "threshold must be a finite number, got nan"),
        ("threshold: true", "threshold must be a number, got True"),
        # A negative epsilon would promote a challenger worse than the champion.
        (
            "gate: {epsilon: -0.05}",
            "gate.epsilon must be in [0, 1) (the least improvement that promotes), got -0.05",
        ),
        ("gate: {epsilon: '0.01'}", "gate.epsilon must be a number, got '0.01'"),
        ("gate: {bootstrap_resamples: 10}", "gate.bootstrap_resamples must be at least 100"),
        ("drift: {psi_warn: 0.3, psi_alert: 0.2}", "drift needs 0 < psi_warn <= psi_alert"),
        ("[1, 2]", "must be a mapping of keys, got list"),
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


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "{type: logistic_regression, logistic_regression: {C: -1}}",
            "params.yaml: model.logistic_regression.C: must be a float in the range (0.0, inf]; "
            "got -1",
        ),
        (
            "{type: logistic_regression, logistic_regression: {max_iter: lots}}",
            "params.yaml: model.logistic_regression.max_iter: must be an int in the range "
            "[0, inf); got 'lots'",
        ),
        (
            "{type: logistic_regression, logistic_regression: {Cee: 1}}",
            "params.yaml: model.logistic_regression.Cee: not a parameter of LogisticRegression; "
            "one of C, class_weight,",
        ),
        (
            "{type: random_forest, random_forest: {random_state: 3}}",
            "params.yaml: model.random_forest.random_state: set by training (random_state from "
            "`seed`); remove it",
        ),
        # Not the type trained, still checked: switching model.type must not fail minutes later.
        (
            "{type: logistic_regression, hist_gradient_boosting: {learning_rate: 0, "
            "max_leaf_nodes: 1}}",
            "params.yaml: model.hist_gradient_boosting.learning_rate: must be a float in the range "
            "(0.0, inf); got 0 (and 1 more)",
        ),
    ],
)
def test_bad_hyperparameters_name_the_key(tmp_path: Path, model: str, message: str) -> None:
    with pytest.raises(ParamsError) as exc:
        load_params(write(tmp_path, f"model: {model}"))
    assert str(exc.value).startswith(message)


def test_every_repository_hyperparameter_is_valid_and_the_check_can_be_skipped(
    tmp_path: Path,
) -> None:
    text = (settings.PARAMS_FILE).read_text()
    assert load_params(write(tmp_path, text)).model_params == {"C": 1.0, "max_iter": 1000}
    bad = text.replace("C: 1.0", "C: -1.0")
    assert load_params(write(tmp_path, bad), check_model=False).model_params["C"] == -1.0
    with pytest.raises(ParamsError, match=r"model\.logistic_regression\.C:"):
        load_params(write(tmp_path, bad))


def test_an_empty_params_file_gives_the_defaults_written_once(tmp_path: Path) -> None:
    # The defaults live on the models (churn/settings.py), not again in the loader.
    assert load_params(write(tmp_path, "{}")) == settings.Params()
    assert settings.Params().model_type == model_types.DEFAULT_MODEL_TYPE
    with pytest.raises(ParamsError) as exc:
        load_params(write(tmp_path, "seed: x\nthreshold: 2"))
    assert str(exc.value) == "params.yaml: seed must be an integer, got 'x' (and 1 more)"


def test_the_snapshot_edit_keeps_comments_and_quoting(tmp_path: Path) -> None:
    text = (
        "# top comment\nseed: 42\ndata:\n  source: generator  # why\n"
        "  snapshot: '2026-07'  # the month\n  rows: 20000\nmodel: {type: logistic_regression}\n"
    )
    path = write(tmp_path, text)
    assert settings.set_data_snapshot("2026-08", path) == "2026-07"
    assert path.read_text() == text.replace("'2026-07'", "'2026-08'")
    with pytest.raises(ParamsError, match=r"no data\.snapshot line to update"):
        settings.set_data_snapshot("2026-08", write(tmp_path, "data: {rows: 100}\n"))
