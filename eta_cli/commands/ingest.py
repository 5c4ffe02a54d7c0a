"""``eta ingest``: validate raw orders and publish them to the Parquet data lake."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from eta_cli.commands import options
from eta_cli.commands._common import console, print_json, progress_display, settings_from

if TYPE_CHECKING:
    from eta_cli.ingest import IngestResult

HELP = (
    "Validate orders (files, globs, directories, s3:// URIs or --synthetic N) and publish "
    "them to the date-partitioned data lake; rejected rows go to a quarantine file."
)


def ingest_command(
    ctx: typer.Context,
    sources: list[str] | None = options.sources(
        "Files, globs, directories or s3://bucket/key (or s3://bucket/prefix/)."
    ),
    synthetic: int | None = options.synthetic(
        "Also generate N synthetic orders and ingest them.", min=1
    ),
    seed: int = options.seed(0, "Seed of the synthetic orders."),
    drift: bool = options.drift(),
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Data lake root (folder or s3://bucket/prefix). Default: the data_uri setting.",
        show_default=False,
    ),
    as_json: bool = options.json_output(),
    engine: options.Engine = options.engine("dask: one task per file."),
    scheduler: str | None = options.scheduler(),
) -> None:
    """Validate, clean and publish orders."""
    if not sources and not synthetic:
        raise typer.BadParameter(
            "nothing to ingest: give at least one SOURCE (file, glob, directory or s3:// URI) "
            "or --synthetic N",
            ctx=ctx,
            param_hint="SOURCE",
        )
    from eta_cli import ingest as library

    settings = settings_from(ctx, data_uri=output)
    with progress_display(not as_json) as report:
        result = library.ingest(
            settings,
            sources or [],
            synthetic=synthetic,
            seed=seed,
            drift=drift,
            engine=engine,
            scheduler=scheduler,
            progress=report,
        )
    if as_json:
        print_json(result.to_dict())
    else:
        _summary(result)


def _summary(result: IngestResult) -> None:
    from rich.table import Table

    table = Table(title=f"eta ingest · run {result.run_id}", show_header=False)
    table.add_column("what", style="bold", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    table.add_row("rows read", f"{result.rows_read:,}")
    table.add_row("rows written", f"{result.rows_written:,}")
    table.add_row("rows quarantined", f"{result.rows_quarantined:,}")
    for reason, count in result.reasons.items():
        table.add_row(f"  {reason}", f"{count:,}")
    table.add_row("rows cleaned (values blanked)", f"{result.rows_cleaned:,}")
    for rule, count in result.cleaned.items():
        table.add_row(f"  {rule}", f"{count:,}")
    table.add_row("date partitions updated", f"{len(result.partitions):,}")
    table.add_row("output", result.output)
    table.add_row("quarantine file", result.quarantine or "none (no row rejected)")
    if result.recovered:
        table.add_row("completed interrupted runs", ", ".join(result.recovered))
    table.add_row("seconds", f"{result.seconds:.1f}")
    console.print(table)
    mark = "[green]✓[/green]" if result.balanced else "[red]✗[/red]"
    console.print(
        f"{mark} rows read {result.rows_read:,} = written {result.rows_written:,} "
        f"+ quarantined {result.rows_quarantined:,}",
        highlight=False,
    )
