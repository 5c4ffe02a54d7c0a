"""How the service's waitress server treats connections: limits that keep ``/health`` and
``/predict`` answering while hundreds of clients hold connections open, do nothing, or
send slowly, and a readable JSON answer for what waitress refuses itself.

waitress serves each connection from one event loop and hands only *complete* requests
to its worker threads, so an idle or slow client costs a socket and a few kilobytes,
never a thread. What it lacks, this module adds:

* **Room for idle connections**: :func:`server_options` raises ``connection_limit``
  (waitress stops *accepting* at the limit, so 200 idle sockets used to shut everyone
  out) and switches the loop to ``poll()``, which has no 1024-descriptor ceiling.
* **A header deadline** (:data:`HEADER_TIMEOUT_S`) and a whole-request deadline
  (:data:`REQUEST_TIMEOUT_S`): waitress closes only connections *inactive* for
  ``channel_timeout``, so a client sending one byte every few seconds ("slowloris")
  could hold a connection for ever. :class:`LimitedServerMixin` closes a connection
  whose request is not complete in time, checked every ``cleanup_interval``.
* **JSON for waitress' own refusals** (:class:`JsonError`): a too-large body, bad
  framing or oversized headers get the service's one error shape, not waitress' text.
* **A 413 the client can read**: a body larger than the limit is refused from its
  ``Content-Length`` (or, chunked, as soon as it passes the limit) without being
  stored; the rest of it is read and discarded (at most :data:`DRAIN_LIMIT_BYTES`) so
  a client that sends its whole body before reading the answer, as most HTTP clients
  do, reads the 413 instead of a connection reset. A client that sent
  ``Expect: 100-continue`` gets the 413 at once and never sends the body.

The same limits sit in front of the service in the stack's reverse proxy
(docs/security.md, section 2); these keep a directly exposed ``eta serve`` safe too.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from eta_cli.orders import Problem
from eta_cli.serve.responses import body_too_large, error_payload

# A request's headers must be complete this long after its first byte (or after the
# connection opened): a client on a slow mobile link needs well under a second.
HEADER_TIMEOUT_S = 10.0
# A whole request, headers and body, within this (the largest body is ETA_MAX_BODY_BYTES).
REQUEST_TIMEOUT_S = 30.0
# Keep-alive connections with no request in progress are closed after this long idle.
CHANNEL_TIMEOUT_S = 30
# How often the deadlines are checked (waitress' default, 30 s, would let a deadline slip).
CLEANUP_INTERVAL_S = 1
# Open connections at most (each costs a descriptor and a few KB, never a thread);
# kept under the process' descriptor limit with room for files and the database.
CONNECTION_LIMIT = 2000
# An oversized body is read and discarded up to this many bytes so the client can read
# the 413; a larger one is answered at once and the connection closed.
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024
# waitress' own body cap, above the app's so framing of a chunked body fits; the app
# refuses the exact limit (werkzeug, from Content-Length, before reading).
CHUNK_FRAMING_SLACK = 64 * 1024


def connection_limit() -> int:
    """:data:`CONNECTION_LIMIT`, lowered to fit the process' descriptor limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 512
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(64, min(CONNECTION_LIMIT, soft - 128))


def server_options(max_body_bytes: int) -> dict[str, Any]:
    """The waitress settings of ``eta serve``, each with its reason in this module's doc."""
    return {
        "connection_limit": connection_limit(),
        "asyncore_use_poll": os.name == "posix",  # select() stops at descriptor 1024
        "channel_timeout": CHANNEL_TIMEOUT_S,
        "cleanup_interval": CLEANUP_INTERVAL_S,
        "max_request_body_size": max_body_bytes + CHUNK_FRAMING_SLACK,
        "max_request_header_size": 64 * 1024,  # waitress' 256 KB is more than any client needs
        "backlog": 1024,  # accept bursts of new connections instead of refusing them
        "clear_untrusted_proxy_headers": True,
    }


class JsonError:
    """A waitress refusal (``waitress.utilities.Error``) answered in the service's JSON
    error shape; it keeps the original's status."""

    def __init__(self, original: Any, details: list[Problem] | None = None) -> None:
        self.code = original.code
        self.reason = original.reason
        self.body = original.body
        self.details = details if details is not None else [Problem("request", original.reason)]

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        """(status line, headers, body), as waitress' ErrorTask writes them."""
        payload = error_payload(self.reason.lower(), self.details, None)
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return f"{self.code} {self.reason}", [("Content-Type", "application/json")], body


class _Discard:
    """Stands in for the body buffer of a refused request: counts, keeps nothing."""

    def __init__(self) -> None:
        self.length = 0

    def append(self, data: bytes) -> None:
        self.length += len(data)

    def __len__(self) -> int:
        return self.length


def limited_parser(body_limit: int) -> type:
    """A waitress request parser refusing bodies over ``body_limit`` as described above."""
    from waitress.parser import HTTPRequestParser
    from waitress.utilities import RequestEntityTooLarge

    class LimitedParser(HTTPRequestParser):
        _drain_left: int | None = None  # bytes of a fixed-length body still to discard
        _draining_chunks = False
        _drained = 0

        def received(self, data: bytes) -> int:
            if self._drain_left is not None or self._draining_chunks:
                return self._discard(data)
            consumed = super().received(data)
            if self.error is not None and not isinstance(self.error, JsonError):
                if isinstance(self.error, RequestEntityTooLarge):
                    self.error = JsonError(self.error, [body_too_large(body_limit)])
                    self._start_draining()
                else:
                    self.error = JsonError(self.error)
            return consumed

        def _start_draining(self) -> None:
            """Keep reading the refused body (discarded) until its end, within bounds."""
            if self.expect_continue:  # the client waits for our answer before sending
                self.expect_continue = False
                return
            if self.chunked and self.body_rcv is not None and not self.body_rcv.completed:
                self.body_rcv.buf = _Discard()
                self._draining_chunks = True
                self.completed = False
            elif not self.chunked and 0 < self.content_length <= DRAIN_LIMIT_BYTES:
                self._drain_left = self.content_length
                self.completed = False

        def _discard(self, data: bytes) -> int:
            """Read and drop the refused body; complete the request (the 413) at its end."""
            if self._draining_chunks:
                receiver = self.body_rcv
                consumed = receiver.received(data)
                self._drained += consumed
                if receiver.completed or receiver.error or self._drained > DRAIN_LIMIT_BYTES:
                    self._draining_chunks = False
                    self.completed = True
                return consumed
            consumed = min(len(data), self._drain_left or 0)
            self._drain_left = (self._drain_left or 0) - consumed
            if self._drain_left <= 0:
                self._drain_left = None
                self.completed = True
            return consumed

    return LimitedParser


def channel_class(body_limit: int) -> type:
    """A waitress channel that remembers when its current request began (for deadlines)
    and parses with :func:`limited_parser`."""
    from waitress.channel import HTTPChannel

    class LimitedChannel(HTTPChannel):
        parser_class = limited_parser(body_limit)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.request_began = self.creation_time
            self.received_any = False

        def received(self, data: bytes) -> bool:
            if self.request is None and data and self.received_any:
                self.request_began = time.time()  # a new request on a kept-alive connection
            self.received_any = True
            return super().received(data)

    return LimitedChannel


def overdue(channel: Any, now: float) -> bool:
    """Whether ``channel`` is receiving a request that missed its deadline: headers not
    complete after :data:`HEADER_TIMEOUT_S`, or the whole request after
    :data:`REQUEST_TIMEOUT_S`. A connection being answered, or idle between requests
    (``channel_timeout``'s business), is never overdue."""
    if channel.requests:
        return False
    pending = channel.request
    if pending is None:
        return not channel.received_any and now - channel.request_began > HEADER_TIMEOUT_S
    waited = now - channel.request_began
    if not pending.headers_finished:
        return waited > HEADER_TIMEOUT_S
    return waited > REQUEST_TIMEOUT_S


def enforce_deadlines(server: Any, body_limit: int) -> None:
    """Make ``server`` (one waitress server, or each of a multi-socket one) use the limited
    channel and close overdue connections at every maintenance pass."""
    from waitress.server import BaseWSGIServer

    servers = [server] if isinstance(server, BaseWSGIServer) else []
    servers += [s for s in getattr(server, "map", {}).values() if isinstance(s, BaseWSGIServer)]
    channel = channel_class(body_limit)
    for one in servers:
        one.channel_class = channel
        original = one.maintenance

        def maintenance(now: float, _original: Any = original, _server: Any = one) -> None:
            _original(now)
            for ch in list(_server.active_channels.values()):
                if overdue(ch, now):
                    ch.will_close = True

        one.maintenance = maintenance
