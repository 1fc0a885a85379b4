"""The two blocking MLflow calls the service makes: resolve the alias, load one version.

Both run in a worker thread (see `reloader.py`), never on the event loop and never per request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from churn.errors import RegistryStateError
from churn.registry_reads import aliases as read_aliases
from churn.registry_reads import run_threshold
from churn.tracking import bound_http_retries, shown
from serve.config import ServeSettings
from serve.holder import LoadedModel, signature_checked

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


class NoModelError(Exception):
    """The registry has nothing to serve yet (no such model, or the alias is unset)."""


@dataclass(frozen=True)
class Target:
    """What the registry says should be served, read in one call."""

    version: int
    # Every alias of the model -> version, as read together with `version`.
    aliases: dict[str, int] = field(default_factory=dict)


class Registry(Protocol):
    def resolve(self) -> Target: ...

    def load(self, version: int) -> LoadedModel: ...


class MlflowRegistry:
    """`alias`: follow this alias of the model instead of CHURN_MODEL_URI's (the challenger)."""

    def __init__(self, settings: ServeSettings, alias: str | None = None) -> None:
        self.settings = settings
        self.alias = alias
        self._client: MlflowClient | None = None

    def client(self) -> MlflowClient:
        if self._client is None:
            # Bounded, as for the scripts: a poll against a dead server fails in seconds.
            bound_http_retries()
            import mlflow
            from mlflow import MlflowClient

            uri = self.settings.tracking_uri
            # load_model("models:/...") reads the process-wide registry URI.
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            self._warm_up()
        return self._client

    @staticmethod
    def _warm_up() -> None:
        """Import what loading a version needs (seconds of imports) before a champion exists,
        so the first load after a promotion takes a fraction of a second."""
        import mlflow.pyfunc
        import mlflow.sklearn
        import skops.io

        import churn.model

        del mlflow, skops, churn

    def _no_model_hint(self) -> str:
        return "run the pipeline (make pipeline) to train and promote one"

    def resolve(self) -> Target:
        s = self.settings
        try:
            aliases = read_aliases(self.client(), s.model_name)
        except RegistryStateError as exc:
            raise NoModelError(
                f"model '{s.model_name}' is not in the registry at "
                f"{shown(s.tracking_uri)}: {self._no_model_hint()}"
            ) from exc
        if self.alias is None and s.pinned_version is not None:
            return Target(s.pinned_version, aliases)
        alias = self.alias or s.model_alias
        assert alias is not None
        if alias not in aliases:
            raise NoModelError(
                f"no version of model '{s.model_name}' has alias @{alias} at "
                f"{shown(s.tracking_uri)}: {self._no_model_hint()}"
            )
        return Target(aliases[alias], aliases)

    def load(self, version: int) -> LoadedModel:
        # Checked against what train.py writes before any byte is deserialised, and smoke-scored
        # (churn/loading.py): a version that fails either never replaces the served one.
        from churn.loading import load_version, smoke_score

        s = self.settings
        client = self.client()
        mv = client.get_model_version(s.model_name, str(version))
        run_id = str(mv.run_id or "")
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        run_tags: dict[str, str] = {}
        if run_id:
            run = client.get_run(run_id)
            metrics = {k: float(v) for k, v in run.data.metrics.items()}
            params = dict(run.data.params)
            run_tags = dict(run.data.tags)
        uri = f"models:/{s.model_name}/{version}"
        log.info("loading %s (run %s)", uri, run_id or "unknown")
        # Signature checked here, once, for the frames the service builds (serve/holder.py);
        # then the predictor the service will call is smoke-scored itself.
        predictor = signature_checked(load_version(s.model_name, version))
        smoke_score(predictor, uri)
        tags = dict(mv.tags or {})
        return LoadedModel(
            name=s.model_name,
            version=int(version),
            run_id=run_id,
            predictor=predictor,
            threshold=run_threshold(params.get("threshold"), s.threshold),
            data_md5=tags.get("data_md5") or run_tags.get("data_md5"),
            training_data=tags.get("training_data") or run_tags.get("training_data"),
            metrics=metrics,
            loaded_at=datetime.now(UTC),
            source=uri,
        )
