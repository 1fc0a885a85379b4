"""Health, readiness, what is served, the traffic profile and the Prometheus metrics."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from serve import answers
from serve.http_errors import NotReadyError, json_response
from serve.services import Services, ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: a model is loaded",
    responses={503: {"description": "no model loaded yet, and why"}},
)
async def ready(services: ServicesDep) -> Response:
    model = services.holder.current
    if model is None:
        raise NotReadyError
    return json_response({"ready": True, "model": model.ref()})


@router.get("/model", summary="What is served, its lineage, and the reloader's state")
async def model_info(services: ServicesDep) -> Response:
    return json_response(model_document(services))


def model_document(services: Services) -> dict[str, Any]:
    """/model's answer (`apidoc.ModelInfo`)."""
    settings, interval = services.settings, services.settings.reload_interval
    status = services.reloader.status
    model = services.holder.current
    doc: dict[str, Any] = {
        "model_uri": settings.model_uri,
        "served": answers.served(model, status.aliases) if model else None,
        "ready": model is not None,
        "reload": answers.reload_state(status, interval),
        "worker": {"pid": os.getpid(), "one_of_several": services.broadcast is not None},
    }
    side = services.challenger
    if side is not None:
        chal, chal_status = side.holder.current, side.reloader.status
        doc["challenger"] = {
            "alias": settings.challenger_alias,
            "mode": "split" if side.split is not None else "shadow",
            "traffic": settings.challenger_traffic,
            "served": answers.served(chal, chal_status.aliases) if chal else None,
            "reload": answers.reload_state(chal_status, interval),
            "shadow": side.shadow.stats.as_dict() if side.shadow is not None else None,
        }
    return doc


@router.get(
    "/monitoring/profile",
    summary="Histograms of what the served version scored (features and P(churn)), for drift",
)
async def traffic_profile(services: ServicesDep) -> Response:
    await services.monitor.flush()
    return json_response(services.monitor.snapshot())


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def prometheus(services: ServicesDep) -> Response:
    metrics = services.metrics
    return Response(metrics.render(), media_type=metrics.content_type)
