"""``eta predict``: predictions for a JSON file of orders, or a whole CSV/Parquet file."""

from __future__ import annotations

from typing import Any, Optional

import typer

from eta_cli import dask_engine
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
    json_path: Optional[str] = typer.Option(  # noqa: UP045 - Typer needs Optional
        None,
        "--json",
        "-j",
        help="Orders as JSON: one object, a list, {'orders': [...]} or JSON Lines; '-' = stdin.",
        show_default=False,
    ),
    input_uri: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--input",
        "-i",
        help="Batch: a CSV (.csv, .csv.gz) or Parquet file of orders, local or s3://.",
        show_default=False,
    ),
    output_uri: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--output",
        "-o",
        help="Batch: where to write the predictions (.parquet or .csv, local or s3://).",
        show_default=False,
    ),
    url: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--url",
        help="Send the orders to a running `eta serve` (e.g. http://localhost:9696) "
        "instead of predicting in-process.",
        show_default=False,
    ),
    model: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--model",
        "-m",
        help="In-process model: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model or a "
        "local folder. Default: models:/<model_name>@champion.",
        show_default=False,
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help=dask_engine.ENGINE_HELP + " dask: batch only; --input a folder or s3:// prefix, "
        "one Parquet file per input file under --output, same layout.",
    ),
    scheduler: Optional[str] = typer.Option(  # noqa: UP045
        None, "--scheduler", help=dask_engine.SCHEDULER_HELP, show_default=False
    ),
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
    from eta_cli import predict

    if (json_path is None) == (input_uri is None):
        raise EtaError("give either --json FILE or --input FILE --output FILE")
    if input_uri is not None and output_uri is None:
        raise EtaError("--input needs --output (a .parquet or .csv path, local or s3://)")
    if url and model:
        raise EtaError("--url and --model exclude each other: the server chooses its model")
    if output_format not in ("auto", "table", "json"):
        raise EtaError(f"--format {output_format!r}: use table, json or auto")
    settings = settings_from(ctx)
    if dask_engine.check_engine(engine, scheduler) == "dask" and (json_path is not None or url):
        from eta_cli.predict.dask import FILES_ONLY

        raise EtaError(FILES_ONLY)

    orders: list[Any] = []
    if json_path is not None:
        orders = predict.read_orders_json(json_path)  # read before loading any model
    predictor: predict.Predictor
    if url:
        predictor = predict.RemotePredictor(url, max_batch=settings.max_batch_orders)
        if wait:
            predictor.wait_ready(wait)
    elif json_path is not None or dask_engine.check_engine(engine, scheduler) == "local":
        predictor = predict.LocalPredictor.from_settings(settings, model)
    else:
        predictor = model  # type: ignore[assignment]  # the Dask engine loads it

    if json_path is not None:
        outcomes = predictor.predict(orders)
        as_table = output_format == "table" or (output_format == "auto" and is_terminal())
        if as_table:
            _print_table(outcomes, predictor)
        else:
            print_json(
                {
                    "model_name": predictor.model_name,
                    "model_version": predictor.model_version,
                    "predictions": [o.to_dict() for o in outcomes],
                }
            )
        if not all(o.ok for o in outcomes):
            raise typer.Exit(1)
        return

    from eta_cli.predict.batch import predict_files

    with progress_display() as report:
        summary = predict_files(
            settings,
            input_uri,  # type: ignore[arg-type]
            output_uri,  # type: ignore[arg-type]
            model=predictor,
            chunk_rows=chunk_rows,
            engine=engine,
            scheduler=scheduler,
            progress=report,
        )
    if output_format == "json" or (output_format == "auto" and not is_terminal()):
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
