"""Access to the MLflow tracking store and registry, with failures mapped to our error types.

MLflow's HTTP client retries for minutes by default; a script run by a person or by CI should
say "unreachable" within seconds, so `connect` bounds retries and timeouts (unless the user set
MLflow's own variables) and checks a remote server's /health before doing anything else.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from churn import settings
from churn.errors import RegistryStateError, TrackingUnavailableError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Bounded so that an unreachable server is reported in well under 15 s.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
HEALTH_TIMEOUT_S = 3.0
# MLflow error codes that describe the registry's state rather than a failing store.
_STATE_ERROR_CODES = frozenset(
    {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "NOT_FOUND"}
)


def redact(uri: str) -> str:
    """A tracking URI fit for logs and responses (no user:password@)."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


# Directories of local paths: quoted ('/tmp/x/model.skops', as OSError and MLflow quote them), in
# a store URI (sqlite:////srv/mlflow.db) or bare after a space. URL paths (http://h/api/...) stay.
_QUOTED_DIRS = re.compile(r"""(['"])/(?:[^'"/\s]+/)+""")
_STORE_DIRS = re.compile(r"""\b(sqlite|file):/+(?:[^'"/\s]+/)+""")
_BARE_DIRS = re.compile(r"""(?<![\w.:/~…-])/(?:[^'"/\s]+/)+""")


def hide_paths(text: str) -> str:
    """`text` with the directories of local paths shown as `…/`: what answers over HTTP may say
    (`'…/model.skops'`, `sqlite:///…/mlflow.db`) without telling where files live here."""
    text = _QUOTED_DIRS.sub(r"\1…/", text)
    text = _STORE_DIRS.sub(r"\1:///…/", text)
    return _BARE_DIRS.sub("…/", text)


def bound_http_retries() -> None:
    """MLflow's defaults retry for minutes; keep a user's own settings, else fail in seconds."""
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def artifact_root_for(uri: str) -> str | None:
    """For an embedded SQLite store, keep artifacts beside the database file (./mlartifacts)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def check_reachable(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Fail fast with one line when a tracking server does not answer its /health endpoint."""
    if not is_remote(uri):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
            if resp.status == 200:
                return
            problem = f"answered HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        problem = f"answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        problem = f"is unreachable ({reason})"
    raise TrackingUnavailableError(
        f"tracking server {uri} {problem}: start it (make server) or fix MLFLOW_TRACKING_URI"
    )


def connect(explicit_uri: str | None = None) -> MlflowClient:
    """A client for the tracking store and registry, after a fast reachability check."""
    bound_http_retries()
    uri = settings.tracking_uri(explicit_uri)
    check_reachable(uri)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    except Exception as exc:  # a corrupt or locked SQLite file surfaces here
        raise TrackingUnavailableError(
            f"tracking store {uri} failed to open: {_one_line(exc)}"
        ) from exc


# Libraries whose exceptions mean "the store is failing" (locked or corrupt SQLite, broken HTTP);
# they share no base class we could catch without importing them all.
_STORE_ERROR_MODULES = frozenset({"mlflow", "sqlalchemy", "requests", "urllib3", "sqlite3"})


def is_store_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _STORE_ERROR_MODULES


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Map MLflow / transport failures to our exit codes, with a one-line message."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if exc.error_code in _STATE_ERROR_CODES:
            raise RegistryStateError(_one_line(exc)) from exc
        raise TrackingUnavailableError(
            f"tracking store {uri} failed: {_one_line(exc)}; "
            "check the server or MLFLOW_TRACKING_URI"
        ) from exc
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise TrackingUnavailableError(
            f"tracking store {uri} is unreachable: {_one_line(exc)}"
        ) from exc
    except Exception as exc:
        if is_store_error(exc):
            raise TrackingUnavailableError(
                f"tracking store {uri} failed: {_one_line(exc)}"
            ) from exc
        raise


def ensure_experiment(client: MlflowClient, uri: str, name: str = settings.EXPERIMENT_NAME) -> str:
    """Experiment id for `name`, created on first use (artifacts beside an embedded store)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_root_for(uri)))
