"""``eta evaluate``: live quality of champion and shadow challenger from delivered orders."""

from __future__ import annotations

from typing import Any

import typer

from eta_cli.commands import options
from eta_cli.commands._common import console, err_console, print_json, settings_from

EXIT_PROMOTED = 3
EXIT_NOT_STORED = 4

HELP = """Join logged predictions with delivered orders and compare champion and challenger.

Predictions of `eta serve` (the champion's answers and the shadow challenger's) are \
joined by order_id with the orders ingested since, which carry the actual delivery time. \
Per model version and role: orders, MAE, p10-p90 coverage, lateness against the quoted \
ETA and bias. Champion and challenger are compared on the same orders: mean difference \
of absolute errors (challenger minus champion) with a seeded bootstrap confidence \
interval, and a verdict: champion, challenger or undecided. Results go to the \
monitoring database (Grafana) and the terminal.

--promote makes the challenger champion when it wins on at least ETA_LIVE_MIN_ORDERS \
paired orders (default 200) and the interval excludes zero.

\b
Exit codes:
  0  evaluated (or nothing to join yet: the message says what is missing)
  2  bad input or configuration (message says which)
  3  the challenger won and was promoted (--promote)
  4  evaluated, but the results could not be stored in the monitoring database
"""


def evaluate_command(
    ctx: typer.Context,
    since: str | None = options.since(
        "Window of logged predictions, back from now: 24h, 7d, 90m, 2w or an ISO date. Default: 7d."
    ),
    promote: bool = typer.Option(
        False,
        "--promote",
        help="Move champion to the challenger when it wins on enough paired orders.",
    ),
    seed: int = options.seed(0, "Seed of the bootstrap resampling."),
    as_json: bool = options.json_output("Print the evaluation as JSON."),
) -> None:
    from eta_cli.monitor import evaluate

    settings = settings_from(ctx)
    result = evaluate.evaluate(settings, since, promote=promote, seed=seed)
    if as_json:
        print_json(result.to_dict())
    else:
        _print(result)
    for error in result.errors:
        err_console.print(f"[yellow]warning:[/] {error}", highlight=False)
    if result.promoted:
        raise typer.Exit(EXIT_PROMOTED)
    raise typer.Exit(EXIT_NOT_STORED if result.errors else 0)


def _print(result: Any) -> None:
    from rich.table import Table

    if result.message:
        err_console.print(result.message, highlight=False, soft_wrap=True)
        return
    table = Table(
        title=f"eta evaluate: model {result.model_name!r}, predictions since "
        f"{result.window_start:%Y-%m-%d %H:%M} UTC, {result.joined_orders:,} delivered orders",
        show_edge=False,
    )
    for name in ("role", "version", "orders", "MAE (s)", "p10-p90 coverage", "late", "bias (s)"):
        table.add_column(name, justify="left" if name in ("role", "version") else "right")
    for m in result.models:
        table.add_row(
            m.role,
            f"v{m.version}",
            f"{m.orders:,}",
            f"{m.mae:.1f}",
            f"{m.coverage:.1%}",
            f"{m.lateness:.1%}",
            f"{m.bias:+.1f}",
        )
    console.print(table)
    c = result.comparison
    colour = {"challenger": "green", "champion": "cyan"}.get(c.winner, "yellow")
    if c.mae_difference is None:
        console.print(f"verdict: [{colour}]{c.winner}[/] ({c.reason})")
    else:
        console.print(
            f"champion v{c.champion_version} vs challenger v{c.challenger_version} on "
            f"{c.orders:,} paired orders: MAE {c.champion_mae:.1f} s vs {c.challenger_mae:.1f} s, "
            f"difference {c.mae_difference:+.1f} s ({100 * c.confidence:g} % CI "
            f"{c.ci_low:+.1f} to {c.ci_high:+.1f})\n"
            f"verdict: [{colour}]{c.winner}[/] ({c.reason})",
            highlight=False,
        )
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    if result.promotion is not None:
        word = "promoted" if result.promotion.promoted else "not promoted"
        console.print(f"{word}: {result.promotion.reason}", highlight=False)
