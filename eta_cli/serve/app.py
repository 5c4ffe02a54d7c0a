"""The Flask application factory of the prediction service (``eta serve``, tests, embedding)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eta_cli.serve.metrics import Metrics
from eta_cli.serve.provider import ModelProvider

if TYPE_CHECKING:
    from flask import Flask

    from eta_cli.config import Settings
    from eta_cli.serve.prediction_log import PredictionLog
    from eta_cli.serve.shadow import ShadowScorer


def create_app(
    settings: Settings,
    model_provider: ModelProvider | None = None,
    prediction_log: PredictionLog | None = None,
    shadow: ShadowScorer | None = None,
) -> Flask:
    """The WSGI application: routes, JSON errors for every failure, metrics and access log.

    ``model_provider`` supplies the model (it may still be loading: ``/ready`` says
    503 until it is; None: an unstarted provider of ``models:/<model_name>@champion``,
    found in ``app.extensions["eta"]["provider"]``); ``prediction_log`` receives every
    prediction (None: not logged); ``shadow`` scores a share of them with the
    challenger, off the request path (None: no shadow; see :mod:`eta_cli.serve.shadow`).
    The caller starts and stops all three; the app only reads them. Flask is imported
    here, not when ``eta_cli.serve`` is.
    """
    from flask import Flask
    from werkzeug.exceptions import HTTPException

    from eta_cli.serve import handlers
    from eta_cli.serve.routes import blueprint
    from eta_cli.validation import ApiError

    app = Flask("eta_cli.serve", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.config["ETA_SETTINGS"] = settings
    app.register_blueprint(blueprint)

    app.extensions["eta"] = {"log": None, "shadow": None}
    (model_provider or ModelProvider(settings)).init_app(app)
    if prediction_log is not None:
        prediction_log.init_app(app)
    Metrics().init_app(app)
    if shadow is not None:
        shadow.init_app(app)  # after the metrics: its counters join /metrics
    handlers.RequestIds().init_app(app)

    app.before_request(handlers.start_request)
    app.after_request(handlers.finish_request)
    app.register_error_handler(ApiError, handlers.api_error)
    app.register_error_handler(HTTPException, handlers.http_error)
    app.register_error_handler(Exception, handlers.unhandled_error)
    return app
