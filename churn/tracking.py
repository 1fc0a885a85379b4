"""Access to the MLflow tracking store and registry, with failures mapped to our error types.

MLflow's HTTP client retries for minutes by default; a script run by a person or by CI should
say "unreachable" within seconds, so `connect` bounds retries and timeouts (unless the user set
MLflow's own variables) and checks a remote server's /health before doing anything else.
"""

from __future__ import annotations

import base64
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
from churn.redact import redact

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
# Commands that write the registry (promote, rollback, register; `connect(writes=True)`): every
# request bounded so that a stalled store is reported, and a cut move settled, within 15 s; no
# retries, because a retried write hides whether the first one landed: the move re-reads instead
# (churn.moves). Read-only commands (history, lineage, status, ...) keep _HTTP_DEFAULTS: a retry
# of a read changes nothing and rides out a blip.
_REGISTRY_WRITE_HTTP = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "4", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
# The values this module put in os.environ: replaced when the next command in the same process
# needs others (tests and `churn` call several mains in one process); a user's own are kept.
_OURS: dict[str, str] = {}
# MLflow error codes that describe the registry's state rather than a failing store.
_STATE_ERROR_CODES = frozenset(
    {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "NOT_FOUND"}
)


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


def shown(text: str) -> str:
    """What an answer over HTTP may say of `text`: no secret (churn.redact), no local paths."""
    return hide_paths(redact(text))


def bound_http_retries(writes: bool = False) -> None:
    """MLflow's defaults retry for minutes; keep a user's own settings, else fail in seconds
    (`writes`: the registry-write bound, _REGISTRY_WRITE_HTTP)."""
    wanted = {**_HTTP_DEFAULTS, **(_REGISTRY_WRITE_HTTP if writes else {})}
    for key, value in wanted.items():
        if os.environ.get(key) in (None, _OURS.get(key)):
            os.environ[key] = _OURS[key] = value


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def artifact_root_for(uri: str) -> str | None:
    """For an embedded SQLite store, keep artifacts beside the database file (./mlartifacts)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def _auth_headers() -> dict[str, str]:
    """The credentials MLflow would send (basic first, then a bearer token, as its client)."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_reachable(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Fail fast with one line when a tracking server does not answer its /health endpoint.

    `uri` is a URI from `settings.tracking_uri` (credentials already moved out of it): urllib
    takes a `user:password@` for part of the host name."""
    if not is_remote(uri):
        return
    health = urllib.request.Request(f"{uri.rstrip('/')}/health", headers=_auth_headers())
    try:
        with urllib.request.urlopen(health, timeout=timeout) as resp:
            if resp.status == 200:
                return
            problem = f"answered HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise TrackingUnavailableError(
                f"tracking server {redact(uri)} refused the credentials (HTTP {exc.code}): fix "
                "the user:password in MLFLOW_TRACKING_URI (or MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD)"
            ) from None
        problem = f"answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        problem = f"is unreachable ({reason})"
    raise TrackingUnavailableError(
        f"tracking server {redact(uri)} {problem}: start it (make server) or fix "
        "MLFLOW_TRACKING_URI"
    )


def connect(explicit_uri: str | None = None, *, writes: bool = False) -> MlflowClient:
    """A client for the tracking store and registry, after a fast reachability check; `writes`
    for a command that writes the registry (see _REGISTRY_WRITE_HTTP)."""
    bound_http_retries(writes)
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
    # SQLAlchemy puts its own notes first, e.g. "(raised as a result of Query-invoked autoflush;
    # ...)"; the driver's error ("(sqlite3.OperationalError) attempt to write a readonly
    # database") is the line that says what is wrong.
    text = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = [line for line in text if not line.startswith("(raised as a result of")] or text
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
