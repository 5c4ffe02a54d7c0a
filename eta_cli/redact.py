"""The one redaction of secrets in URLs and in any text that may quote them.

Everything that leaves the process as text (HTTP answers, log lines, reports, MLflow
tags, terminal messages) and may carry a URL or a driver's error goes through
:func:`redact_text` (one-line errors through :func:`eta_cli.errors.first_line`, which
calls it). Libraries quote the raw URL they were given, credentials included (MLflow's
errors carry ``http://user:PASSWORD@host``; libpq quotes ``password=...``), so a
redacted copy next to them is not enough: the text itself is rewritten.

What is hidden:

* the password of ``user:password@host`` (the user stays: it names the account), and
  a user-info without a password entirely (``https://TOKEN@host``: it is a token);
* the value of query or fragment parameters whose name says secret: password, token,
  key, secret, signature, credential, auth, session (``X-Amz-Signature``, ``sig``...);
* ``password=...`` / ``token: ...`` pairs, secret query parameters of a URL quoted
  without its scheme (``/path?sig=...``) and ``Bearer ...`` outside URLs;
* a URL that cannot be parsed is masked whole, since where its secret is is unknown.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

REDACTED = "***"
# Parameter names that carry a secret (matched anywhere in the name, any case).
SECRET_PARAM = re.compile(
    r"pass|pwd|token|key|secret|signature|^sig$|credential|auth|session|cookie", re.IGNORECASE
)
# A URL inside text: a scheme, ://, then everything up to whitespace or a quote/bracket.
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s'\"<>`]+")
# name=value / name: value pairs and bearer tokens outside URLs (libpq DSNs, headers).
SECRET_PAIR = re.compile(
    r"(?i)\b([\w.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key)[\w.\-]*)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;'\"]+)"
)
BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{4,}")
# A query parameter of a URL quoted without its scheme ("url: /path?sig=..." in urllib3).
QUERY_PARAM = re.compile(r"([?&#;])([^=&\s#?'\"]+)=([^&\s#'\"]+)")


def _redact_params(text: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***``: secret-named values hidden, order kept."""
    if not text:
        return text
    parts = []
    for pair in text.split("&"):
        name, eq, value = pair.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and value and SECRET_PARAM.search(name) else pair)
    return "&".join(parts)


def redact_url(value: str) -> str:
    """``value`` with its credentials hidden (see the module doc); not a URL: unchanged."""
    if "://" not in value and not value.startswith(("mailto:", "//")):
        return value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        return f"{scheme}://{REDACTED}" if scheme.isalnum() else REDACTED
    # Rewritten piece by piece in the original text: urlunsplit would normalise it
    # (``sqlite:////abs/path`` loses a slash), and a redacted URL must still say where.
    head, sep, rest = value.partition("://")
    netloc = parts.netloc
    if sep and "@" in netloc and rest.startswith(netloc):
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        hidden = f"{user}:{REDACTED}@{hostport}" if colon and user else f"{REDACTED}@{hostport}"
        value = f"{head}://{hidden}{rest[len(netloc) :]}"
    if parts.fragment:
        value = value[: -len(parts.fragment)] + _redact_params(parts.fragment)
    if parts.query:
        before, mark, after = value.partition("?")
        query, hash_, fragment = after.partition("#")
        value = f"{before}{mark}{_redact_params(query)}{hash_}{fragment}"
    return value


def _redact_match(match: re.Match[str]) -> str:
    """A URL found in text, redacted; punctuation after it ("at http://h:1: refused")
    belongs to the sentence, not the URL."""
    found = match.group(0)
    url = found.rstrip(".,:;!?)]}")
    return redact_url(url) + found[len(url) :]


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted, and secret pairs and bearer tokens hidden."""
    if not text:
        return text
    text = URL_IN_TEXT.sub(_redact_match, text)
    text = QUERY_PARAM.sub(
        lambda m: f"{m[1]}{m[2]}={REDACTED}" if SECRET_PARAM.search(m[2]) else m[0], text
    )
    text = SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
