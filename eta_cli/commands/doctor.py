"""``eta doctor``: check every part of the deployment, one row per check, exit 1 on any failure."""

from __future__ import annotations

from typing import Any

import typer

from eta_cli.commands import options
from eta_cli.commands._common import console, print_json, settings_from

HELP = """Check that every part eta needs works, in order: configuration, MLflow tracking, \
the backend database (direct postgresql+psycopg2:// tracking URIs), the artifact store and \
the S3 bucket (writes and deletes a probe object), the registered model and its champion \
alias (loads it), the monitoring database and its schema, free disk under ETA_HOME.

Each check is time-bounded, so a stopped server costs seconds. A check that does not \
apply to this setup is n/a (with the reason); one whose prerequisite failed is 'not run'.

\b
Exit codes:
  0  every check passed or is n/a
  1  at least one check failed or could not run
"""

_STYLES = {"pass": "green", "fail": "bold red", "n/a": "dim", "not run": "yellow"}


def doctor_command(
    ctx: typer.Context,
    as_json: bool = options.json_output(),
    fix: bool = typer.Option(
        False,
        "--fix",
        help="Create the monitoring database schema when it is missing (what `eta serve` "
        "does on first use). Nothing else is changed.",
    ),
    min_free_gib: float = typer.Option(
        1.0, "--min-free-gib", min=0.0, help="Least free disk under ETA_HOME, in GiB."
    ),
    timeout: float = typer.Option(
        30.0,
        "--timeout",
        min=1.0,
        help="Seconds one check may take (the model check: four times as long, to download "
        "the model). Network probes time out after 5 s on their own.",
    ),
) -> None:
    """Run every check and print one row each; exit 1 when any failed or could not run."""
    from eta_cli import doctor, tracking

    loaded: dict[str, Any] = {}

    def load() -> Any:
        loaded["settings"] = settings_from(ctx)
        tracking.quiet_mlflow(loaded["settings"].debug)  # before any check imports MLflow
        return loaded["settings"]

    results = doctor.run_checks(load, min_free_gib=min_free_gib, fix=fix, timeout_s=timeout)
    profile = loaded["settings"].profile if "settings" in loaded else None
    if as_json:
        print_json(doctor.to_dict(results, profile))
    else:
        _print(results, profile)
    raise typer.Exit(0 if doctor.all_ok(results) else 1)


def _print(results: list[Any], profile: str | None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"eta doctor (profile {profile or '?'})", show_lines=True)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("hint", overflow="fold")
    table.add_column("s", justify="right", no_wrap=True)
    for result in results:
        style = _STYLES.get(result.status, "")
        table.add_row(
            result.title,
            f"[{style}]{result.status}[/{style}]",
            Text(result.detail),
            Text(result.hint if not result.ok else ""),
            f"{result.duration_s:.1f}",
        )
    console.print(table)
    failed = [r.title for r in results if r.status == "fail"]
    skipped = [r.title for r in results if r.status == "not run"]
    if failed or skipped:
        parts = [f"{len(failed)} of {len(results)} checks failed: " + "; ".join(failed)]
        if skipped:
            parts.append(f"not run: {'; '.join(skipped)}")
        console.print(Text(", ".join(parts), style="bold red"))
    else:
        passed = sum(1 for r in results if r.status == "pass")
        na = len(results) - passed
        console.print(
            f"[green]{passed} of {len(results)} checks passed[/]"
            + (f", {na} n/a (do not apply here)" if na else "")
        )
