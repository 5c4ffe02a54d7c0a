"""The service's ``/metrics``: request counters, a latency histogram and model gauges.

Rendered by hand in the Prometheus text format (0.0.4): a few dictionaries under
one lock cost less per request than a client library, and the names and labels
are the service's contract with its dashboards and alerts.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from eta_cli.serve.provider import name_label, version_label

if TYPE_CHECKING:
    from flask import Flask

    from eta_cli.serve.prediction_log import PredictionLog
    from eta_cli.serve.provider import ModelProvider

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def label(value: Any) -> str:
    """A label value escaped as the text format requires (backslash, quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def header(lines: list[str], name: str, kind: str, text: str) -> None:
    """The HELP and TYPE lines that open one metric family."""
    lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} {kind}")


def request_lines(lines: list[str], requests: dict[tuple[str, str, int], int]) -> None:
    """One counter per method, route and status."""
    header(
        lines, "eta_http_requests_total", "counter", "HTTP requests by method, route and status."
    )
    for (method, path, status), n in sorted(requests.items()):
        lines.append(
            f'eta_http_requests_total{{method="{label(method)}",path="{label(path)}",'
            f'status="{status}"}} {n}'
        )


def latency_lines(lines: list[str], latency: dict[str, list[float]]) -> None:
    """One cumulative histogram per route: bucket counts, then +Inf, sum and count."""
    header(
        lines,
        "eta_http_request_duration_seconds",
        "histogram",
        "Time from request start to response, by route.",
    )
    for path, hist in sorted(latency.items()):
        cumulative = 0.0
        for bound, count in zip(LATENCY_BUCKETS, hist, strict=False):
            cumulative += count
            lines.append(
                f'eta_http_request_duration_seconds_bucket{{path="{label(path)}",'
                f'le="{bound}"}} {int(cumulative)}'
            )
        lines.append(
            f'eta_http_request_duration_seconds_bucket{{path="{label(path)}",le="+Inf"}} '
            f"{int(hist[-1])}"
        )
        lines.append(
            f'eta_http_request_duration_seconds_sum{{path="{label(path)}"}} {hist[-2]:.6f}'
        )
        lines.append(
            f'eta_http_request_duration_seconds_count{{path="{label(path)}"}} {int(hist[-1])}'
        )


def prediction_lines(lines: list[str], predictions: dict[tuple[str, str], int]) -> None:
    """Orders predicted per model name and version (a batch counts each of its orders)."""
    header(
        lines, "eta_predictions_total", "counter", "Orders predicted, by model name and version."
    )
    for (name, version), n in sorted(predictions.items()):
        lines.append(
            f'eta_predictions_total{{model_name="{label(name)}",'
            f'model_version="{label(version)}"}} {n}'
        )


def prediction_log_lines(lines: list[str], plog: PredictionLog | None) -> None:
    """What the prediction log wrote, dropped (queue full), lost to errors, still holds."""
    stats = plog.stats() if plog is not None else {"written": 0, "dropped": 0, "errors": 0}
    header(
        lines,
        "eta_prediction_log_dropped_total",
        "counter",
        "Predictions not logged because the log queue was full.",
    )
    lines.append(f"eta_prediction_log_dropped_total {stats['dropped']}")
    header(lines, "eta_prediction_log_written_total", "counter", "Predictions written to the log.")
    lines.append(f"eta_prediction_log_written_total {stats['written']}")
    header(
        lines,
        "eta_prediction_log_errors_total",
        "counter",
        "Predictions lost to monitoring-database errors.",
    )
    lines.append(f"eta_prediction_log_errors_total {stats['errors']}")
    header(lines, "eta_prediction_log_pending", "gauge", "Predictions queued, not yet written.")
    lines.append(f"eta_prediction_log_pending {stats.get('pending', 0)}")


def model_lines(lines: list[str], provider: ModelProvider) -> None:
    """The model served, whether the registry answers, and how model loads went."""
    loaded = provider.current
    header(
        lines, "eta_model_loaded", "gauge", "1 when a model is loaded and predictions are served."
    )
    lines.append(f"eta_model_loaded {1 if loaded is not None else 0}")
    if loaded is not None:
        header(lines, "eta_model_info", "gauge", "The model being served.")
        lines.append(
            f'eta_model_info{{model_name="{label(name_label(loaded))}",'
            f'model_version="{label(version_label(loaded))}"}} 1'
        )
    header(
        lines,
        "eta_registry_reachable",
        "gauge",
        "1 if the last registry check succeeded, 0 if it failed, -1 if not used.",
    )
    reachable = (
        -1
        if provider.registry in ("not used", "not checked yet")
        else int(provider.registry == "ok")
    )
    lines.append(f"eta_registry_reachable {reachable}")
    header(lines, "eta_model_reloads_total", "counter", "Model loads by result.")
    for result, n in sorted(provider.reloads.items()):
        lines.append(f'eta_model_reloads_total{{result="{result}"}} {n}')


class Metrics:
    """Counters and a latency histogram, rendered in the Prometheus text format (0.0.4)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}  # path -> bucket counts + [sum, count]
        self.predictions: dict[tuple[str, str], int] = {}

    def init_app(self, app: Flask) -> None:
        """Count ``app``'s requests and predictions here (Flask's extension pattern)."""
        app.extensions.setdefault("eta", {})["metrics"] = self

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency under its route (not its raw path)."""
        with self._lock:
            key = (method, path, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            hist = self.latency.get(path)
            if hist is None:
                hist = self.latency[path] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
                    break
            hist[-2] += seconds
            hist[-1] += 1

    def count_predictions(self, name: str, version: str, n: int) -> None:
        """Count ``n`` orders predicted by one model version."""
        with self._lock:
            key = (name, version)
            self.predictions[key] = self.predictions.get(key, 0) + n

    def render(self, provider: ModelProvider, plog: PredictionLog | None) -> str:
        """The whole exposition: a copy of the counters taken under the lock, then the gauges."""
        with self._lock:
            requests = dict(self.requests)
            latency = {k: list(v) for k, v in self.latency.items()}
            predictions = dict(self.predictions)
        lines: list[str] = []
        request_lines(lines, requests)
        latency_lines(lines, latency)
        prediction_lines(lines, predictions)
        prediction_log_lines(lines, plog)
        model_lines(lines, provider)
        return "\n".join(lines) + "\n"
