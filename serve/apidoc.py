"""What the OpenAPI document adds for generated clients: readable operation ids, tags, and the
schemas of the answers the routes build by hand (/ready, /model).

The routes answer with pre-encoded bytes (speed: no response-model validation per request), so
FastAPI cannot see their shape; the models below describe it, and tests/unit/test_invocations.py
validates real answers against them so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from serve.api_models import ModelRef

# path -> tag; a path not listed is "operations".
TAGS: dict[str, str] = {
    "/predict": "scoring",
    "/invocations": "mlflow",
    "/ping": "mlflow",
    "/version": "mlflow",
    "/admin/reload": "admin",
    "/webhooks/mlflow": "admin",
}
TAG_DESCRIPTIONS = [
    {"name": "scoring", "description": "Our scoring API: P(churn), decision, model version"},
    {"name": "mlflow", "description": "MLflow's scoring protocol, as `mlflow models serve`"},
    {"name": "operations", "description": "Health, readiness, what is served, metrics"},
    {"name": "admin", "description": "Make the service re-check its alias"},
]


def operation_id(route: APIRoute) -> str:
    """The route's function name (`predict`, `model_info`): what a generated client calls."""
    return route.name


class NotReady(BaseModel):
    ready: bool = False
    detail: str = Field(description="why not, and what to do")


class Ready(BaseModel):
    ready: bool = True
    model: ModelRef


class Served(ModelRef):
    uri: str
    aliases: list[str]
    threshold: float
    metrics: dict[str, float]
    data_md5: str | None
    training_data: str | None
    loaded_at: str | None


class ReloadState(BaseModel):
    interval_s: float
    last_check_at: str | None
    last_loaded_at: str | None
    waiting: str | None
    last_error: dict[str, Any] | None
    failures: int
    consecutive_failures: int
    registry_reachable: bool | None
    poll_delay_s: float | None


class ChallengerInfo(BaseModel):
    alias: str
    mode: str = Field(description="split or shadow")
    traffic: float
    served: Served | None
    reload: ReloadState
    shadow: dict[str, Any] | None


class Worker(BaseModel):
    """The process that answered: with WEB_CONCURRENCY > 1, one of several, each with its own
    model, reloader, metrics and traffic profile."""

    pid: int
    one_of_several: bool = Field(
        description="one of several worker processes: a reload any of them receives reaches all"
    )


class ModelInfo(BaseModel):
    model_uri: str
    served: Served | None
    ready: bool
    reload: ReloadState
    worker: Worker
    challenger: ChallengerInfo | None = None


_ANSWERS: dict[str, dict[str, type[BaseModel]]] = {
    "/ready": {"200": Ready, "503": NotReady},
    "/model": {"200": ModelInfo},
}


def decorate(doc: dict[str, Any]) -> dict[str, Any]:
    """Tags on every operation, and the /ready and /model answer schemas, in `doc`."""
    doc["tags"] = TAG_DESCRIPTIONS
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for path, methods in doc.get("paths", {}).items():
        for operation in methods.values():
            operation["tags"] = [TAGS.get(path, "operations")]
        for status, model in _ANSWERS.get(path, {}).items():
            answer = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(answer.pop("$defs", {}))
            schemas[model.__name__] = answer
            responses = methods["get"].setdefault("responses", {})
            responses.setdefault(status, {"description": model.__doc__ or model.__name__})
            responses[status]["content"] = {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            }
    return doc
