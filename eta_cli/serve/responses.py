"""The service's JSON answers: compact bodies, and one error shape for every failure.

Every error, whatever raised it (validation, routing, a missing model, a bug), is
``{"error", "details": [{"field", "problem", "allowed"}], "request_id"}`` so a
client needs one parser; ``/openapi.json`` documents it as ``Error``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Response, g

from eta_cli.orders import Problem
from eta_cli.validation import ApiError

if TYPE_CHECKING:
    from eta_cli.serve.provider import ModelProvider

JSON_MIMETYPE = "application/json"


def respond(payload: Any, status: int = 200) -> Response:
    """``payload`` as compact JSON (no spaces: the body is on every request's path)."""
    body = json.dumps(payload, separators=(",", ":"), default=str)
    return Response(body, status=status, mimetype=JSON_MIMETYPE)


def error_payload(message: str, details: list[Problem], request_id: str | None) -> dict[str, Any]:
    """The one error body (also written by the server for requests the app never sees)."""
    return {"error": message, "details": [d.to_dict() for d in details], "request_id": request_id}


def error_response(status: int, message: str, details: list[Problem]) -> Response:
    """The one error body, carrying the request id the X-Request-ID header also gives."""
    return respond(error_payload(message, details, getattr(g, "request_id", None)), status)


def body_too_large(limit: int) -> Problem:
    """The problem of a body over ``limit`` bytes, whether the app or the server saw it."""
    return Problem("body", "too large", f"at most {limit} bytes")


def no_model_loaded(provider: ModelProvider) -> ApiError:
    """The 503 of a request that needs a model while the first one is still loading."""
    return ApiError(
        503,
        "no model loaded yet",
        [Problem("model", provider.last_error or "loading", "retry when /ready is 200")],
    )
