"""The service's settings: typed, validated once at start-up from the environment.

`CHURN_*` variables configure the service; `MLFLOW_TRACKING_URI` (MLflow's own variable) says
where the registry is, defaulting to the repository's embedded SQLite store like every script.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from churn import settings as churn_settings
from churn.registry_reads import MODEL_URI_FORMS, ModelUri, parse_model_uri


class ServeSettings(BaseSettings):
    """Every knob of the service. Environment variables win over the defaults below."""

    model_config = SettingsConfigDict(
        env_prefix="CHURN_", extra="ignore", frozen=True, populate_by_name=True
    )

    tracking_uri: str = Field(
        default_factory=churn_settings.default_tracking_uri,
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking/registry URI (MLFLOW_TRACKING_URI)",
    )
    model_uri: str = Field(
        default=f"models:/{churn_settings.MODEL_NAME}@{churn_settings.CHAMPION}",
        description="models:/<name>@<alias> (followed) or models:/<name>/<version> (pinned)",
    )
    reload_interval: float = Field(
        default=10.0,
        ge=0.0,
        description="seconds between polls of the alias; 0 disables polling",
    )
    reload_backoff_max_s: float = Field(
        default=60.0,
        gt=0.0,
        description="while the registry cannot be read the poll interval doubles, up to this "
        "many seconds; the first check that reads it again resets the interval",
    )
    workers: int = Field(
        default=1,
        ge=1,
        validation_alias="WEB_CONCURRENCY",
        description="worker processes (uvicorn reads WEB_CONCURRENCY itself, as its --workers "
        "flag); each micro-batches and follows the alias on its own, and a reload one of them "
        "receives reaches them all (serve/workers.py)",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="bearer token for POST /admin/reload; unset disables it"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="MLflow webhook secret; unset disables POST /webhooks/mlflow"
    )
    webhook_tolerance_s: int = Field(
        default=300, ge=1, description="max age of a webhook delivery's timestamp (replay guard)"
    )
    max_batch_size: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="a request not answered within this many seconds is cancelled: 408 if its "
        "body had not arrived (a stalled client), else 503",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="a request head (request line and headers) larger than this is refused "
        "with 431 and its connection closed (serve/protocol.py)",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description="a request head not complete within this many seconds of the connection "
        "opening (or of its first byte on a kept-alive connection) is refused with 408 and "
        "its connection closed",
    )
    threshold: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="decision threshold used when the model's run has no 'threshold' param",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    batch_max_rows: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="micro-batching: most rows scored by one predict call (1 = no batching); "
        "a single larger request is still scored alone, never split",
    )
    batch_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=50.0,
        description="micro-batching: longest a forming batch waits for requests being read; "
        "a lone request never waits",
    )

    challenger_traffic: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share of rows scored by the challenger alias instead of the champion "
        "(sticky: a customerID always goes to the same side); 0 disables the split",
    )
    shadow: bool = Field(
        default=False,
        description="the challenger also scores every row in the background; callers only "
        "ever get the champion's answer; the comparison is on GET /model and /metrics",
    )
    challenger_alias: str = Field(
        default=churn_settings.CHALLENGER,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the alias that CHURN_CHALLENGER_TRAFFIC and CHURN_SHADOW score with",
    )

    # --- What users of other model servers expect (issue 22); each off unless set. -----------
    api_token: SecretStr | None = Field(
        default=None,
        description="bearer token required on the scoring endpoints (POST /predict, POST "
        "/invocations); unset: they are open (health, readiness and /metrics always are)",
    )
    # NoDecode: the comma-separated form is parsed by `_comma_separated`, not as JSON.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins browsers may call the API from (CORS), as a JSON list or "
        "comma-separated: https://app.example.com,https://admin.example.com; empty: no CORS",
    )
    request_id: bool = Field(
        default=False,
        description="take X-Request-ID from each request (or make one), return it in the "
        "answer and write it at the end of the access-log line",
    )
    prediction_log: str | None = Field(
        default=None,
        description="append every scored row (time, request id, customerID, version, role, "
        "P(churn), decision, features) to Parquet files by day under this folder or s3:// "
        "prefix, off the request path (`churn live-eval` reads it); unset: no log",
    )
    prediction_log_keep_days: int = Field(
        default=90, ge=1, description="days of the prediction log kept (older days deleted)"
    )
    prediction_log_max_pending_rows: int = Field(
        default=200_000,
        ge=1,
        description="rows waiting to be written before new ones are dropped (and counted in "
        "churn_prediction_log_rows_total{outcome=dropped}): the log never slows a request",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("admin_token", "webhook_secret", "api_token", "prediction_log", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `CHURN_ADMIN_TOKEN=` in a compose file means "not set", not "the empty token".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("tracking_uri")
    @classmethod
    def _credentials_to_mlflow(cls, value: str) -> str:
        # The scripts' rule (churn/settings.py): user:password@ leave the URI for MLflow's
        # MLFLOW_TRACKING_USERNAME / _PASSWORD, so no message quoting the URI carries them.
        return churn_settings.use_credentials(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_model_uri(self) -> ServeSettings:
        try:
            parse_model_uri(self.model_uri)
        except ValueError:
            raise ValueError(
                f"CHURN_MODEL_URI must be {MODEL_URI_FORMS}, got {self.model_uri!r}"
            ) from None
        if self.challenger_traffic > 0 and self.shadow:
            raise ValueError(
                "CHURN_CHALLENGER_TRAFFIC and CHURN_SHADOW are two ways to try a challenger: "
                "set one of them"
            )
        if self.challenger_enabled and self.challenger_alias == self.model_alias:
            raise ValueError(
                f"CHURN_CHALLENGER_ALIAS is the alias being served (@{self.model_alias}): "
                "the challenger must be another alias"
            )
        return self

    @property
    def challenger_enabled(self) -> bool:
        return self.challenger_traffic > 0 or self.shadow

    @property
    def _parsed_uri(self) -> ModelUri:
        return parse_model_uri(self.model_uri)  # checked by the validator

    @property
    def model_name(self) -> str:
        return self._parsed_uri.name

    @property
    def model_alias(self) -> str | None:
        """The alias followed, or None when the URI pins a version."""
        return self._parsed_uri.alias

    @property
    def pinned_version(self) -> int | None:
        return self._parsed_uri.version
