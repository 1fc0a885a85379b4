"""Payloads of hostile model artifacts. Each leaves a marker file when its bytes are loaded, so
a test can tell "refused" from "loaded and ran the attacker's code"."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Unpickled:
    """Unpickling this calls `open(marker, "w")`: any callable could stand in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


class Canary:
    """skops rebuilds objects with `__setstate__`: a type the artifact lists as trusted runs it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)


# Versions whose checked file (model.skops) is the genuine one, but whose MLmodel makes MLflow's
# loader open another file, or whose model loads and then does not answer probabilities. What
# each would do under plain `mlflow.pyfunc.load_model`, and what must happen instead: see
# test_artifacts.py's CRAFTED.
def craft(source: Path, work: Path, markers: Path) -> dict[str, Path]:
    """Crafted model directories (copies of the genuine `source`), by name. Each pickle payload
    leaves `markers/<name>` if it is ever unpickled."""
    made: dict[str, Path] = {}

    def copy(what: str, **pyfunc: Any) -> Path:
        made[what] = shutil.copytree(source, work / what)
        _update_mlmodel(made[what], "python_function", **pyfunc)
        return made[what]

    # `data` naming a file in a directory without MLmodel: MLflow assumes a pickle.
    payload = copy("data-names-a-pickle", data="payload/model.pkl") / "payload"
    _pickle(payload / "model.pkl", markers / "data-names-a-pickle")
    # `data` naming a directory: MLflow reads *its* MLmodel (serialisation: pickle).
    payload = copy("data-names-a-directory", data="payload") / "payload"
    _pickle(payload / "model.pkl", markers / "data-names-a-directory")
    (payload / "MLmodel").write_text(_PICKLE_MLMODEL)
    # `data` leaving the model directory: absolute, or `..` up to the root and down again.
    outside = work / "outside"
    _pickle(outside / "absolute.pkl", markers / "data-is-absolute")
    copy("data-is-absolute", data=str(outside / "absolute.pkl"))
    _pickle(outside / "dotdot.pkl", markers / "data-climbs-out")
    copy("data-climbs-out", data="../" * 40 + str(outside / "dotdot.pkl").lstrip("/"))
    # `model_path` naming another file than the checked `pickled_model`.
    _pickle(
        copy("model-path-elsewhere", model_path="model.pkl") / "model.pkl",
        markers / "model-path-elsewhere",
    )
    # Loader options train.py never writes.
    copy("model-config", model_config={"x": 1})
    copy("predict-fn-proba", predict_fn="predict_proba")  # two columns: every answer a 500
    # Genuine types and files, the model broken: NaN scores, or a predict that raises.
    _damage_estimator(copy("nan-scores"), lambda coef: coef * float("nan"))
    _damage_estimator(copy("predict-raises"), lambda coef: coef[:, :3])
    return made


# An MLmodel as `mlflow.sklearn.save_model(serialization_format="pickle")` writes it.
_PICKLE_MLMODEL = """\
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
  sklearn:
    pickled_model: model.pkl
    serialization_format: pickle
"""


def _pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Unpickled(marker)))


def _update_mlmodel(model_dir: Path, flavor: str, **keys: Any) -> None:
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    meta["flavors"][flavor].update(keys)
    (model_dir / "MLmodel").write_text(yaml.safe_dump(meta, sort_keys=False))


def _damage_estimator(model_dir: Path, damage: Callable[[Any], Any]) -> None:
    """Rewrite model.skops with the classifier's coefficients damaged (same types, same file)."""
    import skops.io

    from churn.loading import allowed_types

    estimator = skops.io.load(model_dir / "model.skops", trusted=sorted(allowed_types()))
    classifier = estimator.pipeline.steps[-1][1]
    classifier.coef_ = damage(classifier.coef_)
    skops.io.dump(estimator, model_dir / "model.skops")
