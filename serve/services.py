"""The objects every route shares, as one typed object built in the lifespan.

Routes reach it through `ServicesDep`; nothing else of the service is global. The challenger
(CHURN_CHALLENGER_TRAFFIC or CHURN_SHADOW) is its own holder and reloader on the challenger
alias, sharing the champion's copy when both aliases name one version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from churn import predlog
from churn.predlog import Writer
from serve import answers
from serve.accesslog import ACCESS_LOGGER, AccessLog, new_request_id, request_id
from serve.batching import MicroBatcher
from serve.config import ServeSettings
from serve.holder import ModelHolder, Scored
from serve.metrics import Metrics
from serve.model_source import MlflowRegistry, Registry
from serve.monitor import TrafficMonitor
from serve.reloader import Reloader
from serve.rows import customer_ids, frame_of_requests
from serve.security import DeliveryLog
from serve.traffic import Shadow, Split
from serve.workers import ReloadBroadcast

# One of several workers (serve/workers.py) takes no connection until its first check has ended
# (a model loaded, or the reason there is none), at most this long: while it loads, the workers
# that have a model answer, instead of it answering 503.
FIRST_CHECK_WAIT_S = 60.0


@dataclass
class Challenger:
    """The challenger side: a split (`batcher` and `split` set) or a shadow (`shadow` set)."""

    holder: ModelHolder
    reloader: Reloader
    split: Split | None = None
    batcher: MicroBatcher | None = None
    shadow: Shadow | None = None


@dataclass
class Services:
    settings: ServeSettings
    metrics: Metrics
    holder: ModelHolder
    reloader: Reloader
    batcher: MicroBatcher
    monitor: TrafficMonitor
    challenger: Challenger | None = None
    deliveries: DeliveryLog | None = None  # webhook delivery ids (CHURN_WEBHOOK_SECRET)
    predictions: Writer | None = None  # the prediction log (CHURN_PREDICTION_LOG)
    broadcast: ReloadBroadcast | None = None  # one of several worker processes (WEB_CONCURRENCY)
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def split(self) -> Split | None:
        return self.challenger.split if self.challenger is not None else None

    @property
    def shadow(self) -> Shadow | None:
        return self.challenger.shadow if self.challenger is not None else None

    def not_ready_detail(self) -> str:
        return answers.not_ready_detail(self.reloader.status, self.settings.reload_interval)

    def sides(self, ids: Sequence[str | None]) -> list[bool] | None:
        """Which rows (by customer id) go to the challenger (True), when a loaded challenger
        takes a share."""
        side = self.challenger
        if side is None or side.split is None or side.holder.current is None:
            return None
        return side.split.to_challenger(ids)

    def after_champion(self, rows: Sequence[Any], scored: Scored) -> None:
        """Bookkeeping for rows the champion answered: O(1) each, the work is done later."""
        model = scored.model
        self.metrics.predictions.labels(str(model.version), "champion").inc(len(rows))
        self.monitor.observe(rows, scored.probabilities, model.version)
        if self.shadow is not None:
            self.shadow.submit(rows, scored.probabilities, model)
        self.log(rows, scored, "champion")

    def after_challenger(self, rows: Sequence[Any], scored: Scored) -> None:
        self.metrics.predictions.labels(str(scored.model.version), "challenger").inc(len(rows))
        self.log(rows, scored, "challenger")

    def log(self, rows: Sequence[Any], scored: Scored, role: str, request: str = "") -> None:
        """Hand the rows to the prediction log: a reference on a bounded queue, nothing else
        on the request path (the writer builds one frame of many requests on its thread)."""
        if self.predictions is None:
            return
        model = scored.model
        self.predictions.offer(
            predlog.Scored(
                datetime.now(UTC), request or request_id.get() or new_request_id(),
                customer_ids(rows), model.version, role, scored.probabilities,
                model.threshold, rows,
            )
        )  # fmt: skip

    def followed(self) -> dict[str | None, Reloader]:
        """Alias -> the reloader that follows it."""
        out: dict[str | None, Reloader] = {self.settings.model_alias: self.reloader}
        if self.challenger is not None:
            out[self.settings.challenger_alias] = self.challenger.reloader
        return out

    def announce_reload(self) -> None:
        """An /admin/reload or webhook reached this worker: the other workers re-check too."""
        if self.broadcast is not None:
            self.broadcast.announce()

    async def recheck(self, trigger: str) -> None:
        """Re-check every alias followed (another worker announced a reload)."""
        for reloader in self.followed().values():
            await reloader.check(trigger)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background (cancelled with the app)."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The background loops, for the life of the app."""
        loops: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("model-poll", self.reloader.run()),
            ("micro-batcher", self.batcher.run()),
            ("traffic-profile", self.monitor.run()),
            # uvicorn's access log lines, written together every 0.1 s (serve/accesslog.py)
            ("access-log", AccessLog(
                logging.getLogger(ACCESS_LOGGER), request_ids=self.settings.request_id
            ).run()),
        ]  # fmt: skip
        if self.broadcast is not None:
            loops.append(
                ("worker-reloads", self.broadcast.watch(partial(self.recheck, "another worker")))
            )
        side = self.challenger
        if side is not None:
            loops.append(("challenger-poll", self._challenger_loop(side.reloader)))
            if side.batcher is not None:
                loops.append(("challenger-batcher", side.batcher.run()))
            if side.shadow is not None:
                loops.append(("shadow", side.shadow.run()))
        tasks = [asyncio.create_task(work, name=name) for name, work in loops]
        if self.predictions is not None:
            self.predictions.start()
        try:
            if self.broadcast is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.reloader.checked.wait(), FIRST_CHECK_WAIT_S)
            yield
        finally:
            if self.broadcast is not None:
                self.broadcast.close()
            for task in (*tasks, *self.background):
                task.cancel()
            for task in (*tasks, *self.background):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.predictions is not None:  # what is queued is written before exit
                await asyncio.to_thread(self.predictions.close)

    async def _challenger_loop(self, reloader: Reloader) -> None:
        # The champion first: readiness must not wait for a model only some traffic needs.
        while self.holder.current is None:
            await asyncio.sleep(0.05)
        await reloader.run()


def build(
    settings: ServeSettings,
    metrics: Metrics,
    registry: Registry | None = None,
    challenger_registry: Registry | None = None,
) -> Services:
    """The services for `settings`; the registries replace MLflow in unit tests."""
    holder = ModelHolder()
    wait_s = settings.batch_wait_ms / 1000
    broadcast = ReloadBroadcast.for_this_process()
    announce = broadcast.announce if broadcast is not None else None
    services = Services(
        settings=settings,
        metrics=metrics,
        holder=holder,
        reloader=Reloader(
            registry or MlflowRegistry(settings),
            holder,
            metrics,
            settings.reload_interval,
            backoff_max_s=settings.reload_backoff_max_s,
            on_poll_loaded=announce,
        ),
        batcher=MicroBatcher(holder, settings.batch_max_rows, wait_s, metrics.batch_rows.observe),
        monitor=TrafficMonitor(metrics),
        challenger=_challenger(settings, metrics, holder, challenger_registry, announce),
        deliveries=(DeliveryLog(settings.webhook_tolerance_s) if settings.webhook_secret else None),
        predictions=_prediction_log(settings, metrics),
        broadcast=broadcast,
    )
    if services.shadow is not None and services.predictions is not None:
        # Shadow rows are scored later, in a batch of many requests: no request id ("-").
        services.shadow.on_scored = partial(services.log, role="shadow", request="-")
    return services


def _prediction_log(settings: ServeSettings, metrics: Metrics) -> Writer | None:
    if settings.prediction_log is None:
        return None
    rows = metrics.prediction_log_rows
    return Writer(
        settings.prediction_log,
        max_pending_rows=settings.prediction_log_max_pending_rows,
        keep_days=settings.prediction_log_keep_days,
        on_written=rows.labels("written").inc,
        on_dropped=rows.labels("dropped").inc,
        features=frame_of_requests,
    )


def _challenger(
    settings: ServeSettings,
    metrics: Metrics,
    champion: ModelHolder,
    registry: Registry | None,
    announce: Callable[[], None] | None,
) -> Challenger | None:
    if not settings.challenger_enabled:
        return None
    holder = ModelHolder()
    side = Challenger(
        holder,
        Reloader(
            registry or MlflowRegistry(settings, alias=settings.challenger_alias),
            holder, metrics, settings.reload_interval, role="challenger", peer=champion,
            backoff_max_s=settings.reload_backoff_max_s, on_poll_loaded=announce,
        ),
    )  # fmt: skip
    if settings.challenger_traffic > 0:
        side.split = Split(settings.challenger_traffic)
        side.batcher = MicroBatcher(holder, settings.batch_max_rows, settings.batch_wait_ms / 1000)
    else:
        side.shadow = Shadow(holder, metrics)
    return side


def lifespan(
    settings: ServeSettings,
    metrics: Metrics,
    registry: Registry | None = None,
    challenger_registry: Registry | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: build the services, run their loops, stop them at shutdown."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        services = build(settings, metrics, registry, challenger_registry)
        app.state.services = services
        async with services.running():
            yield

    return run


async def get_services(request: Request) -> Services:
    # async: a plain `def` dependency would run in the thread pool, on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
