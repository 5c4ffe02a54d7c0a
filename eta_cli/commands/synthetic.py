"""``eta synthetic``: write synthetic orders to a CSV file (to send, then ingest)."""

from __future__ import annotations

import typer

from eta_cli.commands import options
from eta_cli.commands._common import console, print_json, progress_display, settings_from

HELP = """Write N synthetic orders to a CSV file, spelled as the real export is.

The file has the 16 columns of the real file and no order_id (eta serve and eta ingest \
derive the same id for each order), with the real file's missing values and bad rows. \
It holds each order's actual delivery time too, so the same file can be sent through \
the service first (eta predict ignores the column) and ingested later as the delivered \
orders: the live loop that eta evaluate scores.

\b
  eta synthetic 3000 --drift -o live.csv    orders after the lake's newest
  eta predict -i live.csv -o live.parquet --url http://127.0.0.1:9696
  eta ingest live.csv                       the same orders, delivered
  eta evaluate

Without --drift the orders keep the generator's fixed dates (those of \
eta ingest --synthetic).
"""


def synthetic_command(
    ctx: typer.Context,
    n: int = typer.Argument(
        ...,
        metavar="N",
        min=1,
        help="How many orders (at most 5,000,000: they are drawn in memory).",
        show_default=False,
    ),
    output: str = typer.Option(
        ...,
        "--output",
        "-o",
        help="The CSV file to write (.csv or .csv.gz, local); replaced if it exists.",
        show_default=False,
    ),
    seed: int = options.seed(0, "Seed of the synthetic orders."),
    drift: bool = options.drift(),
    as_json: bool = options.json_output(),
) -> None:
    """Write synthetic orders to a CSV file."""
    from eta_cli.ingest.synthetic_file import write_synthetic

    settings = settings_from(ctx)
    with progress_display(not as_json) as report:
        result = write_synthetic(settings, output, n, seed=seed, drift=drift, progress=report)
    if as_json:
        print_json(result.to_dict())
        return
    after = f", after the lake's newest order ({result.lake_newest_day})"
    console.print(
        f"wrote {result.orders:,} orders to {result.path}: from {result.start} "
        f"over {result.days} days{after if result.lake_newest_day else ''}"
        f"{', drifted population' if result.drift else ''}",
        highlight=False,
        soft_wrap=True,
    )
