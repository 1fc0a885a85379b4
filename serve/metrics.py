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
        labels = ["route", "method", "status"]
        self.requests = Counter(
            "churn_http_requests_total", "HTTP requests", labels, registry=self.registry
        )
        self.latency = Histogram(
            "churn_http_request_duration_seconds",
            "HTTP request latency",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "churn_predictions_total",
            "Rows answered, by the model version that scored them and its role",
            ["model_version", "role"],
            registry=self.registry,
        )
        self.challenger_version = Gauge(
            "churn_challenger_version",
            "Challenger version loaded for the traffic split or shadow (0: none)",
            registry=self.registry,
        )
        self.shadow_rows = Counter(
            "churn_shadow_rows_total",
            "Rows the challenger scored in shadow, by challenger version",
            ["model_version"],
            registry=self.registry,
        )
        self.shadow_disagreements = Counter(
            "churn_shadow_disagreements_total",
            "Shadow rows where the challenger's decision differs from the champion's",
            ["model_version"],
            registry=self.registry,
        )
        self.shadow_abs_diff = Histogram(
            "churn_shadow_abs_diff",
            "|P(churn) challenger - P(churn) champion| per shadow-scored row",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "churn_shadow_dropped_rows_total",
            "Rows not shadow-scored because the shadow queue was full (callers unaffected)",
            registry=self.registry,
        )
        self.prediction_log_rows = Counter(
            "churn_prediction_log_rows",
            "Rows of the prediction log (CHURN_PREDICTION_LOG): written, or dropped (queue "
            "full or a failed write; requests unaffected)",
            ["outcome"],
            registry=self.registry,
        )
        self.profile_rows = Gauge(
            "churn_profile_rows",
            "Rows in the traffic profile of the served version (GET /monitoring/profile)",
            registry=self.registry,
        )
        self.reloads = Counter(
            "churn_model_reloads_total",
            "Model versions loaded and swapped in (the first load included)",
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "churn_model_reload_failures_total",
            "Failed attempts to resolve the alias or load a version (the old model kept serving)",
            ["stage"],
            registry=self.registry,
        )
        self.model_version = Gauge(
            "churn_model_version", "Version being served (0: none yet)", registry=self.registry
        )
        self.registry_reachable = Gauge(
            "churn_registry_reachable",
            "1 if the last check could read the model registry, else 0 (the loaded model keeps "
            "serving either way)",
            registry=self.registry,
        )

        self.batch_rows = Histogram(
            "churn_batch_rows",
            "Rows per model predict call (a micro-batch of concurrent requests, or one alone)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "churn_http_requests_in_flight",
            "HTTP requests received and not yet answered",
            registry=self.registry,
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
