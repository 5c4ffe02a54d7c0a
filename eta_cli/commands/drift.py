"""``eta drift-report``: compare current orders (or the prediction log) with the reference."""

from __future__ import annotations

from typing import Any

import typer

from eta_cli.commands import options
from eta_cli.commands._common import (
    console,
    err_console,
    print_json,
    quiet_library_warnings,
    settings_from,
)

HELP = """Compare current orders with the champion's reference sample (Evidently 0.7).

Data drift of the model's input columns, drift of the median prediction, and quality \
(MAE, p10-p90 coverage, lateness) when delivery times are known. Writes an HTML report and \
a JSON summary under ETA_HOME/reports/, stores one row per report and per column in the \
monitoring database, adds the report as a run to the Evidently workspace (`eta ui` shows \
it), and alerts a webhook on drift.

\b
--current:  orders       newest ingested day (or --since window), the default
            predictions  prediction log of `eta serve` (--since, default 24h)
            PATH         a CSV or Parquet file of orders (local or s3://)

\b
Exit codes:
  0  report written (drift or not, unless --fail-on-drift)
  2  bad input or configuration (message says which)
  3  dataset drift detected and --fail-on-drift given
  4  report written locally, but the monitoring DB, workspace or S3 upload failed
"""


def drift_report_command(
    ctx: typer.Context,
    reference: str | None = typer.Option(
        None,
        "--reference",
        "-r",
        help="'champion' (its logged reference sample) or a CSV/Parquet path. Default: champion.",
        show_default=False,
    ),
    current: str | None = typer.Option(
        None,
        "--current",
        "-c",
        help="'orders' (newest ingested day), 'predictions' (prediction log) or a "
        "CSV/Parquet path. Default: orders.",
        show_default=False,
    ),
    since: str | None = options.since(
        "Window of current data: 24h, 7d, 90m, 2w or an ISO date. For orders it ends "
        "at the newest order; for predictions, now. Default: newest day / 24h."
    ),
    sample: int | None = options.sample(
        "At most this many rows per side (0 = all). Default: drift_sample_rows (20000)."
    ),
    upload_s3: bool = options.upload_s3(
        "Also upload both files to s3://$ETA_S3_BUCKET/<prefix>/reports/YYYY/MM/DD/."
    ),
    fail_on_drift: bool = typer.Option(
        False, "--fail-on-drift", help="Exit with code 3 when dataset drift is detected."
    ),
    alert_webhook: str | None = options.alert_webhook(
        "POST a Slack-compatible {'text': ...} message here on drift. Default: $ETA_ALERT_WEBHOOK."
    ),
    include_data: bool | None = typer.Option(
        None,
        "--include-data/--no-include-data",
        help="Also keep the compared (sampled) orders in the Evidently workspace run, not "
        "only the figures. Default: $ETA_WORKSPACE_INCLUDE_DATA (off).",
        show_default=False,
    ),
    as_json: bool = options.json_output("Print the JSON summary object."),
) -> None:
    from eta_cli.monitor import drift

    settings = settings_from(ctx)
    request = drift.DriftRequest(
        reference=reference,
        current=current,
        since=since,
        upload_s3=upload_s3,
        sample_rows=sample,
        fail_on_drift=fail_on_drift,
        alert_webhook=alert_webhook,
        include_data=include_data,
    )
    with quiet_library_warnings(settings.debug):
        result = drift.drift_report(settings, request)
    if as_json:
        print_json(result.to_dict())
    else:
        _print(result)
    for error in result.errors:
        err_console.print(f"[red]error:[/red] {error}")
    if result.alert and not result.alert.get("sent"):
        err_console.print(
            f"[yellow]warning:[/yellow] drift alert not delivered: {result.alert.get('error')}"
        )
    raise typer.Exit(result.exit_code)


def _print(result: Any) -> None:
    from rich.table import Table

    verdict = (
        "[bold red]dataset drift detected[/bold red]"
        if result.dataset_drift
        else "[bold green]no dataset drift[/bold green]"
    )
    if not result.meaningful:
        verdict = "[bold yellow]no verdict (too few current orders)[/bold yellow]"
    console.print(
        f"{verdict}: {result.drifted_columns}/{result.total_columns} columns drifted "
        f"(share {result.drift_share:.2f}, threshold {result.threshold:.2f})"
    )
    console.print(
        f"reference: {result.reference_source} ({result.reference_sampled_rows:,} of "
        f"{result.reference_rows:,} rows)\ncurrent:   {result.current_source} "
        f"({result.current_sampled_rows:,} of {result.current_rows:,} rows)"
    )
    table = Table(show_edge=False)
    # At 80 columns method names stay on one line; long column names fold instead.
    for name in ("column", "method", "score", "threshold", "drifted"):
        table.add_column(name, no_wrap=name != "column", overflow="fold")
    rows = [*result.columns, *([result.prediction] if result.prediction else [])]
    for c in rows:
        table.add_row(
            c.column,
            c.method,
            f"{c.score:.4g}",
            "" if c.threshold is None else f"{c.threshold:g}",
            "[red]yes[/red]" if c.drifted else "no",
        )
    console.print(table)
    if result.quality:
        q = result.quality
        train = (q.training or {}).get("mae_s")
        console.print(
            f"quality on {q.rows:,} delivered orders: MAE {q.mae_s:.0f} s"
            + (f" (champion test {train:.0f} s)" if train else "")
            + f", coverage {q.interval_coverage:.2f}, late {q.lateness_rate:.2f}"
        )
    for note in result.notes:
        console.print(f"[dim]note: {note}[/dim]")
    console.print(f"html: {result.html_path}")
    console.print(f"json: {result.json_path}")
    if result.workspace_run:
        console.print(f"workspace run: {result.workspace_run} (see it with `eta ui`)")
    if result.html_uri:
        console.print(f"uploaded: {result.html_uri}\nuploaded: {result.json_uri}")
    if result.alert and result.alert.get("sent"):
        console.print("alert sent")
