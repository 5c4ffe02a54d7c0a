"""The prediction service: a Flask application on waitress that follows the registry.

- :mod:`~eta_cli.serve.app`: ``create_app(settings, model_provider, prediction_log)``,
  the application factory (config, the routes blueprint, extensions, error handlers)
- :mod:`~eta_cli.serve.routes`: the blueprint: /predict, /health, /ready, /model,
  /reload, /metrics, /openapi.json
- :mod:`~eta_cli.serve.handlers`: request ids, timing, the access log, JSON errors
- :mod:`~eta_cli.serve.provider`: :class:`ModelProvider`, the model served and hot reload
- :mod:`~eta_cli.serve.lean`: :class:`LeanBooster`, a leaner XGBoost call for small requests
- :mod:`~eta_cli.serve.metrics`: the Prometheus counters behind /metrics
- :mod:`~eta_cli.serve.openapi`: the OpenAPI document behind /openapi.json
- :mod:`~eta_cli.serve.prediction_log`: the background writer of every prediction
- :mod:`~eta_cli.serve.server`: ``serve(settings, ...)``, the waitress runner (``eta serve``)

Nothing happens at import: no threads, no database, no MLflow, and Flask is imported
only when an app is created.
"""

from __future__ import annotations

from eta_cli.serve.app import create_app
from eta_cli.serve.events import JsonLineFormatter, configure_logging
from eta_cli.serve.lean import LeanBooster, accelerate
from eta_cli.serve.metrics import LATENCY_BUCKETS, Metrics
from eta_cli.serve.provider import ModelProvider, ReloadResult, name_label, version_label
from eta_cli.serve.server import check_model_uri, serve

__all__ = [
    "LATENCY_BUCKETS",
    "JsonLineFormatter",
    "LeanBooster",
    "Metrics",
    "ModelProvider",
    "ReloadResult",
    "accelerate",
    "check_model_uri",
    "configure_logging",
    "create_app",
    "name_label",
    "serve",
    "version_label",
]
