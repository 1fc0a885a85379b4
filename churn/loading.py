"""Loading a registered version: only what train.py writes, deserialised with our trust list.

`mlflow.pyfunc.load_model` trusts the artifact: its MLmodel file says how to deserialise the
model (a `cloudpickle` model is unpickled, i.e. runs whatever code the bytes name), lists the
types skops may instantiate (so a crafted model trusts its own payload), and names a `code`
directory that is put first on `sys.path` for the rest of the process (so any module imported
for the first time afterwards may be the artifact's, and every load adds an entry). A registry
is shared and writable by every training job; a version is not trusted because it is registered.

So every version is downloaded, checked against what train.py logs (the sklearn flavor,
skops-serialised, trusting only `churn.model.TRUSTED_TYPES`), stripped of its `code` directory
(this process runs the installed `churn`, never the artifact's copy), and only then loaded.
The service, promote.py's re-evaluation and drift all load models through `load_version`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn.errors import RegistryStateError

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

LOADER_MODULE = "mlflow.sklearn"
SERIALIZATION_FORMAT = "skops"


class UntrustedModelError(RegistryStateError):
    """The artifact is not a model train.py wrote: refused before any of its bytes are loaded."""


def allowed_types() -> frozenset[str]:
    """Every type a model train.py logs may ask skops to trust (beyond skops' safe defaults)."""
    from churn.model import TRUSTED_TYPES

    return frozenset(t for types in TRUSTED_TYPES.values() for t in types)


def _flavors(model_dir: Path, what: str) -> dict[str, Any]:
    import yaml

    mlmodel = model_dir / "MLmodel"
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UntrustedModelError(f"{what} has no MLmodel file: not a model") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UntrustedModelError(f"{what} has an unreadable MLmodel file ({problem})") from None
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavors, dict):
        raise UntrustedModelError(f"{what}: its MLmodel file lists no flavors")
    return flavors


def check_model_dir(model_dir: Path, what: str) -> None:
    """Raise UntrustedModelError unless `model_dir` holds a model as train.py logs it."""
    flavors = _flavors(model_dir, what)
    pyfunc = flavors.get("python_function")
    sklearn = flavors.get("sklearn")
    if not isinstance(pyfunc, dict) or not isinstance(sklearn, dict):
        raise UntrustedModelError(
            f"{what} is not a scikit-learn model (flavors: {', '.join(map(str, flavors))}): "
            "refusing to load it"
        )
    if pyfunc.get("loader_module") != LOADER_MODULE:
        raise UntrustedModelError(
            f"{what} names loader {pyfunc.get('loader_module')!r}, not {LOADER_MODULE!r}: "
            "refusing to load it"
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
        raise UntrustedModelError(
            f"{what} asks skops to trust types train.py never writes ({', '.join(unknown)}): "
            "refusing to load it"
        )


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
    """`models:/<name>/<version>`, checked and loaded as a pyfunc model (see the module doc)."""
    import mlflow.pyfunc

    with checked_copy(name, version) as local:
        # Loaded into memory: nothing reads the directory after this returns.
        return mlflow.pyfunc.load_model(str(local))


@contextlib.contextmanager
def verified_copy(name: str, version: int | str, what_next: str) -> Iterator[Path]:
    """For the command-line tools: `checked_copy`, also loaded once to prove it loads. A
    version that is refused or does not load raises RegistryStateError (exit 3) with one line
    ending in `what_next`; the store's own failures are left to `tracking.store_errors` (exit 4).
    """
    import mlflow.pyfunc

    try:
        with checked_copy(name, version) as local:
            try:
                mlflow.pyfunc.load_model(str(local))
            except Exception as exc:
                raise refusal(name, version, exc, what_next) from exc
            yield local
    except UntrustedModelError as exc:
        raise refusal(name, version, exc, what_next) from exc


def load_verified(name: str, version: int | str, what_next: str) -> PyFuncModel:
    """`load_version` with the errors of `verified_copy`."""
    import mlflow.pyfunc

    try:
        with checked_copy(name, version) as local:
            try:
                return mlflow.pyfunc.load_model(str(local))
            except Exception as exc:
                raise refusal(name, version, exc, what_next) from exc
    except UntrustedModelError as exc:
        raise refusal(name, version, exc, what_next) from exc


def refusal(
    name: str, version: int | str, exc: BaseException, what_next: str
) -> RegistryStateError:
    """The one-line error (exit 3) for a version that cannot be loaded: the reason's first line,
    without the local paths of the temporary copy."""
    from churn.tracking import hide_paths

    first = hide_paths((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:200]
    reason = first if isinstance(exc, UntrustedModelError) else f"{type(exc).__name__}: {first}"
    return RegistryStateError(f"could not load models:/{name}/{version}: {reason}; {what_next}")
