"""The FastAPI service: `create_app(settings)` builds it; `main()` is the uvicorn factory.

    uvicorn --factory serve.app:main     (what `make serve` runs)

Nothing is loaded at import. The lifespan starts the reloader, which resolves the alias, loads
that exact version in a worker thread and keeps polling; requests only ever read the holder.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from functools import partial
from importlib import metadata
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.middleware.cors import CORSMiddleware
from uvicorn.config import STARTUP_FAILURE

from churn import redact
from serve import api_models, apidoc, http_errors, invocations, limits
from serve.accesslog import REQUEST_ID_HEADER, RequestIdMiddleware
from serve.config import ServeSettings
from serve.metrics import Metrics, MetricsMiddleware
from serve.model_source import Registry
from serve.routes import admin, operations, scoring
from serve.security import admin_guard, api_guard
from serve.services import lifespan

log = logging.getLogger(__name__)

DESCRIPTION = """\
Scores customers with the model version the MLflow registry alias names (default
`models:/churn@champion`) and follows the alias without a restart.

* `POST /predict` — a batch `{"instances": [...]}` (or one customer object) → P(churn) per row,
  the decision at the model's threshold, and the exact model version that scored them.
* `POST /invocations` (+ `GET /ping`, `GET /version`) — MLflow's scoring protocol, as
  `mlflow models serve` speaks it (`dataframe_split`, `dataframe_records`, `instances`,
  `inputs`, or CSV) → `{"predictions": [P(churn), ...]}`: its clients switch by changing the host.
* `GET /health` (alive) · `GET /ready` (a model is loaded) · `GET /model` (what is served,
  its metrics and lineage, reload errors) · `GET /metrics` (Prometheus) ·
  `GET /monitoring/profile` (histograms of what was scored, for `python -m churn drift`).
* `CHURN_CHALLENGER_TRAFFIC=0.1` sends a sticky 10% of customers to `@challenger` (each
  prediction says which version scored it); `CHURN_SHADOW=true` scores every row with the
  challenger in the background instead (callers only see the champion).
* `POST /admin/reload` (bearer token) and `POST /webhooks/mlflow` (MLflow webhook, HMAC-signed)
  make the service re-check the alias now.
* `WEB_CONCURRENCY=N`: N worker processes on one port, each with its own model and micro-batcher;
  a reload any of them receives reaches them all (`GET /model` names the worker that answered).
"""


def _version() -> str:
    try:
        return metadata.version("churn-mlops")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def create_app(
    settings: ServeSettings,
    registry: Registry | None = None,
    challenger_registry: Registry | None = None,
) -> FastAPI:
    """The service for `settings`. The registries replace MLflow in unit tests."""
    metrics = Metrics()  # built here: the middleware counts from the first request
    app = FastAPI(
        title="churn-mlops: churn scoring",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan(settings, metrics, registry, challenger_registry),
        generate_unique_id_function=apidoc.operation_id,
        exception_handlers=http_errors.handlers(invocations.PATHS, _not_ready_detail),
    )
    _add_middleware(app, settings, metrics)
    guard = api_guard(settings.api_token)
    _include(app, scoring.router, guard)
    _include(app, invocations.router, guard)
    _include(app, invocations.status_router)
    _include(app, operations.router)
    if settings.admin_token is not None:
        _include(app, admin.reload_router, admin_guard(settings.admin_token))
    if settings.webhook_secret is not None:
        _include(app, admin.webhook_router)
    request_model = api_models.request_model(settings.max_batch_size)
    app.openapi = partial(_openapi, app, request_model)  # type: ignore[method-assign]
    return app


def _include(app: FastAPI, router: APIRouter, dependencies: Sequence[Any] = ()) -> None:
    """The router's routes as the app's own, behind `dependencies`. Not `include_router`: since
    FastAPI 0.165 that adds one nested router (matched at request time), so `app.routes` would
    no longer list the paths (deploy/k8s_lint.py reads them to check the probes)."""
    for route in router.routes:
        assert isinstance(route, APIRoute)
        app.add_api_route(
            route.path, route.endpoint, methods=sorted(route.methods or ()), name=route.name,
            dependencies=[*dependencies, *route.dependencies], summary=route.summary,
            description=route.description, response_model=route.response_model,
            status_code=route.status_code, responses=route.responses,
            response_class=route.response_class, openapi_extra=route.openapi_extra,
            tags=route.tags,
        )  # fmt: skip


def _add_middleware(app: FastAPI, settings: ServeSettings, metrics: Metrics) -> None:
    limits.install(app, settings)  # before the metrics middleware: it counts their answers
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Opt-in (issue 22): outermost, so a preflight or a refused request is answered with them.
    if settings.request_id:
        app.add_middleware(RequestIdMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
        )


def _not_ready_detail(request: Request) -> str:
    # The services exist once the lifespan started; before, nothing can be loaded either.
    services = getattr(request.app.state, "services", None)
    return services.not_ready_detail() if services else "starting: the model is loading"


def _openapi(app: FastAPI, request_model: type[BaseModel]) -> dict[str, Any]:
    """The document, with /predict's body (its bounds depend on the settings) and /invocations'
    rows, the tags and the hand-built answers (serve/apidoc.py)."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        body = request_model.model_json_schema(ref_template="#/components/schemas/{model}")
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["PredictRequest"] = body
        invocations.rows_schema(doc, body["properties"]["instances"])
        app.openapi_schema = apidoc.decorate(doc)
    return app.openapi_schema


def _invalid_settings_status() -> int:
    """2 (a usage error) when this process serves alone. One of several uvicorn workers exits
    with uvicorn's STARTUP_FAILURE (3) instead: the supervisor then stops the server, where for
    any other status it would start the worker again, every half second, for ever."""
    return STARTUP_FAILURE if multiprocessing.parent_process() is not None else 2


def main() -> FastAPI:
    """uvicorn's app factory: settings from the environment, validated before anything starts."""
    # Before anything logs: no log line, warning or traceback of the service shows a secret.
    redact.install()
    try:
        settings = ServeSettings()
    except ValidationError as exc:
        logging.basicConfig(level=logging.INFO)
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            log.error("invalid setting %s: %s", where, err["msg"])
        raise SystemExit(_invalid_settings_status()) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("serve").setLevel(settings.log_level)
    # A service log is lines: no "Downloading artifacts" progress bar for every model load.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return create_app(settings)
