"""``eta pipeline``: ingest, drift report, retrain and register, safe to run from cron."""

from __future__ import annotations

from typing import Any, Literal

import typer

from eta_cli.commands import options
from eta_cli.commands._common import (
    console,
    err_console,
    print_json,
    quiet_library_warnings,
    settings_from,
)

HELP = """Ingest new files, check the new orders for drift against the champion, and \
retrain + register (champion/challenger gate) when drift is found or --retrain says so.

One line per step is logged to stderr with its timing; a lock under ETA_HOME stops \
overlapping runs. Local files already ingested by an earlier run are skipped.

\b
Exit codes:
  0   ok: nothing new or no drift (first model / --retrain always included)
  2   bad input or configuration, nothing done
  3   a new champion: drift retrain promoted, or the challenger won live
      (--live-promotion on)
  4   drift; retrained, but the gate kept the old champion (challenger)
  5   drift; not retrained (--retrain never)
  6   a step failed (see its log line); other steps ran where they could
  75  another pipeline run holds the lock; nothing done
"""


def pipeline_command(
    ctx: typer.Context,
    sources: list[str] | None = options.sources(
        "Files, globs, folders or s3:// URIs of new orders."
    ),
    inbox: str | None = typer.Option(
        None,
        "--inbox",
        envvar="ETA_PIPELINE_INBOX",
        help="A folder whose new or changed CSV/Parquet files are ingested on every run. "
        "Default: $ETA_PIPELINE_INBOX.",
        show_default=False,
    ),
    retrain: str = typer.Option(
        "on-drift",
        "--retrain",
        help="When to retrain: on-drift, always or never.",
    ),
    synthetic: int | None = options.synthetic("Also ingest N synthetic orders (demos and tests)."),
    seed: int = options.seed(0, "Seed of the synthetic orders."),
    drift: bool = options.drift(),
    sample: int | None = options.sample(
        "Drift report: at most this many rows per side. Default: drift_sample_rows."
    ),
    upload_s3: bool = options.upload_s3("Upload the drift report to s3://$ETA_S3_BUCKET/..."),
    alert_webhook: str | None = options.alert_webhook(
        "Slack-compatible webhook for drift alerts. Default: $ETA_ALERT_WEBHOOK."
    ),
    trials: int = options.trials("Optuna trials when retraining."),
    max_rounds: int | None = options.max_rounds(
        None, "Boosting rounds cap when retraining. Default: train's own."
    ),
    live_promotion: Literal["on", "off"] = typer.Option(
        "off",
        "--live-promotion",
        help="on: the evaluate step promotes a shadow challenger that won on live orders "
        "(the policy of `eta evaluate --promote`); off: it only reports.",
    ),
    as_json: bool = options.json_output("Print the run summary as JSON."),
) -> None:
    from eta_cli import pipeline

    settings = settings_from(ctx)
    with quiet_library_warnings(settings.debug):  # the drift step's small samples
        result = pipeline.run_pipeline(
            settings,
            sources or [],
            inbox=inbox,
            retrain=retrain,
            synthetic=synthetic,
            seed=seed,
            drift=drift,
            sample_rows=sample,
            upload_s3=upload_s3,
            alert_webhook=alert_webhook,
            trials=trials,
            max_rounds=max_rounds,
            live_promotion=live_promotion == "on",
            log=_log,
        )
    if as_json:
        print_json(result.to_dict())
    else:
        _print(result)
    raise typer.Exit(result.exit_code)


def _log(line: str) -> None:
    from datetime import UTC, datetime

    err_console.print(
        f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} eta pipeline {line}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _print(result: Any) -> None:
    from rich.table import Table

    table = Table(title="eta pipeline", show_edge=False)
    for name in ("step", "status", "seconds"):
        table.add_column(name)
    table.add_column("detail", overflow="fold")
    colours = {"ok": "green", "skipped": "dim", "failed": "red"}
    for step in result.steps:
        table.add_row(
            step.name,
            f"[{colours.get(step.status, 'white')}]{step.status}[/]",
            f"{step.seconds:.1f}",
            step.detail,
        )
    console.print(table)
    console.print(f"exit {result.exit_code}: {result.summary}")
