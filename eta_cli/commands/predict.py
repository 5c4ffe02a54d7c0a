"""``eta predict``: predictions for a JSON file of orders, or a whole CSV/Parquet file."""

from __future__ import annotations

from typing import Any

import typer

from eta_cli import dask_engine
from eta_cli.commands import options
from eta_cli.commands._common import (
    console,
    is_terminal,
    print_json,
    progress_display,
    settings_from,
)
from eta_cli.errors import EtaError

HELP = """Predict delivery times with the champion in-process, or through a running server.

\b
  eta predict --json order.json      one object, a list or JSON Lines (- = stdin)
  eta predict --json order.json --url http://localhost:9696
  eta predict --input orders.csv --output out.parquet     (local or s3://)

JSON orders print as a table on a terminal, as JSON otherwise (or with --format json). \
Batch files stream in chunks; rows that fail validation stay in the output with empty \
predictions and the reason in the 'error' column, and are counted in the summary. \
Columns other than the order fields and order_id are ignored.

\b
Exit codes:
  0  predictions written (batch: also when some rows were rejected)
  1  --json: at least one order was invalid (the others are still printed)
  2  bad input file, unreachable server or registry, no model (message says which)
"""


def predict_command(
    ctx: typer.Context,
    json_path: str | None = typer.Option(
        None,
        "--json",
        "-j",
        help="Orders as JSON: one object, a list, {'orders': [...]} or JSON Lines; '-' = stdin.",
        show_default=False,
    ),
    input_uri: str | None = typer.Option(
        None,
        "--input",
        "-i",
        help="Batch: a CSV (.csv, .csv.gz) or Parquet file of orders, local or s3://.",
        show_default=False,
    ),
    output_uri: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Batch: where to write the predictions (.parquet or .csv, local or s3://).",
        show_default=False,
    ),
    url: str | None = typer.Option(
        None,
        "--url",
        help="Send the orders to a running `eta serve` (e.g. http://localhost:9696) "
        "instead of predicting in-process.",
        show_default=False,
    ),
    model: str | None = options.model(
        "In-process model: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model or a "
        "local folder. Default: models:/<model_name>@champion."
    ),
    engine: str = options.engine(
        "dask: batch only; --input a folder or s3:// prefix, "
        "one Parquet file per input file under --output, same layout."
    ),
    scheduler: str | None = options.scheduler(),
    output_format: str = typer.Option(
        "auto",
        "--format",
        "-f",
        help="--json output: table, json, or auto (table on a terminal, JSON otherwise).",
    ),
    chunk_rows: int = typer.Option(
        50_000, "--chunk-rows", min=1, help="Batch: rows per chunk (memory bound)."
    ),
    wait: float = typer.Option(
        0.0,
        "--wait",
        min=0,
        help="With --url: wait up to this many seconds for the server to be ready.",
    ),
) -> None:
    """Predict JSON orders (printed) or a whole file (written), in-process or remotely."""
    _check_options(json_path, input_uri, output_uri, url, model, output_format)
    settings = settings_from(ctx)
    if dask_engine.check_engine(engine, scheduler) == "dask" and (json_path is not None or url):
        from eta_cli.predict.dask import FILES_ONLY

        raise EtaError(FILES_ONLY)
    if json_path is not None:
        _predict_json(settings, json_path, url, model, wait, output_format)
        return
    from eta_cli.predict.files import predict_files

    server = _predictor(settings, url, model, wait) if url else None
    with progress_display() as report:
        summary = predict_files(
            settings,
            input_uri,  # type: ignore[arg-type]
            output_uri,  # type: ignore[arg-type]
            model=server or model,
            chunk_rows=chunk_rows,
            engine=engine,
            scheduler=scheduler,
            progress=report,
        )
    _print_batch_summary(summary, output_format)


def _check_options(
    json_path: str | None,
    input_uri: str | None,
    output_uri: str | None,
    url: str | None,
    model: str | None,
    output_format: str,
) -> None:
    """Refuse option combinations that cannot work, before anything is read or loaded."""
    if (json_path is None) == (input_uri is None):
        raise EtaError("give either --json FILE or --input FILE --output FILE")
    if input_uri is not None and output_uri is None:
        raise EtaError("--input needs --output (a .parquet or .csv path, local or s3://)")
    if url and model:
        raise EtaError("--url and --model exclude each other: the server chooses its model")
    if output_format not in ("auto", "table", "json"):
        raise EtaError(f"--format {output_format!r}: use table, json or auto")


def _wants_json(output_format: str) -> bool:
    """JSON when asked for, or by default when stdout is not a terminal (pipes, files)."""
    return output_format == "json" or (output_format == "auto" and not is_terminal())


def _predictor(settings: Any, url: str | None, model: str | None, wait: float) -> Any:
    """The remote server (``--url``, optionally waited for) or the in-process model."""
    from eta_cli import predict

    if url:
        remote = predict.RemotePredictor(url, max_batch=settings.max_batch_orders)
        if wait:
            remote.wait_ready(wait)
        return remote
    return predict.LocalPredictor.from_settings(settings, model)


def _predict_json(
    settings: Any,
    json_path: str,
    url: str | None,
    model: str | None,
    wait: float,
    output_format: str,
) -> None:
    """Predict the orders of a JSON file; exit 1 when any order was invalid."""
    from eta_cli import predict

    orders = predict.read_orders_json(json_path)  # read before loading any model
    predictor = _predictor(settings, url, model, wait)
    outcomes = predictor.predict(orders)
    if _wants_json(output_format):
        print_json(
            {
                "model_name": predictor.model_name,
                "model_version": predictor.model_version,
                "predictions": [o.to_dict() for o in outcomes],
            }
        )
    else:
        _print_table(outcomes, predictor)
    if not all(o.ok for o in outcomes):
        raise typer.Exit(1)


def _print_batch_summary(summary: Any, output_format: str) -> None:
    """One line for the written file, plus missing columns and example rejections."""
    if _wants_json(output_format):
        print_json(summary.to_dict())
        return
    if summary.engine == "dask":
        console.print(
            f"[green]wrote[/] {summary.files} file(s) under {summary.output}: {summary.rows} "
            f"rows, {summary.predicted} predicted, {summary.rejected} rejected (model "
            f"{summary.model_name or 'local'} v{summary.model_version or '-'}, "
            f"{summary.seconds:.1f} s)"
        )
        for example in summary.reject_examples:
            console.print(f"[yellow]rejected[/] {example}")
        return
    console.print(
        f"[green]wrote[/] {summary.output}: {summary.rows} rows, {summary.predicted} predicted, "
        f"{summary.rejected} rejected (model {summary.model_name or 'local'} "
        f"v{summary.model_version or '-'})"
    )
    if summary.missing_optional_columns:
        console.print(
            "[yellow]input has no column(s)[/] "
            + ", ".join(summary.missing_optional_columns)
            + ": treated as missing values"
        )
    for example in summary.reject_examples:
        console.print(f"[yellow]rejected[/] {example}")


def _print_table(outcomes: list[Any], predictor: Any) -> None:
    from rich.table import Table

    low, high = predictor.interval_fields or ("eta_p10_s", "eta_p90_s")
    title = f"model {predictor.model_name or 'local'} v{predictor.model_version or '-'}"
    table = Table(title=title)
    for name in ("#", "order_id", "eta_p50_s", low, high, "eta_quoted_s", "expected_delivery_at"):
        table.add_column(name, justify="right" if name.startswith(("eta", "#")) else "left")
    for outcome in outcomes:
        p = outcome.prediction
        if p is None:
            table.add_row(
                str(outcome.index),
                outcome.order_id or "",
                f"[red]{outcome.error_text()}[/]",
                "",
                "",
                "",
                "",
            )
            continue
        table.add_row(
            str(outcome.index),
            p.get("order_id") or "",
            f"{p['eta_p50_s']:.1f}",
            f"{p[low]:.1f}",
            f"{p[high]:.1f}",
            f"{p['eta_quoted_s']:.1f}",
            p["expected_delivery_at"],
        )
    console.print(table)
