"""The answers, built from what was scored: plain functions, no HTTP (tests/unit/test_answers.py).

/predict answers with pre-encoded bytes shaped as `PredictResponse` (speed: no response-model
validation per request); /model and /ready with the shapes serve/apidoc.py documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import msgspec

from serve import api_models
from serve.holder import LoadedModel, Scored
from serve.reloader import ReloadStatus
from serve.rows import customer_ids

_encode = msgspec.json.Encoder().encode


def champion(rows: Sequence[Any], scored: Scored) -> bytes:
    """The body of a 200 for rows all scored by `scored.model` (champion only, or shadow: the
    callers only ever see the champion)."""
    model = scored.model
    threshold = model.threshold
    proba = scored.probabilities
    predictions = list(
        map(
            api_models.PredictionRow,
            customer_ids(rows),
            proba.tolist(),
            (proba >= threshold).tolist(),
            repeat(model.version, len(proba)),
        )
    )
    return _encode({"predictions": predictions, "model": model.ref(), "threshold": threshold})


def split(
    ids: Sequence[str | None], sides: Sequence[bool], champ: Scored | None, chal: Scored | None
) -> bytes:
    """The body of a 200 for rows in request order (`ids`), each scored by the side `sides`
    names (True: the challenger); `champ` and `chal` hold their side's rows in order. The
    `model` is the champion's when it scored any row; `challenger` is named when both did."""
    results = {False: iter(champ.probabilities.tolist()) if champ else iter(()),
               True: iter(chal.probabilities.tolist()) if chal else iter(())}  # fmt: skip
    models = {False: champ.model if champ else None, True: chal.model if chal else None}
    predictions = []
    for customer, side in zip(ids, sides, strict=True):
        m = models[side]
        assert m is not None
        p = next(results[side])
        predictions.append(api_models.PredictionRow(customer, p, p >= m.threshold, m.version))
    lead = champ or chal
    assert lead is not None
    body: dict[str, Any] = {
        "predictions": predictions,
        "model": lead.model.ref(),
        "threshold": lead.model.threshold,
    }
    if champ is not None and chal is not None:
        body["challenger"] = {**chal.model.ref(), "threshold": chal.model.threshold}
    return _encode(body)


def not_ready_detail(status: ReloadStatus, reload_interval: float) -> str:
    """Why no model is served yet, and what happens next."""
    if status.waiting:
        if reload_interval > 0:
            return (
                f"{status.waiting}; it is picked up within {reload_interval:g} s, no restart needed"
            )
        return status.waiting
    if status.last_error:
        return f"{status.last_error['message']}; retrying"
    return "starting: the model is loading"


def served(model: LoadedModel, aliases: dict[str, int]) -> dict[str, Any]:
    """What /model says of a loaded version (`apidoc.Served`)."""
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


def reload_state(status: ReloadStatus, reload_interval: float) -> dict[str, Any]:
    """What /model says of a reloader (`apidoc.ReloadState`)."""
    return {
        "interval_s": reload_interval,
        "last_check_at": _iso(status.last_check_at),
        "last_loaded_at": _iso(status.last_loaded_at),
        "waiting": status.waiting,
        "last_error": status.last_error,
        "failures": status.failures,
        "consecutive_failures": status.consecutive_failures,
        "registry_reachable": status.registry_reachable,
        "poll_delay_s": status.poll_delay_s,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
