"""Making the service re-check its alias now: POST /admin/reload (bearer token, CHURN_ADMIN_TOKEN)
and POST /webhooks/mlflow (MLflow's signed webhook, CHURN_WEBHOOK_SECRET). `create_app` includes
each router only when its setting is given."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from serve.http_errors import BodyTooLarge, Refused, json_response
from serve.limits import read_body
from serve.reloader import Outcome
from serve.security import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AuthError,
    DeliveryLog,
    verify_webhook,
)
from serve.services import Services, ServicesDep

log = logging.getLogger(__name__)

WEBHOOK_MAX_BYTES = 64 * 1024

reload_router = APIRouter(tags=["admin"])
webhook_router = APIRouter(tags=["admin"])


@reload_router.post(
    "/admin/reload",
    summary="Re-check the alias now and load a new version if it moved",
    responses={
        401: {"description": "missing or malformed Authorization header"},
        403: {"description": "wrong token"},
        503: {"description": "nothing to serve, or loading failed (old model kept)"},
    },
)
async def admin_reload(services: ServicesDep) -> Response:
    services.announce_reload()  # one of several workers: the others re-check too
    result = await services.reloader.check("admin")
    ok = result.outcome in (Outcome.LOADED, Outcome.UNCHANGED)
    body = result.as_dict()
    if services.challenger is not None:
        body["challenger"] = (await services.challenger.reloader.check("admin")).as_dict()
    return json_response(body, 200 if ok else 503)


@dataclass(frozen=True)
class AliasEvent:
    entity: str
    action: str
    name: str | None
    alias: str | None


def parse_event(body: bytes) -> AliasEvent:
    """An MLflow webhook event; Refused (400) when the body is not one."""
    try:
        event = orjson.loads(body)
        entity, action, data = event["entity"], event["action"], event["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise Refused(400, "not an MLflow webhook event (entity, action, data)") from None
    name = data.get("name") if isinstance(data, dict) else None
    alias = data.get("alias") if isinstance(data, dict) else None
    return AliasEvent(entity, action, name, alias)


@webhook_router.post(
    "/webhooks/mlflow",
    summary="MLflow model-registry webhook: re-check the alias on alias events",
    status_code=202,
    responses={
        200: {"description": "a valid event this service does not act on"},
        401: {"description": "unsigned, stale or wrongly signed delivery"},
    },
)
async def mlflow_webhook(request: Request, services: ServicesDep) -> Response:
    body = await _verified_body(request, services)
    if body is None:
        # 200, not 4xx: MLflow resends a delivery whose answer it did not get and marks any
        # status >= 400 as failed; the repeat is acknowledged and not acted on.
        delivery_id = request.headers.get(DELIVERY_ID_HEADER, "")
        detail = f"duplicate delivery {delivery_id[:80]!r}; ignored"
        return json_response({"accepted": False, "detail": detail}, 200)
    event = parse_event(body)
    target = services.followed().get(event.alias) if event.alias is not None else None
    settings = services.settings
    if not (event.entity == "model_version_alias" and event.name == settings.model_name and target):
        detail = f"ignored: {event.entity}.{event.action} for {event.name!r}"
        return json_response({"accepted": False, "detail": detail}, 200)
    log.info(
        "webhook %s: %s.%s @%s",
        request.headers.get(DELIVERY_ID_HEADER), event.entity, event.action, event.alias,
    )  # fmt: skip
    # Answer at once (MLflow times out and retries slow receivers); check in the background.
    services.spawn(target.check("webhook"))
    services.announce_reload()
    detail = f"re-checking @{event.alias} of '{event.name}'"
    return json_response({"accepted": True, "detail": detail}, 202)


async def _verified_body(request: Request, services: Services) -> bytes | None:
    """The body of a signed, recent delivery (None when it was received before); Refused
    otherwise."""
    try:
        body = await read_body(request, WEBHOOK_MAX_BYTES)
    except BodyTooLarge:
        raise Refused(413, "webhook body too large") from None
    h = request.headers
    delivery_id = h.get(DELIVERY_ID_HEADER, "")
    settings = services.settings
    assert settings.webhook_secret is not None and services.deliveries is not None
    try:
        sent_at = verify_webhook(
            settings.webhook_secret.get_secret_value(), body, h.get(SIGNATURE_HEADER),
            h.get(TIMESTAMP_HEADER), delivery_id, settings.webhook_tolerance_s,
        )  # fmt: skip
    except AuthError as exc:
        raise Refused(exc.status, exc.detail) from None
    return body if _first_delivery(services.deliveries, delivery_id, sent_at) else None


def _first_delivery(deliveries: DeliveryLog, delivery_id: str, sent_at: int) -> bool:
    """False for a delivery already received; Refused (429) for one too many."""
    seen = deliveries.record(delivery_id, sent_at)
    if seen == "full":
        raise Refused(429, "too many webhook deliveries; retry later")
    return seen != "duplicate"
