"""The FastAPI service: `create_app(settings)` builds it; `main()` is the uvicorn factory.

    uvicorn --factory serve.app:main     (what `make serve` runs)

Nothing is loaded at import. The lifespan starts the reloader, which resolves the alias, loads
that exact version in a worker thread and keeps polling; requests only ever read the holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from importlib import metadata
from itertools import repeat
from typing import Any

import msgspec
import orjson
from fastapi import FastAPI, Request, Security
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPBearer
from pydantic import ValidationError

from serve import limits
from serve import schema as api
from serve.accesslog import ACCESS_LOGGER, AccessLog
from serve.batching import MicroBatcher
from serve.holder import LoadedModel, ModelHolder, NotReadyError, Scored
from serve.metrics import Metrics, MetricsMiddleware
from serve.monitor import TrafficMonitor
from serve.registry import MlflowRegistry, Registry
from serve.reloader import Outcome, Reloader
from serve.security import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AuthError,
    check_bearer,
    verify_webhook,
)
from serve.settings import ServeSettings
from serve.traffic import Shadow, Split

log = logging.getLogger(__name__)

WEBHOOK_MAX_BYTES = 64 * 1024
DESCRIPTION = """\
Scores customers with the model version the MLflow registry alias names (default
`models:/churn@champion`) and follows the alias without a restart.

* `POST /predict` — a batch `{"instances": [...]}` (or one customer object) → P(churn) per row,
  the decision at the model's threshold, and the exact model version that scored them.
* `GET /health` (alive) · `GET /ready` (a model is loaded) · `GET /model` (what is served,
  its metrics and lineage, reload errors) · `GET /metrics` (Prometheus) ·
  `GET /monitoring/profile` (histograms of what was scored, for `python -m churn drift`).
* `CHURN_CHALLENGER_TRAFFIC=0.1` sends a sticky 10% of customers to `@challenger` (each
  prediction says which version scored it); `CHURN_SHADOW=true` scores every row with the
  challenger in the background instead (callers only see the champion).
* `POST /admin/reload` (bearer token) and `POST /webhooks/mlflow` (MLflow webhook, HMAC-signed)
  make the service re-check the alias now.
"""


def _version() -> str:
    try:
        return metadata.version("churn-mlops")
    except metadata.PackageNotFoundError:
        return "0.0.0"


_encode = msgspec.json.Encoder().encode


def json_response(content: Any, status_code: int = 200, **headers: str) -> Response:
    return Response(
        _encode(content), status_code=status_code, media_type="application/json",
        headers=headers or None,
    )  # fmt: skip


class BodyTooLargeError(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _served(model: LoadedModel, aliases: dict[str, int]) -> dict[str, Any]:
    return {
        **model.ref(),
        "uri": model.source,
        "aliases": sorted(a for a, v in aliases.items() if v == model.version),
        "threshold": model.threshold,
        "metrics": model.metrics,
        "data_md5": model.data_md5,
        "training_data": model.training_data,
        "loaded_at": model.loaded_at.isoformat() if model.loaded_at else None,
    }


def create_app(
    settings: ServeSettings,
    registry: Registry | None = None,
    challenger_registry: Registry | None = None,
) -> FastAPI:
    """The service for `settings`. The registries replace MLflow in unit tests."""
    holder = ModelHolder()
    metrics = Metrics()
    reloader = Reloader(
        registry or MlflowRegistry(settings),
        holder,
        metrics,
        settings.reload_interval,
        backoff_max_s=settings.reload_backoff_max_s,
    )
    batcher = MicroBatcher(holder, settings.batch_max_rows, settings.batch_wait_ms / 1000)
    monitor = TrafficMonitor(metrics)
    background: set[asyncio.Task[Any]] = set()

    # The challenger (CHURN_CHALLENGER_TRAFFIC or CHURN_SHADOW): its own holder and reloader on
    # the challenger alias, sharing the champion's copy when both aliases name one version.
    challenger = ModelHolder()
    challenger_reloader: Reloader | None = None
    challenger_batcher: MicroBatcher | None = None
    split: Split | None = None
    shadow: Shadow | None = None
    if settings.challenger_enabled:
        challenger_reloader = Reloader(
            challenger_registry or MlflowRegistry(settings, alias=settings.challenger_alias),
            challenger,
            metrics,
            settings.reload_interval,
            role="challenger",
            peer=holder,
            backoff_max_s=settings.reload_backoff_max_s,
        )
        if settings.challenger_traffic > 0:
            split = Split(settings.challenger_traffic)
            challenger_batcher = MicroBatcher(
                challenger, settings.batch_max_rows, settings.batch_wait_ms / 1000
            )
        else:
            shadow = Shadow(challenger, metrics)

    async def challenger_loop() -> None:
        # The champion first: readiness must not wait for a model only some traffic needs.
        while holder.current is None:
            await asyncio.sleep(0.05)
        assert challenger_reloader is not None
        await challenger_reloader.run()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(reloader.run(), name="model-poll"),
            asyncio.create_task(batcher.run(), name="micro-batcher"),
            asyncio.create_task(monitor.run(), name="traffic-profile"),
            # uvicorn's access log lines, written together every 0.1 s (serve/accesslog.py)
            asyncio.create_task(
                AccessLog(logging.getLogger(ACCESS_LOGGER)).run(), name="access-log"
            ),
        ]
        if challenger_reloader is not None:
            tasks.append(asyncio.create_task(challenger_loop(), name="challenger-poll"))
        if challenger_batcher is not None:
            tasks.append(asyncio.create_task(challenger_batcher.run(), name="challenger-batcher"))
        if shadow is not None:
            tasks.append(asyncio.create_task(shadow.run(), name="shadow"))
        try:
            yield
        finally:
            for task in (*tasks, *background):
                task.cancel()
            for task in (*tasks, *background):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="churn-mlops: churn scoring",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.reloader = reloader
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.monitor = monitor
    app.state.challenger = challenger
    app.state.shadow = shadow
    limits.install(app, settings)  # before the metrics middleware: it counts their answers
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    request_model = api.request_model(settings.max_batch_size)
    too_large = api.RequestError(
        (("body", f"larger than {settings.max_body_bytes} bytes (CHURN_MAX_BODY_BYTES)"),)
    )

    def not_ready_detail() -> str:
        status = reloader.status
        if status.waiting:
            if settings.reload_interval > 0:
                return (
                    f"{status.waiting}; it is picked up within {settings.reload_interval:g} s, "
                    "no restart needed"
                )
            return status.waiting
        if status.last_error:
            return f"{status.last_error['message']}; retrying"
        return "starting: the model is loading"

    def not_ready() -> Response:
        return json_response({"ready": False, "detail": not_ready_detail()}, 503)

    @app.post(
        "/predict",
        summary="Score customers with the served model",
        response_model=api.PredictResponse,
        responses={
            413: {"model": api.ErrorBody, "description": "body over CHURN_MAX_BODY_BYTES"},
            422: {"model": api.ErrorBody, "description": "invalid body: every field named"},
            503: {"description": "no model loaded yet (see GET /ready)"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/PredictRequest"},
                                {"$ref": "#/components/schemas/Customer"},
                            ]
                        },
                        "examples": {
                            "batch": {
                                "summary": "two customers",
                                "value": api.EXAMPLE_REQUEST,
                            },
                            "single": {
                                "summary": "one customer (no instances wrapper)",
                                "value": api.EXAMPLE_ROWS[0],
                            },
                        },
                    }
                },
            }
        },
    )
    async def predict(request: Request) -> Response:
        # While this request is read and validated, a forming batch may wait for it (bounded).
        with batcher.arriving():
            try:
                body = await read_body(request, settings.max_body_bytes)
            except BodyTooLargeError:
                # Closing stops uvicorn from reading (and discarding) the rest of the body.
                return json_response(too_large.body(), 413, Connection="close")
            # Nothing else in flight: no batch to share, so the whole request is parsed, scored
            # and answered in the scoring thread in one go (serve/batching.py). Not when rows
            # may go to the challenger: which side scores a row is decided on the event loop.
            alone = split is None and batcher.alone()
            if not alone:
                try:
                    rows, _batch = api.parse(body, settings.max_batch_size)
                except api.RequestError as exc:
                    return json_response(exc.body(), 422)
        if alone:
            try:
                rows, scored, answer = await batcher.score_alone(
                    lambda: api.parse(body, settings.max_batch_size)[0], champion_answer
                )
            except api.RequestError as exc:
                return json_response(exc.body(), 422)
            except NotReadyError:
                return not_ready()
            after_champion(rows, scored)
            return Response(answer, media_type="application/json")
        if holder.current is None:
            return not_ready()
        sides = (
            split.to_challenger(rows)
            if split is not None and challenger.current is not None
            else None
        )
        try:
            if sides is not None and any(sides):
                return await predict_split(rows, sides)
            # Scored with the other requests in flight by one predict call, in the batcher's
            # thread (pyfunc predict is CPU-bound and blocking: never on the event loop).
            scored = await batcher.score(rows)
        except NotReadyError:
            return not_ready()
        after_champion(rows, scored)
        return Response(champion_answer(rows, scored), media_type="application/json")

    def champion_answer(rows: Sequence[Any], scored: Scored) -> bytes:
        """The body of a 200 for rows all scored by `scored.model` (as `PredictResponse`)."""
        model = scored.model
        threshold = model.threshold
        proba = scored.probabilities
        predictions = list(
            map(
                api.PredictionRow,
                api.customer_ids(rows),
                proba.tolist(),
                (proba >= threshold).tolist(),
                repeat(model.version, len(proba)),
            )
        )
        return _encode({"predictions": predictions, "model": model.ref(), "threshold": threshold})

    def after_champion(rows: Sequence[Any], scored: Scored) -> None:
        """Bookkeeping for rows the champion answered: O(1) each, the work is done later."""
        model = scored.model
        metrics.predictions.labels(str(model.version), "champion").inc(len(rows))
        monitor.observe(rows, scored.probabilities, model.version)
        if shadow is not None:
            shadow.submit(rows, scored.probabilities, model)

    async def predict_split(rows: Sequence[Any], sides: list[bool]) -> Response:
        """Rows of this request on both sides: each side scored in its own batch, in parallel."""
        assert challenger_batcher is not None
        mine: Sequence[Any]
        theirs: Sequence[Any]
        if isinstance(rows, api.Batch):  # stays columns: each side's frame is built from arrays
            mine, theirs = rows.take([not side for side in sides]), rows.take(sides)
        else:
            mine = [r for r, side in zip(rows, sides, strict=True) if not side]
            theirs = [r for r, side in zip(rows, sides, strict=True) if side]
        try:
            if mine:
                champ, chal = await asyncio.gather(
                    batcher.score(mine), challenger_batcher.score(theirs)
                )
            else:
                champ, chal = None, await challenger_batcher.score(theirs)
        except NotReadyError:
            # The challenger went away (promoted, alias removed) mid-request: champion only.
            champ, chal, mine, sides = await batcher.score(rows), None, rows, [False] * len(rows)
        results = {False: iter(champ.probabilities.tolist()) if champ else iter(()),
                   True: iter(chal.probabilities.tolist()) if chal else iter(())}  # fmt: skip
        models = {False: champ.model if champ else None, True: chal.model if chal else None}
        predictions = []
        for customer, side in zip(api.customer_ids(rows), sides, strict=True):
            m = models[side]
            assert m is not None
            p = next(results[side])
            predictions.append(api.PredictionRow(customer, p, p >= m.threshold, m.version))
        if champ is not None:
            after_champion(mine, champ)
        if chal is not None:
            metrics.predictions.labels(str(chal.model.version), "challenger").inc(len(theirs))
        lead = champ or chal
        assert lead is not None
        body: dict[str, Any] = {
            "predictions": predictions,
            "model": lead.model.ref(),
            "threshold": lead.model.threshold,
        }
        if champ is not None and chal is not None:
            body["challenger"] = {**chal.model.ref(), "threshold": chal.model.threshold}
        return json_response(body)

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        summary="Readiness: a model is loaded",
        responses={503: {"description": "no model loaded yet, and why"}},
    )
    async def ready() -> Response:
        model = holder.current
        if model is None:
            return not_ready()
        return json_response({"ready": True, "model": model.ref()})

    def reload_info(r: Reloader) -> dict[str, Any]:
        status = r.status
        return {
            "interval_s": settings.reload_interval,
            "last_check_at": _iso(status.last_check_at),
            "last_loaded_at": _iso(status.last_loaded_at),
            "waiting": status.waiting,
            "last_error": status.last_error,
            "failures": status.failures,
            "consecutive_failures": status.consecutive_failures,
            "registry_reachable": status.registry_reachable,
            "poll_delay_s": status.poll_delay_s,
        }

    @app.get("/model", summary="What is served, its lineage, and the reloader's state")
    async def model_info() -> Response:
        status = reloader.status
        model = holder.current
        doc: dict[str, Any] = {
            "model_uri": settings.model_uri,
            "served": _served(model, status.aliases) if model else None,
            "ready": model is not None,
            "reload": reload_info(reloader),
        }
        if challenger_reloader is not None:
            chal = challenger.current
            doc["challenger"] = {
                "alias": settings.challenger_alias,
                "mode": "split" if split is not None else "shadow",
                "traffic": settings.challenger_traffic,
                "served": _served(chal, challenger_reloader.status.aliases) if chal else None,
                "reload": reload_info(challenger_reloader),
                "shadow": shadow.stats.as_dict() if shadow is not None else None,
            }
        return json_response(doc)

    @app.get(
        "/monitoring/profile",
        summary="Histograms of what the served version scored (features and P(churn)), for drift",
    )
    async def traffic_profile() -> Response:
        await monitor.flush()
        return json_response(monitor.snapshot())

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
        bearer = HTTPBearer(auto_error=False, description="CHURN_ADMIN_TOKEN")

        @app.post(
            "/admin/reload",
            summary="Re-check the alias now and load a new version if it moved",
            dependencies=[Security(bearer)],
            responses={
                401: {"description": "missing or malformed Authorization header"},
                403: {"description": "wrong token"},
                503: {"description": "nothing to serve, or loading failed (old model kept)"},
            },
        )
        async def admin_reload(request: Request) -> Response:
            try:
                check_bearer(request.headers.get("authorization"), token)
            except AuthError as exc:
                extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
                return json_response({"detail": exc.detail}, exc.status, **extra)
            result = await reloader.check("admin")
            ok = result.outcome in (Outcome.LOADED, Outcome.UNCHANGED)
            body = result.as_dict()
            if challenger_reloader is not None:
                body["challenger"] = (await challenger_reloader.check("admin")).as_dict()
            return json_response(body, 200 if ok else 503)

    if settings.webhook_secret is not None:
        secret = settings.webhook_secret.get_secret_value()

        @app.post(
            "/webhooks/mlflow",
            summary="MLflow model-registry webhook: re-check the alias on alias events",
            status_code=202,
            responses={
                200: {"description": "a valid event this service does not act on"},
                401: {"description": "unsigned, stale or wrongly signed delivery"},
            },
        )
        async def mlflow_webhook(request: Request) -> Response:
            try:
                body = await read_body(request, WEBHOOK_MAX_BYTES)
            except BodyTooLargeError:
                return json_response({"detail": "webhook body too large"}, 413)
            h = request.headers
            try:
                verify_webhook(
                    secret,
                    body,
                    h.get(SIGNATURE_HEADER),
                    h.get(TIMESTAMP_HEADER),
                    h.get(DELIVERY_ID_HEADER),
                    settings.webhook_tolerance_s,
                )
            except AuthError as exc:
                return json_response({"detail": exc.detail}, exc.status)
            try:
                event = orjson.loads(body)
                entity, action, data = event["entity"], event["action"], event["data"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return json_response(
                    {"detail": "not an MLflow webhook event (entity, action, data)"}, 400
                )
            name = data.get("name") if isinstance(data, dict) else None
            alias = data.get("alias") if isinstance(data, dict) else None
            followed = {settings.model_alias: reloader}
            if challenger_reloader is not None:
                followed[settings.challenger_alias] = challenger_reloader
            target = followed.get(alias) if alias is not None else None
            if not (entity == "model_version_alias" and name == settings.model_name and target):
                return json_response(
                    {"accepted": False, "detail": f"ignored: {entity}.{action} for {name!r}"}, 200
                )
            log.info("webhook %s: %s.%s @%s", h.get(DELIVERY_ID_HEADER), entity, action, alias)
            # Answer at once (MLflow times out and retries slow receivers); check in background.
            task = asyncio.create_task(target.check("webhook"))
            background.add(task)
            task.add_done_callback(background.discard)
            return json_response(
                {"accepted": True, "detail": f"re-checking @{alias} of '{name}'"}, 202
            )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            body = request_model.model_json_schema(ref_template="#/components/schemas/{model}")
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["PredictRequest"] = body
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def main() -> FastAPI:
    """uvicorn's app factory: settings from the environment, validated before anything starts."""
    try:
        settings = ServeSettings()
    except ValidationError as exc:
        logging.basicConfig(level=logging.INFO)
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            log.error("invalid setting %s: %s", where, err["msg"])
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("serve").setLevel(settings.log_level)
    # A service log is lines: no "Downloading artifacts" progress bar for every model load.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return create_app(settings)
