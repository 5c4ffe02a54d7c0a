"""The service's ``/metrics``: request counters, a latency histogram and model gauges.

Exposed through ``prometheus_client``, the reference implementation of the exposition
format, with one registry per app (two apps in one process, as in the tests, never
share counters). Every label takes values from a bounded set, whatever clients send:
HTTP methods outside :data:`KNOWN_METHODS` count as ``OTHER`` and requests no route
matched share one ``path`` label, so a client cannot mint new series (and grow the
service's memory and every scrape) by inventing methods or paths. The metric names
are the service's contract with its dashboards and alerts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from eta_cli.serve.provider import name_label, version_label

if TYPE_CHECKING:
    from flask import Flask

    from eta_cli.serve.prediction_log import PredictionLog
    from eta_cli.serve.provider import ModelProvider

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Methods counted under their own name; anything else a client sends is OTHER.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
UNMATCHED_PATH = "<unmatched>"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def method_label(method: str) -> str:
    """The method as a label: one of :data:`KNOWN_METHODS`, or ``OTHER``."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


class _ServiceCollector:
    """Gauges and counters read from the provider and the prediction log at scrape time
    (they keep their own counts; copying them into metrics on every change would put
    locking on the request path for nothing)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # dynamic: nothing checked against other collectors at registration

    def collect(self) -> Iterator[Any]:
        yield from prediction_log_families(self.metrics.plog)
        if self.metrics.provider is not None:
            yield from model_families(self.metrics.provider)


def prediction_log_families(plog: PredictionLog | None) -> Iterator[Any]:
    """What the prediction log wrote, dropped (queue full), lost to errors or had refused
    by the database (one bad row, the rest of its batch written), and still holds."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    stats = plog.stats() if plog is not None else {}
    counters = (
        ("eta_prediction_log_dropped", "Predictions not logged because the log queue was full."),
        ("eta_prediction_log_written", "Predictions written to the log."),
        ("eta_prediction_log_errors", "Predictions lost to monitoring-database errors."),
        (
            "eta_prediction_log_rejected",
            "Predictions the monitoring database refused for their data (the other rows "
            "of their batch written).",
        ),
    )
    for name, text in counters:
        key = name.rsplit("_", 1)[1]
        yield CounterMetricFamily(name, text, value=stats.get(key, 0))
    yield GaugeMetricFamily(
        "eta_prediction_log_pending",
        "Predictions queued, not yet written.",
        value=stats.get("pending", 0),
    )


def model_families(provider: ModelProvider) -> Iterator[Any]:
    """The model served, whether the registry answers, and how model loads went."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    loaded = provider.current
    yield GaugeMetricFamily(
        "eta_model_loaded",
        "1 when a model is loaded and predictions are served.",
        value=1 if loaded is not None else 0,
    )
    if loaded is not None:
        info = GaugeMetricFamily(
            "eta_model_info", "The model being served.", labels=["model_name", "model_version"]
        )
        info.add_metric([name_label(loaded), version_label(loaded)], 1)
        yield info
    reachable = (
        -1
        if provider.registry in ("not used", "not checked yet")
        else int(provider.registry == "ok")
    )
    yield GaugeMetricFamily(
        "eta_registry_reachable",
        "1 if the last registry check succeeded, 0 if it failed, -1 if not used.",
        value=reachable,
    )
    reloads = CounterMetricFamily("eta_model_reloads", "Model loads by result.", labels=["result"])
    for result, n in sorted(provider.reloads.items()):
        reloads.add_metric([result], n)
    yield reloads


class Metrics:
    """This app's Prometheus registry: requests by method/route/status, latency by route,
    orders predicted by model, and the provider's and prediction log's state."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=False)
        self.provider: ModelProvider | None = None
        self.plog: PredictionLog | None = None
        self.requests = Counter(
            "eta_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "eta_http_request_duration_seconds",
            "Time from request start to response, by route.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "eta_predictions",
            "Orders predicted, by model name and version.",
            ["model_name", "model_version"],
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(self))

    def init_app(self, app: Flask) -> None:
        """Count ``app``'s requests and predictions here (Flask's extension pattern)."""
        app.extensions.setdefault("eta", {})["metrics"] = self

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency under its route (not its raw path).

        ``path`` must be a route rule or :data:`UNMATCHED_PATH`, never the raw path.
        """
        self.requests.labels(method_label(method), path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def count_predictions(self, name: str, version: str, n: int) -> None:
        """Count ``n`` orders predicted by one model version."""
        self.predictions.labels(name, version).inc(n)

    def render(self, provider: ModelProvider, plog: PredictionLog | None) -> bytes:
        """The whole exposition in the text format, with the provider's and log's state."""
        from prometheus_client import generate_latest

        self.provider, self.plog = provider, plog
        return generate_latest(self.registry)
