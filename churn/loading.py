"""Loading a registered version: exactly the file we checked, deserialised with our trust list.

`mlflow.pyfunc.load_model` trusts the artifact: its MLmodel file says how to deserialise the
model (a `cloudpickle` model is unpickled, i.e. runs whatever code the bytes name), lists the
types skops may instantiate (so a crafted model trusts its own payload), names a `code`
directory that is put first on `sys.path` for the rest of the process, and decides which file
the flavour loader opens: `python_function.data` (absent in what train.py writes) may name
another file or directory, even outside the model (`..`, an absolute path), and MLflow's sklearn
loader unpickles a file whose directory has no MLmodel, or reads the serialisation format from
the MLmodel beside it. A registry is shared and writable by every training job; a version is not
trusted because it is registered.

So every version is downloaded and its MLmodel checked against what train.py logs, key by key
(`check_model_dir`): the sklearn flavor, skops, churn/model_types.py's trusted types, one model file
named alike by every key a loader reads, plain names in the directory for every other file
MLflow opens (environment files, input example), no symlinks, no loader options train.py never
writes. Its `code` directory is stripped (this process runs the installed `churn`, never the
artifact's copy). Then `load_checked` opens that one file itself with skops and our trust list
(never MLflow's flavour dispatch) and smoke-scores the model on rows derived from
`churn.schema` (`smoke_score`): a model that raises or answers anything but one probability per
row is refused before anyone uses it. The service, promote.py's re-evaluation, drift and batch
scoring (before Spark loads the same checked copy) all load through `load_checked`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn.errors import RegistryStateError, first_line

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.pyfunc import PyFuncModel

LOADER_MODULE = "mlflow.sklearn"
SERIALIZATION_FORMAT = "skops"
PREDICT_FN = "predict"
FLAVORS = ("python_function", "sklearn")
# The keys MLflow writes in each flavor of a model train.py logs. Any other key is a loader
# option train.py never sets (`model_config`, `streamable`, `model_code_path`...): refused, not
# interpreted, so what a loader does is decided here and not by the artifact.
PYFUNC_KEYS = frozenset(
    {"loader_module", "python_version", "model_path", "data", "env", "code", "predict_fn"}
)
SKLEARN_KEYS = frozenset(
    {"pickled_model", "sklearn_version", "serialization_format", "skops_trusted_types", "code"}
)


class UntrustedModelError(RegistryStateError):
    """The artifact is not a model train.py wrote: refused before any of its bytes are loaded."""


class ModelSmokeError(UntrustedModelError):
    """The model loads but does not answer one probability per row of known input: refused
    before it is used (served, gated, compared)."""


def allowed_types() -> frozenset[str]:
    """Every type a model train.py logs may ask skops to trust (beyond skops' safe defaults)."""
    from churn.model import all_trusted_types

    return all_trusted_types()


def _mlmodel(model_dir: Path, what: str) -> dict[str, Any]:
    import yaml

    mlmodel = model_dir / "MLmodel"
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UntrustedModelError(f"{what} has no MLmodel file: not a model") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UntrustedModelError(f"{what} has an unreadable MLmodel file ({problem})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("flavors"), dict):
        raise UntrustedModelError(f"{what}: its MLmodel file lists no flavors")
    return meta


def _refuse(what: str, problem: str) -> UntrustedModelError:
    return UntrustedModelError(f"{what} {problem}: refusing to load it")


def _check_flavors(flavors: dict[str, Any], what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The python_function and sklearn flavors, as train.py writes them; nothing else."""
    pyfunc, sklearn = flavors.get("python_function"), flavors.get("sklearn")
    if sorted(map(str, flavors)) != sorted(FLAVORS) or not (
        isinstance(pyfunc, dict) and isinstance(sklearn, dict)
    ):
        listed = ", ".join(map(str, flavors))
        raise _refuse(what, f"is not a scikit-learn model (flavors: {listed})")
    for flavor, conf, known in (
        ("python_function", pyfunc, PYFUNC_KEYS),
        ("sklearn", sklearn, SKLEARN_KEYS),
    ):
        extra = sorted(str(k) for k in conf if k not in known)
        if extra:
            raise _refuse(what, f"sets {flavor} options train.py never writes ({', '.join(extra)})")
    if pyfunc.get("loader_module") != LOADER_MODULE:
        raise _refuse(what, f"names loader {pyfunc.get('loader_module')!r}, not {LOADER_MODULE!r}")
    if pyfunc.get("predict_fn", PREDICT_FN) != PREDICT_FN:
        raise _refuse(
            what, f"names predict function {pyfunc.get('predict_fn')!r}, not {PREDICT_FN!r}"
        )
    fmt = sklearn.get("serialization_format")
    if fmt != SERIALIZATION_FORMAT:
        raise UntrustedModelError(
            f"{what} is serialised as {fmt!r}, not {SERIALIZATION_FORMAT!r}: refusing to "
            "deserialise it (unpickling runs whatever code the file names)"
        )
    trusted = sklearn.get("skops_trusted_types") or []
    if not isinstance(trusted, list):
        raise UntrustedModelError(f"{what}: skops_trusted_types is not a list")
    unknown = sorted(str(t) for t in trusted if t not in allowed_types())
    if unknown:
        raise _refuse(
            what, f"asks skops to trust types train.py never writes ({', '.join(unknown)})"
        )
    return pyfunc, sklearn


def _shown(value: Any) -> str:
    """`value` as a refusal may show it: a path by its last part only, so an answer never says
    where files live here (nor a crafted `../../..` chain)."""
    if isinstance(value, str) and ("/" in value or "\\" in value):
        value = "…/" + value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return repr(value)[:80]


def plain_name(value: Any, what: str, key: str) -> str:
    """`value` if it names a file directly in the model directory: not a path (`/`, `..`,
    absolute, a drive), which would let a loader open a file nobody checked."""
    if (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or any(c in value for c in ("/", "\\", "\0", ":"))
    ):
        raise _refuse(what, f"names {_shown(value)} as {key}, not a file in the model directory")
    return value


def _check_paths(
    meta: dict[str, Any], pyfunc: dict[str, Any], sklearn: dict[str, Any], what: str
) -> str:
    """The one model file every loader key names (returned), and plain names for every other
    file MLflow opens from the MLmodel's keys."""
    name = plain_name(sklearn.get("pickled_model"), what, "sklearn.pickled_model")
    # MLflow's loader opens `data` if set (a file whose directory has no MLmodel is unpickled),
    # else `model_path`: both must name the file checked here.
    named = {"model_path": pyfunc.get("model_path")}
    if "data" in pyfunc:
        named["data"] = pyfunc["data"]
    for key, value in named.items():
        if value != name:
            raise _refuse(what, f"points python_function.{key} at {_shown(value)}, not at {name!r}")
    env = pyfunc.get("env", {})
    if not isinstance(env, dict):
        raise _refuse(what, f"names python_function.env {_shown(env)}, not file names")
    for kind, value in env.items():
        plain_name(value, what, f"python_function.env.{kind}")
    for flavor, conf in (("python_function", pyfunc), ("sklearn", sklearn)):
        if conf.get("code") is not None:
            plain_name(conf["code"], what, f"{flavor}.code")
    example = meta.get("saved_input_example_info")
    if isinstance(example, dict):
        for key in ("artifact_path", "serving_input_path"):
            if key in example:
                plain_name(example[key], what, f"saved_input_example_info.{key}")
    elif example is not None:
        raise _refuse(what, "has a saved_input_example_info that is not a mapping")
    return name


def _check_files(model_dir: Path, model_file: str, what: str) -> None:
    """No symlinks (a loader would follow one out of the directory), the model file a regular
    file if it is there (if missing, the load says so), no requirements file including another."""
    for root, dirs, files in os.walk(model_dir):
        for entry in (*dirs, *files):
            if os.path.islink(os.path.join(root, entry)):
                shown = os.path.relpath(os.path.join(root, entry), model_dir)
                raise _refuse(what, f"holds a symbolic link ({shown})")
    path = model_dir / model_file
    if path.exists() and not path.is_file():
        raise _refuse(what, f"has a model file {model_file!r} that is not a regular file")
    requirements = model_dir / "requirements.txt"
    if requirements.is_file():
        for line in requirements.read_text(encoding="utf-8", errors="replace").splitlines():
            # `-r other.txt`, `-c /etc/...`: MLflow's loader reads the files they name.
            if line.strip().startswith("-"):
                option = _shown(line.split()[0][:20])
                raise _refuse(what, f"has a requirements.txt option {option} (naming other files)")


def check_model_dir(model_dir: Path, what: str) -> str:
    """Raise UntrustedModelError unless `model_dir` holds a model as train.py logs it; returns
    the name of its model file, the only file a loader of this directory opens for the model."""
    meta = _mlmodel(model_dir, what)
    pyfunc, sklearn = _check_flavors(meta["flavors"], what)
    model_file = _check_paths(meta, pyfunc, sklearn, what)
    _check_files(model_dir, model_file, what)
    return model_file


def _strip_code(model_dir: Path) -> None:
    """Drop the artifact's copy of our code, so loading never puts it on sys.path."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    for flavor in meta["flavors"].values():
        if isinstance(flavor, dict):
            flavor.pop("code", None)
    mlmodel.write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    shutil.rmtree(model_dir / "code", ignore_errors=True)


class _SklearnPredictor:
    """The pyfunc interface over the estimator, as MLflow's sklearn flavour gives it."""

    def __init__(self, estimator: Any) -> None:
        self.sklearn_model = estimator

    def get_raw_model(self) -> Any:
        return self.sklearn_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.sklearn_model.predict(data)


def load_checked(model_dir: Path, what: str) -> PyFuncModel:
    """The model of a directory `checked_copy` made, as a pyfunc model: its one model file
    opened here with skops and our trust list (whatever the MLmodel says), then smoke-scored.
    Raises UntrustedModelError (ModelSmokeError) for a model that fails the smoke score."""
    import skops.io
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    model_file = check_model_dir(model_dir, what)  # cheap; the directory may have changed
    meta = Model.load(str(model_dir / "MLmodel"))
    estimator = skops.io.load(str(model_dir / model_file), trusted=sorted(allowed_types()))
    model = PyFuncModel(
        model_meta=meta, model_impl=_SklearnPredictor(estimator), model_id=meta.model_id
    )
    smoke_score(model, what)
    return model


def smoke_frame() -> pd.DataFrame:
    """Known rows, derived from `churn.schema` in the dtypes the signature names: every category
    of every column, whole numbers across their range, and a new customer without TotalCharges."""
    import numpy as np
    import pandas as pd

    from churn.schema import FEATURES, Kind

    n = max(len(c.categories) for c in FEATURES) + 1
    columns: dict[str, Any] = {}
    for i, col in enumerate(FEATURES):
        if col.kind is Kind.CATEGORY:
            values: list[Any] = [col.categories[(r + i) % len(col.categories)] for r in range(n)]
            columns[col.name] = pd.Series(values, dtype=object)
            continue
        low = col.minimum or 0.0
        high = col.maximum if col.maximum is not None else low + 100.0
        numbers = np.linspace(low, high, n)
        if col.kind is Kind.NUMBER and col.nullable:
            numbers[-1] = np.nan
        columns[col.name] = (
            numbers.round().astype(col.pandas_dtype) if col.pandas_dtype == "int64" else numbers
        )
    return pd.DataFrame(columns)


def probability_problem(raw: Any, rows: int) -> str | None:
    """Why `raw` is not one probability in [0, 1] per row (None if it is)."""
    import numpy as np

    try:
        values = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return f"it answered {type(raw).__name__}, not numbers"
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (rows,):
        return f"it answered shape {values.shape} for {rows} rows"
    if not np.isfinite(values).all():
        return "it answered values that are not finite numbers"
    if ((values < 0.0) | (values > 1.0)).any():
        return f"it answered values outside [0, 1] ({values.min():.4g} to {values.max():.4g})"
    return None


def smoke_score(model: Any, what: str) -> None:
    """Score `smoke_frame` with `model` (its `predict`, as users call it): raise ModelSmokeError
    unless it answers one probability per row."""
    frame = smoke_frame()
    try:
        raw = model.predict(frame)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelSmokeError(
            f"{what} fails to score {len(frame)} known rows ({type(exc).__name__}: {first}): "
            "refusing to use it"
        ) from exc
    problem = probability_problem(raw, len(frame))
    if problem is not None:
        raise ModelSmokeError(
            f"{what} does not score {len(frame)} known rows with probabilities ({problem}): "
            "refusing to use it"
        )


@contextlib.contextmanager
def checked_copy(name: str, version: int | str) -> Iterator[Path]:
    """A local copy of `models:/<name>/<version>`, checked and stripped (see the module doc),
    for loaders that take a path (Spark's `spark_udf`); removed when the block ends."""
    import mlflow.artifacts

    uri = f"models:/{name}/{version}"
    with tempfile.TemporaryDirectory(prefix="churn-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        check_model_dir(local, uri)
        _strip_code(local)
        yield local


def load_version(name: str, version: int | str) -> PyFuncModel:
    """`models:/<name>/<version>`, checked, loaded and smoke-scored (see the module doc)."""
    with checked_copy(name, version) as local:
        # Loaded into memory: nothing reads the directory after this returns.
        return load_checked(local, f"models:/{name}/{version}")


@contextlib.contextmanager
def verified_copy(name: str, version: int | str, what_next: str) -> Iterator[Path]:
    """For the command-line tools: `checked_copy`, also loaded and smoke-scored once to prove
    it works. A version that is refused or does not load raises RegistryStateError (exit 3) with
    one line ending in `what_next`; the store's own failures are left to `tracking.store_errors`
    (exit 4).
    """
    try:
        with checked_copy(name, version) as local:
            _load_or_refuse(local, name, version, what_next)
            yield local
    except UntrustedModelError as exc:
        raise refusal(name, version, exc, what_next) from exc


def load_verified(name: str, version: int | str, what_next: str) -> PyFuncModel:
    """`load_version` with the errors of `verified_copy`."""
    try:
        with checked_copy(name, version) as local:
            return _load_or_refuse(local, name, version, what_next)
    except UntrustedModelError as exc:
        raise refusal(name, version, exc, what_next) from exc


def _load_or_refuse(local: Path, name: str, version: int | str, what_next: str) -> PyFuncModel:
    try:
        return load_checked(local, f"models:/{name}/{version}")
    except Exception as exc:
        raise refusal(name, version, exc, what_next) from exc


def refusal(
    name: str, version: int | str, exc: BaseException, what_next: str
) -> RegistryStateError:
    """The one-line error (exit 3) for a version that cannot be loaded: the reason's first line,
    without the local paths of the temporary copy."""
    from churn.tracking import hide_paths

    first = hide_paths(first_line(exc, 10_000))[:200]
    reason = first if isinstance(exc, UntrustedModelError) else f"{type(exc).__name__}: {first}"
    return RegistryStateError(f"could not load models:/{name}/{version}: {reason}; {what_next}")
