"""``eta config show``: the effective settings and where each value came from."""

from __future__ import annotations

import typer
from rich.table import Table

from eta_cli import config
from eta_cli.commands import options
from eta_cli.commands._common import console, print_json, settings_from

app = typer.Typer(
    help="Inspect the effective configuration.", no_args_is_help=True, cls=options.EtaGroup
)


@app.command("show", cls=options.EtaCommand)
def show(
    ctx: typer.Context,
    as_json: bool = options.json_output(),
) -> None:
    """Print every setting, its value (secrets redacted) and its source."""
    settings = settings_from(ctx)
    rows = config.describe(settings)
    if as_json:
        print_json({name: {"value": value, "source": source} for name, value, source in rows})
        return
    table = Table(title=f"eta settings (profile {settings.profile})")
    # URIs and file paths fold onto further lines instead of being cut with an ellipsis.
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold", ratio=3)
    table.add_column("source", overflow="fold", ratio=2)
    for name, value, source in rows:
        table.add_row(name, str(value), source)
    console.print(table)
