"""churn/loading.py's checks on a model directory, its own loading of the checked file, and the
smoke score, without a registry: every key of the MLmodel a loader reads is pinned to the
checked file, and a model that does not answer probabilities is refused.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml

from churn import data, model, schema
from churn.loading import (
    ModelSmokeError,
    UntrustedModelError,
    allowed_types,
    check_model_dir,
    load_checked,
    probability_problem,
    smoke_frame,
    smoke_score,
)
from tests.reliability.hostile import Unpickled

WHAT = "models:/churn/7"


def mlmodel(**changes: Any) -> dict[str, Any]:
    """An MLmodel as train.py writes it (the keys that matter), with `changes` applied:
    `python_function__data="x"` sets a flavor key, `drop=[...]` removes flavor keys."""
    meta: dict[str, Any] = {
        "flavors": {
            "python_function": {
                "code": "code",
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "loader_module": "mlflow.sklearn",
                "model_path": "model.skops",
                "predict_fn": "predict",
                "python_version": "3.11.7",
            },
            "sklearn": {
                "code": "code",
                "pickled_model": "model.skops",
                "serialization_format": "skops",
                "sklearn_version": "1.9.1",
                "skops_trusted_types": ["churn.model.ChurnProbability", "numpy.dtype"],
            },
        },
        "saved_input_example_info": {
            "artifact_path": "input_example.json",
            "serving_input_path": "serving_input_example.json",
            "type": "dataframe",
        },
    }
    for key, value in changes.items():
        flavor, _, name = key.partition("__")
        if flavor == "drop":
            for dropped in value:
                f, _, n = dropped.partition("__")
                del meta["flavors"][f][n]
        elif name:
            meta["flavors"][flavor][name] = value
        else:
            meta[key] = value
    return meta


def model_dir(tmp_path: Path, meta: dict[str, Any] | None = None) -> Path:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "MLmodel").write_text(yaml.safe_dump(meta or mlmodel()))
    (d / "model.skops").write_bytes(b"PK")
    (d / "requirements.txt").write_text("mlflow==3.17.2\nskops==0.16.0\n")
    return d


def refusal(tmp_path: Path, meta: dict[str, Any]) -> str:
    with pytest.raises(UntrustedModelError) as caught:
        check_model_dir(model_dir(tmp_path, meta), WHAT)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{WHAT} ")
    return message


def test_a_model_as_train_py_writes_it_passes_and_names_its_one_file(tmp_path: Path) -> None:
    assert check_model_dir(model_dir(tmp_path), WHAT) == "model.skops"
    # `data` naming the same file is what other MLflow writers do: the same file is opened.
    assert check_model_dir(model_dir(tmp_path, mlmodel(python_function__data="model.skops")), WHAT)


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        # MLflow opens `data` when it is set; a file whose directory has no MLmodel is unpickled.
        ("python_function__data", "payload/model.pkl", "'…/model.pkl'"),
        ("python_function__data", "payload", "'payload'"),
        ("python_function__data", "/srv/shared/evil.pkl", "'…/evil.pkl'"),
        ("python_function__data", "../../../../srv/evil.pkl", "'…/evil.pkl'"),
        ("python_function__model_path", "model.pkl", "'model.pkl'"),
    ],
)
def test_a_loader_key_naming_another_file_is_refused(
    tmp_path: Path, key: str, value: str, shown: str
) -> None:
    message = refusal(tmp_path, mlmodel(**{key: value}))
    name = key.partition("__")[2]
    assert message == (
        f"{WHAT} points python_function.{name} at {shown}, not at 'model.skops': "
        "refusing to load it"
    )


@pytest.mark.parametrize(
    "value", ["../model.skops", "/tmp/model.skops", "sub/model.skops", "..", "", "c:model", 3]
)
def test_the_model_file_must_be_a_plain_name_in_the_directory(tmp_path: Path, value: Any) -> None:
    meta = mlmodel(sklearn__pickled_model=value, python_function__model_path=value)
    message = refusal(tmp_path, meta)
    assert "as sklearn.pickled_model, not a file in the model directory" in message
    assert "/tmp" not in message and "../" not in message


def test_a_missing_model_path_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, mlmodel(drop=["python_function__model_path"]))
    assert "points python_function.model_path at None" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"python_function__model_config": {"a": 1}}, "sets python_function options train.py "
         "never writes (model_config)"),
        ({"python_function__streamable": True}, "(streamable)"),
        ({"sklearn__extra_files": []}, "sets sklearn options train.py never writes (extra_files)"),
        ({"python_function__predict_fn": "predict_proba"},
         "names predict function 'predict_proba', not 'predict'"),
        ({"python_function__loader_module": "mlflow.pyfunc.model"},
         "names loader 'mlflow.pyfunc.model', not 'mlflow.sklearn'"),
        ({"python_function__env": {"conda": "/etc/conda.yaml"}},
         "names '…/conda.yaml' as python_function.env.conda"),
        ({"python_function__env": "../env"}, "names python_function.env '…/env', not file names"),
        ({"python_function__code": "../../site-packages"}, "as python_function.code"),
        ({"sklearn__code": "/opt/code"}, "as sklearn.code"),
        ({"saved_input_example_info": {"artifact_path": "/etc/passwd"}},
         "as saved_input_example_info.artifact_path"),
        ({"saved_input_example_info": "x"}, "saved_input_example_info that is not a mapping"),
        ({"sklearn__serialization_format": "cloudpickle"}, "is serialised as 'cloudpickle'"),
        ({"sklearn__skops_trusted_types": ["builtins.eval"]},
         "asks skops to trust types train.py never writes (builtins.eval)"),
    ],
)  # fmt: skip
def test_loader_options_and_paths_train_py_never_writes_are_refused(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(tmp_path, mlmodel(**change))


def test_a_flavor_besides_sklearn_and_pyfunc_is_refused(tmp_path: Path) -> None:
    meta = mlmodel()
    meta["flavors"]["onnx"] = {"data": "model.onnx"}
    assert "is not a scikit-learn model (flavors: onnx, python_function, sklearn)" in refusal(
        tmp_path, meta
    )


def test_symlinks_are_refused_wherever_they_are(tmp_path: Path) -> None:
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(b"")
    d = model_dir(tmp_path)
    (d / "model.skops").unlink()
    (d / "model.skops").symlink_to(outside)
    with pytest.raises(UntrustedModelError, match=r"holds a symbolic link \(model\.skops\)"):
        check_model_dir(d, WHAT)
    (d / "model.skops").unlink()
    (d / "model.skops").write_bytes(b"PK")
    (d / "code").mkdir()
    (d / "code" / "churn").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UntrustedModelError, match=r"holds a symbolic link \(code/churn\)"):
        check_model_dir(d, WHAT)


def test_a_model_file_that_is_a_directory_is_refused_a_missing_one_left_to_the_load(
    tmp_path: Path,
) -> None:
    d = model_dir(tmp_path)
    (d / "model.skops").unlink()
    assert check_model_dir(d, WHAT) == "model.skops"  # the load says "No such file"
    (d / "model.skops").mkdir()
    with pytest.raises(UntrustedModelError, match="is not a regular file"):
        check_model_dir(d, WHAT)


def test_a_requirements_file_including_other_files_is_refused(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    (d / "requirements.txt").write_text("mlflow\n-r /etc/shadow\n")
    with pytest.raises(UntrustedModelError) as caught:
        check_model_dir(d, WHAT)
    assert str(caught.value) == (
        f"{WHAT} has a requirements.txt option '-r' (naming other files): refusing to load it"
    )


def test_the_smoke_frame_follows_the_schema() -> None:
    frame = smoke_frame()
    assert list(frame.columns) == list(schema.FEATURE_NAMES)
    for col in schema.FEATURES:
        values = frame[col.name]
        assert str(values.dtype) == col.pandas_dtype, col.name
        if col.categories:
            assert set(col.categories) <= set(values), col.name  # every category is tried
        present = values.dropna()
        assert col.minimum is None or (present >= col.minimum).all(), col.name
        assert col.maximum is None or (present <= col.maximum).all(), col.name
    assert frame["TotalCharges"].isna().sum() == 1  # a new customer
    # data.normalise accepts it as a valid frame (the same checks as training data).
    raw = frame.assign(customerID=[f"c{i}" for i in range(len(frame))], Churn="No")
    pd.testing.assert_frame_equal(data.features(data.normalise(raw)), frame, check_dtype=False)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (np.full(5, 0.5), None),
        (np.full((5, 1), 0.5), None),
        (pd.DataFrame({"p": np.linspace(0, 1, 5)}), None),
        (np.full((5, 2), 0.5), "it answered shape (5, 2) for 5 rows"),
        (np.full(4, 0.5), "it answered shape (4,) for 5 rows"),
        (np.array([0.1, np.nan, 0.2, 0.3, 0.4]), "not finite numbers"),
        (np.array([0.1, 1.5, 0.2, 0.3, -1.0]), "outside [0, 1] (-1 to 1.5)"),
        (np.array(["a"] * 5), "it answered ndarray, not numbers"),
        (object(), "it answered object, not numbers"),
    ],
)
def test_probability_problem(raw: Any, problem: str | None) -> None:
    found = probability_problem(raw, 5)
    assert found == problem if problem is None or found is None else problem in found


class _Fake:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def predict(self, frame: pd.DataFrame) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(frame)


def test_smoke_score_refuses_a_model_that_raises_or_answers_garbage() -> None:
    smoke_score(_Fake(lambda f: np.full(len(f), 0.3)), WHAT)
    with pytest.raises(ModelSmokeError) as caught:
        smoke_score(_Fake(ValueError("bad shapes\nsecond line")), WHAT)
    assert str(caught.value) == (
        f"{WHAT} fails to score 5 known rows (ValueError: bad shapes): refusing to use it"
    )
    with pytest.raises(ModelSmokeError) as caught:
        smoke_score(_Fake(lambda f: np.full(len(f), 7.0)), WHAT)
    assert str(caught.value) == (
        f"{WHAT} does not score 5 known rows with probabilities (it answered values outside "
        "[0, 1] (7 to 7)): refusing to use it"
    )
    assert isinstance(caught.value, UntrustedModelError)  # exit 3, one line, like a refusal


@pytest.fixture(scope="module")
def fitted() -> model.ChurnProbability:
    frame = data.normalise(data.generate(rows=600, seed=3))
    m = model.build("logistic_regression", {"C": 1.0, "max_iter": 500}, seed=0)
    return m.fit(data.features(frame), data.labels(frame))


def saved(tmp_path: Path, estimator: Any, meta: dict[str, Any] | None = None) -> Path:
    d = model_dir(tmp_path, meta)
    skops.io.dump(estimator, d / "model.skops")
    return d


def test_load_checked_opens_the_checked_file_with_our_trust_list(
    tmp_path: Path, fitted: model.ChurnProbability
) -> None:
    # The artifact lists no trusted types: ours are used, not the artifact's.
    d = saved(tmp_path, fitted, mlmodel(sklearn__skops_trusted_types=[]))
    loaded = load_checked(d, WHAT)
    frame = smoke_frame()
    np.testing.assert_array_equal(loaded.predict(frame), fitted.predict(frame))
    assert loaded._model_impl.get_raw_model().get_params().keys() == fitted.get_params().keys()
    assert set(allowed_types()) >= set(model.trusted_types("logistic_regression"))


def test_load_checked_never_opens_a_pickle_the_metadata_points_at(
    tmp_path: Path, fitted: model.ChurnProbability
) -> None:
    marker = tmp_path / "ran"
    d = saved(tmp_path, fitted, mlmodel(python_function__data="payload/model.pkl"))
    (d / "payload").mkdir()
    (d / "payload" / "model.pkl").write_bytes(pickle.dumps(Unpickled(marker)))
    with pytest.raises(UntrustedModelError, match=r"points python_function\.data at"):
        load_checked(d, WHAT)
    assert not marker.exists()


def test_load_checked_smoke_scores_the_model(
    tmp_path: Path, fitted: model.ChurnProbability
) -> None:
    broken = model.ChurnProbability(fitted.pipeline)
    broken.pipeline = pickle.loads(pickle.dumps(fitted.pipeline))
    classifier = broken.pipeline.steps[-1][1]
    classifier.coef_ = classifier.coef_ * np.nan
    with pytest.raises(ModelSmokeError, match="not finite numbers"):
        load_checked(saved(tmp_path, broken), WHAT)
    assert os.listdir(tmp_path / "model")  # nothing removed: the caller owns the directory
