"""``eta serve``: the prediction service on waitress (see ``eta_cli.serve``)."""

from __future__ import annotations

import typer

from eta_cli.commands import options
from eta_cli.commands._common import progress_display, settings_from

HELP = """Serve predictions over HTTP (Flask on waitress), port 9696 by default.

Loads the model in the background (GET /ready is 503 until then) and, for a \
models:/NAME@ALIAS URI, polls the alias every reload_interval_s and swaps to the \
new version atomically. Every prediction is logged to the monitoring database \
by a background writer. SIGTERM or Ctrl-C: finish the requests in flight, flush \
the prediction log, exit 0.

\b
Endpoints: POST /predict, GET /health, GET /ready, GET /model, GET /metrics,
           GET /openapi.json, POST /reload
"""


def serve_command(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None,
        "--host",
        help="Interface to listen on (0.0.0.0 for all). Default: serve_host (127.0.0.1).",
        show_default=False,
    ),
    port: int | None = typer.Option(
        None,
        "--port",
        min=1,
        max=65535,
        help="TCP port. Default: serve_port (9696).",
        show_default=False,
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="Worker threads. Default: serve_threads (8).",
        show_default=False,
    ),
    model: str | None = options.model(
        "models:/NAME@ALIAS (polled for changes), models:/NAME/VERSION, runs:/ID/model "
        "or a local model folder. Default: models:/<model_name>@champion."
    ),
) -> None:
    from eta_cli import serve

    settings = settings_from(ctx, serve_host=host, serve_port=port, serve_threads=threads)
    stop_logging = serve.configure_logging()
    try:
        # Messages only (no bars): "no champion ... yet" once, beside the JSON log lines.
        with progress_display(bars_wanted=False) as report:
            serve.serve(settings, model_uri=model, progress=report)
    finally:
        stop_logging()  # writes the last lines (shutdown, log flush) before exiting
