"""What the registry says about a model, read one way everywhere: a model URI's parts, the
aliases of a model, and the decision threshold a version's run logged.

The batch scorer (churn/score.py), the service (serve/), the scripts and CI all read these, so
each rule lives here once: a URI the service accepts is one the scorer accepts, and an alias or a
threshold reads the same wherever it is read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from churn.errors import RegistryStateError
from churn.settings import MODEL_NAME

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# models:/<name>@<alias> follows the alias; models:/<name>/<version> pins one version (>= 1).
_MODEL_URI = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[1-9][0-9]*))$"
)
MODEL_URI_FORMS = "models:/<name>@<alias> or models:/<name>/<version>"


@dataclass(frozen=True)
class ModelUri:
    """A registry URI's parts: exactly one of `alias` and `version` is set."""

    name: str
    alias: str | None
    version: int | None


def parse_model_uri(uri: str) -> ModelUri:
    """`models:/churn@champion` -> (churn, champion, None); `models:/churn/3` -> version 3.

    Raises ValueError for anything else; each caller says it in its own words (a flag, a
    variable)."""
    match = _MODEL_URI.match(uri)
    if match is None:
        raise ValueError(f"must be {MODEL_URI_FORMS}, got {uri!r}")
    version = match["version"]
    return ModelUri(match["name"], match["alias"], int(version) if version else None)


def aliases(client: MlflowClient, name: str = MODEL_NAME) -> dict[str, int]:
    """Every alias of `name` -> version, in one read. Raises RegistryStateError if no such model."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryStateError(
                f"model '{name}' is not in the registry: train one first (make pipeline)"
            ) from exc
        raise
    return {alias: int(version) for alias, version in (model.aliases or {}).items()}


def alias_version(client: MlflowClient, alias: str, name: str = MODEL_NAME) -> int | None:
    """The version `alias` points at; None when it is unset or the model is not registered yet
    (a first run: nothing to compare with, nothing to keep)."""
    try:
        return aliases(client, name).get(alias)
    except RegistryStateError:
        return None


def run_threshold(logged: str | None, fallback: float) -> float:
    """The decision threshold a version's training run logged (its `threshold` param: what its
    f1/precision/recall were computed at), else `fallback`. A logged value that is not a
    probability in (0, 1) is a warning, not a silent fallback."""
    if logged is None:
        return fallback
    try:
        value = float(logged)
    except ValueError:
        log.warning("run param threshold=%r is not a number; using %s", logged, fallback)
        return fallback
    if not 0.0 < value < 1.0:
        log.warning("run param threshold=%s is outside (0, 1); using %s", value, fallback)
        return fallback
    return value
