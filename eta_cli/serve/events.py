"""The service's log lines: structured events, the access log, and their JSON formatting.

Everything the service says goes through two loggers, ``eta.serve`` (events: model
loaded, registry unreachable, listening, stopped) and ``eta.serve.access`` (one line
per request), as one JSON object per line so the platform can collect and query them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("eta.serve")
access_logger = logging.getLogger("eta.serve.access")


def log_event(event: str, **fields: Any) -> None:
    """One structured (JSON) line for a service event: load, swap, unreachable registry."""
    logger.info(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str))


class JsonLineFormatter(logging.Formatter):
    """Access lines are JSON already; other records become {"level", "logger", "message"}.

    Every line is redacted (:func:`eta_cli.redact.redact_text`) as it is written: a
    library's message or a traceback can quote a URL with its password, and this is
    the one place all of the service's lines pass through.
    """

    def format(self, record: logging.LogRecord) -> str:
        from eta_cli.redact import redact_text

        message = record.getMessage()
        if message.startswith("{"):
            return redact_text(message)
        payload = {"level": record.levelname.lower(), "logger": record.name, "message": message}
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(payload))


def configure_logging(level: int = logging.INFO) -> Callable[[], None]:
    """One JSON line per event on stderr for the eta loggers (12-factor: the platform collects).

    Request threads only enqueue records; one listener thread formats and writes
    them, so a request never waits on the stream's lock or a write. Returns the
    function that stops the listener after writing what is queued.
    """
    import logging.handlers
    import queue
    import sys

    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonLineFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, stream, respect_handler_level=False)
    handler = logging.handlers.QueueHandler(records)
    for name, logger_level in (("eta", level), ("waitress", logging.WARNING)):
        target = logging.getLogger(name)
        target.handlers[:] = [handler]
        target.setLevel(logger_level)
        target.propagate = False
    listener.start()
    return listener.stop
