"""The service's settings: typed, validated once at start-up from the environment.

`CHURN_*` variables configure the service; `MLFLOW_TRACKING_URI` (MLflow's own variable) says
where the registry is, defaulting to the repository's embedded SQLite store like every script.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from churn import settings as churn_settings

# models:/<name>@<alias> follows the alias; models:/<name>/<version> pins one version.
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[1-9][0-9]*)$")


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

    @field_validator("admin_token", "webhook_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `CHURN_ADMIN_TOKEN=` in a compose file means "not set", not "the empty token".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_model_uri(self) -> ServeSettings:
        if not (_ALIAS_URI.match(self.model_uri) or _VERSION_URI.match(self.model_uri)):
            raise ValueError(
                f"CHURN_MODEL_URI must be models:/<name>@<alias> or models:/<name>/<version>, "
                f"got {self.model_uri!r}"
            )
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
    def model_name(self) -> str:
        match = _ALIAS_URI.match(self.model_uri) or _VERSION_URI.match(self.model_uri)
        assert match is not None  # checked by the validator
        return match["name"]

    @property
    def model_alias(self) -> str | None:
        """The alias followed, or None when the URI pins a version."""
        match = _ALIAS_URI.match(self.model_uri)
        return match["alias"] if match else None

    @property
    def pinned_version(self) -> int | None:
        match = _VERSION_URI.match(self.model_uri)
        return int(match["version"]) if match else None
