"""What every request goes through, whatever its route: an id, timing, metrics, the access
log line, and a JSON answer for every failure (validation, routing, body size, bugs).

``create_app`` registers these on the app (not on the routes blueprint) because they
must also see requests no route matched.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from eta_cli.orders import Problem
from eta_cli.serve.events import access_logger, logger
from eta_cli.serve.metrics import UNMATCHED_PATH
from eta_cli.serve.responses import body_too_large, error_response
from eta_cli.validation import ApiError

# Same length as monitoring.predictions.request_id: a longer one could not be logged.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIds:
    """Request ids unique per app: a random prefix, then a counter (no syscall per request)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(10).hex()
        self.counter = itertools.count(1)

    def init_app(self, app: Flask) -> None:
        """Give ``app`` its own ids (Flask's extension pattern)."""
        app.extensions.setdefault("eta", {})["request_ids"] = self

    def new(self) -> str:
        """The next id: 32 hex characters, within the prediction log's 64."""
        return f"{self.prefix}{next(self.counter):012x}"


def start_request() -> None:
    """Start the clock and take the caller's X-Request-ID when it is a valid one."""
    g.t0 = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = (
        incoming
        if REQUEST_ID.match(incoming)
        else current_app.extensions["eta"]["request_ids"].new()
    )
    g.model_version = None
    g.n_orders = 0


def finish_request(response: Response) -> Response:
    """Echo the request id, count the request by route, and write its access log line."""
    service = current_app.extensions["eta"]
    request_id = getattr(g, "request_id", None) or service["request_ids"].new()
    response.headers["X-Request-ID"] = request_id
    elapsed = time.perf_counter() - getattr(g, "t0", time.perf_counter())
    rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED_PATH
    service["metrics"].observe(request.method, rule, response.status_code, elapsed)
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info(
            json.dumps(
                {
                    "ts": round(time.time(), 3),
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "latency_ms": round(elapsed * 1000, 3),
                    "model_version": getattr(g, "model_version", None),
                    "n_orders": getattr(g, "n_orders", 0),
                }
            )
        )
    return response


def api_error(exc: ApiError) -> Response:
    """A request the API refused: its status and the problems found, field by field."""
    response = error_response(exc.status, exc.message, exc.details)
    if exc.status == 401:  # RFC 6750: say which scheme the route takes
        response.headers["WWW-Authenticate"] = 'Bearer realm="eta"'
    return response


def http_error(exc: HTTPException) -> Response:
    """Routing and protocol errors in the same JSON shape, with what would have been allowed."""
    status = exc.code or 500
    details: list[Problem] = []
    if status == 404:
        details = [Problem("path", f"no route {request.path}", "see /openapi.json")]
    elif status == 405:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        details = [Problem("method", f"{request.method} not allowed", ", ".join(allowed))]
    elif status == 413:
        details = [body_too_large(current_app.config["MAX_CONTENT_LENGTH"])]
    response = error_response(status, (exc.name or "error").lower(), details)
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def unhandled_error(exc: Exception) -> Response:
    """A bug: the traceback goes to the log, the caller gets a JSON 500 without it."""
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(500, "internal error", [])
