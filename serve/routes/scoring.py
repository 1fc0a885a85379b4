"""POST /predict: decode and validate the body, route each row (champion or challenger), score,
answer (serve/answers.py), each once and in that order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serve import answers, api_models, invocations, validation
from serve.http_errors import JSON, NotReadyError
from serve.limits import read_body
from serve.rows import Batch, customer_ids
from serve.services import Services, ServicesDep

router = APIRouter(tags=["scoring"])

_BODY = {
    "schema": {
        "oneOf": [
            {"$ref": "#/components/schemas/PredictRequest"},
            {"$ref": "#/components/schemas/Customer"},
        ]
    },
    "examples": {
        "batch": {"summary": "two customers", "value": api_models.EXAMPLE_REQUEST},
        "single": {
            "summary": "one customer (no instances wrapper)",
            "value": api_models.EXAMPLE_ROWS[0],
        },
    },
}


def parse(body: bytes, max_rows: int) -> Sequence[Any]:
    """The validated rows of a /predict body; a RequestError (422) names what is wrong, and
    points a body in MLflow's format to /invocations."""
    try:
        return validation.parse(body, max_rows)[0]
    except validation.RequestError:
        fmt = invocations.mlflow_format(body)
        if fmt:
            raise invocations.predict_hint(fmt) from None
        raise


@router.post(
    "/predict",
    summary="Score customers with the served model",
    response_model=api_models.PredictResponse,
    responses={
        413: {"model": api_models.ErrorBody, "description": "body over CHURN_MAX_BODY_BYTES"},
        422: {"model": api_models.ErrorBody, "description": "invalid body: every field named"},
        503: {"description": "no model loaded yet (see GET /ready)"},
    },
    openapi_extra={"requestBody": {"required": True, "content": {JSON: _BODY}}},
)
async def predict(request: Request, services: ServicesDep) -> Response:
    batcher, max_rows = services.batcher, services.settings.max_batch_size
    # While this request is read and validated, a forming batch may wait for it (bounded).
    with batcher.arriving():
        body = await read_body(request, services.settings.max_body_bytes)
        # Nothing else in flight: no batch to share, so the whole request is parsed, scored and
        # answered in the scoring thread in one go (serve/batching.py). Not when rows may go to
        # the challenger: which side scores a row is decided on the event loop.
        alone = services.split is None and batcher.alone()
        if not alone:
            rows = parse(body, max_rows)
    if alone:
        rows, scored, answer = await batcher.score_alone(
            lambda: parse(body, max_rows), answers.champion
        )
        services.after_champion(rows, scored)
        return Response(answer, media_type=JSON)
    if services.holder.current is None:
        raise NotReadyError
    if services.split is not None:
        ids = customer_ids(rows)
        sides = services.sides(ids)
        if sides is not None and any(sides):
            return await _predict_split(services, rows, ids, sides)
    # Scored with the other requests in flight by one predict call, in the batcher's thread
    # (pyfunc predict is CPU-bound and blocking: never on the event loop).
    scored = await batcher.score(rows)
    services.after_champion(rows, scored)
    return Response(answers.champion(rows, scored), media_type=JSON)


async def _predict_split(
    services: Services, rows: Sequence[Any], ids: Sequence[str | None], sides: list[bool]
) -> Response:
    """Rows of this request on both sides: each side scored in its own batch, in parallel."""
    assert services.challenger is not None and services.challenger.batcher is not None
    challenger = services.challenger.batcher
    mine: Sequence[Any]
    theirs: Sequence[Any]
    if isinstance(rows, Batch):  # stays columns: each side's frame is built from arrays
        mine, theirs = rows.take([not side for side in sides]), rows.take(sides)
    else:
        mine = [r for r, side in zip(rows, sides, strict=True) if not side]
        theirs = [r for r, side in zip(rows, sides, strict=True) if side]
    try:
        if mine:
            champ, chal = await asyncio.gather(
                services.batcher.score(mine), challenger.score(theirs)
            )
        else:
            champ, chal = None, await challenger.score(theirs)
    except NotReadyError:
        # The challenger went away (promoted, alias removed) mid-request: champion only.
        champ, chal = await services.batcher.score(rows), None
        mine, sides = rows, [False] * len(rows)
    if champ is not None:
        services.after_champion(mine, champ)
    if chal is not None:
        services.after_challenger(theirs, chal)
    content = answers.split(ids, sides, champ, chal)
    return Response(content, media_type=JSON)
