"""Slack-compatible webhook alerts.

A failed alert must never cost the report it is about: :func:`post_webhook`
returns what happened instead of raising, and callers record it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AlertOutcome:
    """Whether the webhook accepted the message; ``error`` says why not."""

    url: str
    sent: bool
    status: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["url"] = redact_webhook(self.url)
        return data


def redact_webhook(url: str) -> str:
    """Scheme and host only: a webhook's path is its secret (Slack puts the token there)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or not parts.netloc:
        return "***"
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}/***"


def _hide(url: str, text: str) -> str:
    """Error texts quote the URL; keep its secret path, query tokens and any other URL's
    credentials out of logs (:func:`eta_cli.redact.redact_text` does the rest)."""
    from urllib.parse import urlsplit

    from eta_cli.redact import redact_text

    text = text.replace(url, redact_webhook(url))
    try:
        path = urlsplit(url).path
    except ValueError:
        path = ""
    text = text.replace(path, "/***") if len(path) > 1 else text
    return redact_text(text)


def post_webhook(url: str, text: str, timeout: float = TIMEOUT_S) -> AlertOutcome:
    """POST ``{"text": text}`` (what Slack, Mattermost and Teams workflows accept)."""
    import requests

    if not url.startswith(("http://", "https://")):
        return AlertOutcome(url, False, error="webhook URL must start with http:// or https://")
    try:
        response = requests.post(url, json={"text": text}, timeout=timeout)
    except requests.RequestException as exc:
        return AlertOutcome(url, False, error=_hide(url, f"{type(exc).__name__}: {exc}"))
    if response.status_code >= 300:
        body = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        return AlertOutcome(
            url,
            False,
            response.status_code,
            _hide(url, f"HTTP {response.status_code} {body}".strip()),
        )
    return AlertOutcome(url, True, response.status_code)
