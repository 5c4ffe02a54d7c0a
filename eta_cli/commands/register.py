"""``eta register``: register a run through the champion/challenger gate; manage aliases."""

from __future__ import annotations

import typer

from eta_cli.commands import options
from eta_cli.commands._common import console, print_json, settings_from
from eta_cli.errors import EtaError

HELP = (
    "Register the best training run (or --run-id) under the model name: it becomes 'champion' "
    "only if it beats the current champion on the same recent test orders, else 'challenger'."
)


def register_command(
    ctx: typer.Context,
    run_id: str | None = typer.Option(
        None,
        "--run-id",
        help="Training run to register. Default: the best by test MAE.",
        show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="Make it champion whatever the gate says."),
    promote: str | None = typer.Option(
        None,
        "--promote",
        metavar="VERSION",
        help="Move 'champion' to this version (roll back or forward); registers nothing.",
        show_default=False,
    ),
    list_: bool = typer.Option(False, "--list", help="Show versions, aliases and key metrics."),
    experiment: str | None = options.experiment(
        "MLflow experiment to pick the best run from. Default: $ETA_EXPERIMENT_NAME or eta."
    ),
    as_json: bool = options.json_output(),
) -> None:
    """Register a model version and move the aliases."""
    from eta_cli import registration, tracking

    if sum([bool(promote), list_, bool(run_id or force)]) > 1:
        raise EtaError("use only one of --promote VERSION, --list, or --run-id/--force")
    settings = settings_from(ctx, experiment_name=experiment)
    tracking.quiet_mlflow(settings.debug)
    if list_:
        rows = registration.list_versions(settings)
        if as_json:
            print_json({"name": settings.model_name, "versions": rows})
        else:
            _print_versions(settings.model_name, rows)
        return
    if promote:
        result = registration.promote(settings, promote)
    else:
        result = registration.register(settings, run_id=run_id, force=force)
    if as_json:
        print_json(result.to_dict())
        return
    colour = {"champion": "green", "promoted": "green", "challenger": "yellow"}.get(
        result.action, "white"
    )
    aliases = ", ".join(result.aliases) or "no alias"
    console.print(
        f"[bold {colour}]{result.name} v{result.version}: {result.action}[/] ({aliases}); "
        f"run {result.run_id}"
    )
    console.print(f"reason: {result.reason}")


def _print_versions(name: str, rows: list[dict]) -> None:
    import datetime as dt

    from rich.table import Table

    if not rows:
        console.print(f"no versions of model {name!r} yet: run `eta train` and `eta register`")
        return
    table = Table(title=f"Model {name!r}", caption="gate reasons: eta register --list --json")
    # At 80 columns the identifiers stay whole (version, run, date) and the gate's words wrap.
    for column in ("version", "aliases", "MAE s", "cover", "late", "registered", "run", "gate"):
        table.add_column(
            column,
            no_wrap=column in ("version", "MAE s", "cover", "late", "registered", "run"),
            overflow="fold",
            justify="right" if column in ("version", "MAE s", "cover", "late") else "left",
        )
    for row in rows:
        m = row["metrics"]
        created = dt.datetime.fromtimestamp((row["created"] or 0) / 1000, dt.UTC)
        table.add_row(
            row["version"],
            ", ".join(row["aliases"]),
            f"{m['test_mae']:.1f}" if "test_mae" in m else "",
            f"{100 * m['test_coverage']:.1f}%" if "test_coverage" in m else "",
            f"{100 * m['test_lateness_rate']:.1f}%" if "test_lateness_rate" in m else "",
            created.strftime("%Y-%m-%d %H:%M"),
            (row["run_id"] or "")[:8],
            row["decision"] or "",
        )
    console.print(table)
