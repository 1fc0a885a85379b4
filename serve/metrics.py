"""Prometheus metrics, one registry per app (so tests can build many apps in one process)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Label values must be bounded: a client can send any method token (h11 accepts them all).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        # Registered in this order, the order /metrics lists them in.
        self._http()
        self._split_and_shadow()
        self._log_and_profile()
        self._models()
        self._load()

    def _counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _gauge(self, name: str, doc: str) -> Gauge:
        return Gauge(name, doc, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

    def _http(self) -> None:
        labels = ("route", "method", "status")
        self.requests = self._counter("churn_http_requests_total", "HTTP requests", labels)
        self.latency = self._histogram(
            "churn_http_request_duration_seconds", "HTTP request latency", LATENCY_BUCKETS, labels
        )
        self.predictions = self._counter(
            "churn_predictions_total",
            "Rows answered, by the model version that scored them and its role",
            ("model_version", "role"),
        )

    def _split_and_shadow(self) -> None:
        self.challenger_version = self._gauge(
            "churn_challenger_version",
            "Challenger version loaded for the traffic split or shadow (0: none)",
        )
        self.shadow_rows = self._counter(
            "churn_shadow_rows_total",
            "Rows the challenger scored in shadow, by challenger version",
            ("model_version",),
        )
        self.shadow_disagreements = self._counter(
            "churn_shadow_disagreements_total",
            "Shadow rows where the challenger's decision differs from the champion's",
            ("model_version",),
        )
        self.shadow_abs_diff = self._histogram(
            "churn_shadow_abs_diff",
            "|P(churn) challenger - P(churn) champion| per shadow-scored row",
            (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        )
        self.shadow_dropped = self._counter(
            "churn_shadow_dropped_rows_total",
            "Rows not shadow-scored because the shadow queue was full (callers unaffected)",
        )

    def _log_and_profile(self) -> None:
        self.prediction_log_rows = self._counter(
            "churn_prediction_log_rows",
            "Rows of the prediction log (CHURN_PREDICTION_LOG): written, or dropped (queue "
            "full or a failed write; requests unaffected)",
            ("outcome",),
        )
        self.profile_rows = self._gauge(
            "churn_profile_rows",
            "Rows in the traffic profile of the served version (GET /monitoring/profile)",
        )

    def _models(self) -> None:
        self.reloads = self._counter(
            "churn_model_reloads_total",
            "Model versions loaded and swapped in (the first load included)",
        )
        self.reload_failures = self._counter(
            "churn_model_reload_failures_total",
            "Failed attempts to resolve the alias or load a version (the old model kept serving)",
            ("stage",),
        )
        self.model_version = self._gauge(
            "churn_model_version", "Version being served (0: none yet)"
        )
        self.registry_reachable = self._gauge(
            "churn_registry_reachable",
            "1 if the last check could read the model registry, else 0 (the loaded model keeps "
            "serving either way)",
        )

    def _load(self) -> None:
        self.batch_rows = self._histogram(
            "churn_batch_rows",
            "Rows per model predict call (a micro-batch of concurrent requests, or one alone)",
            BATCH_BUCKETS,
        )
        self.in_flight = self._gauge(
            "churn_http_requests_in_flight", "HTTP requests received and not yet answered"
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every request by route template (not raw path: bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        in_flight = self.metrics.in_flight
        in_flight.inc()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            in_flight.dec()
            route: Any = scope.get("route")
            name = getattr(route, "path", None)
            if name is None:
                # Starlette's own routes (/docs, /openapi.json) set no route, nor do answers given
                # before routing (404, 415, 408): known paths keep their name, any other path is
                # "unmatched", so a client cannot create series by inventing paths.
                path = str(scope.get("path", ""))
                known = {getattr(r, "path", None) for r in getattr(scope.get("app"), "routes", ())}
                name = path if path in known else "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            labels = (name, method, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
