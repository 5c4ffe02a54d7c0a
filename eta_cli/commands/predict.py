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
    engine: options.Engine = options.engine(
        "dask: batch only; --input a folder or s3:// prefix, "
        "one Parquet file per input file under --output, same layout."
    ),
    scheduler: str | None = options.scheduler(),
    output_format: options.OutputFormat = typer.Option(
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
    strict: bool = typer.Option(
        False,
        "--strict",
        help="--json: all or nothing, as the server's default: if any order is invalid, "
        "predict none (exit 1 with the reasons). Default: predict the valid orders and mark "
        "the invalid ones.",
    ),
) -> None:
    """Predict JSON orders (printed) or a whole file (written), in-process or remotely."""
    _check_options(json_path, input_uri, output_uri, url, model, output_format, strict)
    settings = settings_from(ctx)
    if dask_engine.check_engine(engine, scheduler) == "dask" and (json_path is not None or url):
        from eta_cli.predict.dask import FILES_ONLY

        raise EtaError(FILES_ONLY)
    if json_path is not None:
        _predict_json(settings, json_path, url, model, wait, output_format, strict)
        return
    server = _predictor(settings, url, model, wait) if url else None
    batch = {"chunk_rows": chunk_rows, "engine": engine, "scheduler": scheduler}
    _predict_batch(settings, input_uri, output_uri, server or model, batch, output_format)


def _predict_batch(
    settings: Any,
    input_uri: Any,
    output_uri: Any,
    model: Any,
    batch: dict[str, Any],
    output_format: str,
) -> None:
    """Score a whole file (or, with Dask, a folder) with a progress bar; print the result."""
    from eta_cli.predict.files import predict_files

    with progress_display() as report:
        result = predict_files(
            settings, input_uri, output_uri, model=model, **batch, progress=report
        )
    _print_batch_result(result, output_format)


def _check_options(
    json_path: str | None,
    input_uri: str | None,
    output_uri: str | None,
    url: str | None,
    model: str | None,
    output_format: str,
    strict: bool,
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
    if strict and json_path is None:
        raise EtaError(
            "--strict applies to --json orders; batch files keep each rejected row, with "
            "its reason in the 'error' column"
        )


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
    strict: bool = False,
) -> None:
    """Predict the orders of a JSON file; exit 1 when any order was invalid."""
    from eta_cli import predict

    orders = predict.read_orders_json(json_path)  # read before loading any model
    predictor = _predictor(settings, url, model, wait)
    outcomes = predictor.predict(orders, strict=strict)
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


def _print_batch_result(result: Any, output_format: str) -> None:
    """One line for the written file, plus missing columns and example rejections."""
    if _wants_json(output_format):
        print_json(result.to_dict())
        return
    if result.engine == "dask":
        console.print(
            f"[green]wrote[/] {result.files} file(s) under {result.output}: {result.rows} "
            f"rows, {result.predicted} predicted, {result.rejected} rejected (model "
            f"{result.model_name or 'local'} v{result.model_version or '-'}, "
            f"{result.seconds:.1f} s)"
        )
        for example in result.reject_examples:
            console.print(f"[yellow]rejected[/] {example}")
        return
    console.print(
        f"[green]wrote[/] {result.output}: {result.rows} rows, {result.predicted} predicted, "
        f"{result.rejected} rejected (model {result.model_name or 'local'} "
        f"v{result.model_version or '-'})"
    )
    if result.missing_optional_columns:
        console.print(
            "[yellow]input has no column(s)[/] "
            + ", ".join(result.missing_optional_columns)
            + ": treated as missing values"
        )
    for example in result.reject_examples:
        console.print(f"[yellow]rejected[/] {example}")


def _print_table(outcomes: list[Any], predictor: Any) -> None:
    """Readable at 80 columns: one order as a vertical record (every field on its own
    line), several as one row each with the reasons for rejected orders listed below."""
    from rich.table import Table

    low, high = predictor.interval_fields or ("eta_p10_s", "eta_p90_s")
    title = f"model {predictor.model_name or 'local'} v{predictor.model_version or '-'}"
    fields = ("eta_p50_s", low, high, "eta_quoted_s")
    if len(outcomes) == 1:
        outcome = outcomes[0]
        table = Table(title=title, show_header=False)
        table.add_column("field", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_row("order_id", outcome.order_id or "")
        if outcome.prediction is None:
            for problem in outcome.problems:
                table.add_row(f"[red]{problem.field}[/]", f"{problem.problem}")
        else:
            for name in fields:
                table.add_row(name, f"{outcome.prediction[name]:.1f}")
            table.add_row("expected_delivery_at", outcome.prediction["expected_delivery_at"])
        console.print(table)
        return
    table = Table(title=title)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("order_id", overflow="fold")
    for name in fields:  # eta_p50_s -> p50 s: the short header keeps the row within 80
        table.add_column(name.removeprefix("eta_").replace("_s", " s"), justify="right")
    table.add_column("expected_delivery_at", no_wrap=True)
    for outcome in outcomes:
        p = outcome.prediction
        if p is None:
            table.add_row(str(outcome.index), outcome.order_id or "", "[red]invalid[/]", "", "")
            continue
        table.add_row(
            str(outcome.index),
            p.get("order_id") or "",
            *(f"{p[name]:.1f}" for name in fields),
            p["expected_delivery_at"],
        )
    console.print(table)
    for outcome in outcomes:
        if outcome.prediction is None:
            console.print(f"[red]#{outcome.index}[/] {outcome.error_text()}", overflow="fold")
