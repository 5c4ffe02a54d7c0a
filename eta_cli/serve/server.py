"""``eta serve``: the service on waitress, from start-up to an orderly shutdown.

Serves until SIGTERM or SIGINT, then finishes the requests in flight and flushes the
prediction log before returning. Logging is the caller's (see
:func:`eta_cli.serve.events.configure_logging`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli.config import redact_url
from eta_cli.errors import EtaError
from eta_cli.serve import connections
from eta_cli.serve.app import create_app
from eta_cli.serve.events import log_event
from eta_cli.serve.provider import ModelProvider

if TYPE_CHECKING:
    from flask import Flask

    from eta_cli.config import Settings
    from eta_cli.progress import ProgressCallback


def check_model_uri(uri: str | None) -> None:
    """Refuse a local model path that is not there now, instead of retrying forever."""
    if uri and "://" not in uri and ":/" not in uri:
        path = Path(uri).expanduser()
        if not path.is_dir():
            raise EtaError(f"--model {uri}: no such model folder")


def create_server(app: Flask, settings: Settings, host: str, port: int, threads: int) -> Any:
    """A waitress server bound to ``host:port`` (port 0: any free one), not yet running."""
    from waitress import create_server as waitress_server

    try:
        server = waitress_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="eta",
            # Why each of these: eta_cli.serve.connections (idle and slow clients, bodies).
            **connections.server_options(settings.max_body_bytes),
        )
    except OSError as exc:
        raise EtaError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    connections.enforce_deadlines(server, settings.max_body_bytes)
    return server


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into an orderly shutdown while inside; restore the old handlers."""

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the flush short
        raise SystemExit(0)  # waitress's loop turns this into an orderly shutdown

    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    settings: Settings,
    *,
    model_uri: str | None = None,
    host: str | None = None,
    port: int | None = None,
    threads: int | None = None,
    ready: Callable[[str, int], None] | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests and flush the prediction log.

    ``progress`` hears what a person at the terminal must know beside the JSON log lines:
    that there is no model to serve yet, and what to run to get one.
    """
    from eta_cli.serve.prediction_log import PredictionLog
    from eta_cli.serve.shadow import shadow_for

    check_model_uri(model_uri)
    host = host or settings.serve_host
    port = settings.serve_port if port is None else port
    threads = threads or settings.serve_threads
    provider = ModelProvider(settings, model_uri, progress=progress)
    plog = PredictionLog(settings.effective_database_url, settings.prediction_log_queue)
    shadow = shadow_for(settings, provider, plog)
    app = create_app(settings, provider, plog, shadow)
    server = create_server(app, settings, host, port, threads)
    try:
        with stop_on_signals():
            plog.start()
            provider.start()
            if shadow is not None:
                shadow.start()
            bound_port = int(server.effective_port)
            log_event(
                "listening",
                url=f"http://{host}:{bound_port}",
                threads=threads,
                model_uri=provider.model_uri,
                polling=provider.polling,
                shadow=shadow.provider.model_uri if shadow is not None else None,
                prediction_log=redact_url(settings.effective_database_url),
            )
            if ready is not None:
                ready(host, bound_port)
            server.run()
    finally:  # the signal handlers are restored first, as before the service started
        server.close()
        provider.stop()
        if shadow is not None:
            shadow.close()  # before the log closes: what it scored is still written
        plog.close()
        log_event("stopped", **plog.stats())
