"""The admin token: who may call the routes that change the server's state (``/reload``).

Such a route needs ``Authorization: Bearer <ETA_ADMIN_TOKEN>``. Without a configured
token the routes are off (403 for everyone): an open ``POST /reload`` let any client
(or any web page, since a bodyless POST needs no CORS preflight) force model loads.
A browser cannot add an ``Authorization`` header to a cross-site request without a
preflight, which this service never grants, so the token also closes that door.
The comparison is constant-time (:func:`hmac.compare_digest`), so the answer's timing
does not tell how much of a guess was right. docs/security.md, section 3, is the
contract.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import current_app, request

from eta_cli.orders import Problem
from eta_cli.validation import ApiError

HEADER = "Authorization"
ALLOWED = "Authorization: Bearer <ETA_ADMIN_TOKEN>"


def check_token(configured: str, header: str | None) -> ApiError | None:
    """None when ``header`` carries the configured token, else the refusal to answer.

    403 when no token is configured (the route is off), 401 when the header is
    missing, malformed or wrong. Both are compared as bytes: ``compare_digest`` refuses
    non-ASCII text, and a client chooses the header's characters.
    """
    if not configured:
        return ApiError(
            403,
            "admin routes are off",
            [Problem(HEADER, "this server has no ETA_ADMIN_TOKEN configured", ALLOWED)],
        )
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        problem = "missing" if not header else "not a Bearer token"
        return ApiError(401, "admin token required", [Problem(HEADER, problem, ALLOWED)])
    expected = configured.encode("utf-8")
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), expected):
        return ApiError(401, "admin token required", [Problem(HEADER, "wrong token", ALLOWED)])
    return None


def admin_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse the request (401/403, nothing done) unless it carries the admin token."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        refusal = check_token(
            current_app.config["ETA_SETTINGS"].admin_token, request.headers.get(HEADER)
        )
        if refusal is not None:
            raise refusal
        return view(*args, **kwargs)

    return guarded
