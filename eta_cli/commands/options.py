"""Options shared by several commands, defined once (as ``mlflow/cli_args.py`` does).

Each function returns the ``typer.Option`` (or ``typer.Argument``) to use as a parameter's
default, so the flag's name, type, default and base help text live here and nowhere else.
A command may append what the option means for it (``engine("dask: one task per file.")``)
or replace a help text whose wording is its own, but never re-declares the flag.
"""

from __future__ import annotations

from typing import Any

import typer

ENGINE_HELP = "local: this process; dask: a Dask cluster (see --scheduler)."
SCHEDULER_HELP = (
    "Dask scheduler address (e.g. tcp://scheduler:8786) for --engine dask. Default: "
    "$DASK_SCHEDULER_ADDRESS, else a local cluster sized to this machine "
    "($ETA_DASK_WORKERS, $ETA_DASK_THREADS_PER_WORKER, $ETA_DASK_MEMORY_LIMIT adjust it)."
)


def json_output(help: str = "Print one JSON object.") -> Any:
    """``--json``: one JSON object on stdout instead of the table (for scripts)."""
    return typer.Option(False, "--json", help=help)


def engine(detail: str) -> Any:
    """``--engine local|dask``; ``detail`` says what the Dask engine does for this command."""
    return typer.Option("local", "--engine", help=f"{ENGINE_HELP} {detail}")


def scheduler() -> Any:
    """``--scheduler ADDRESS`` of a running Dask cluster (only with ``--engine dask``)."""
    return typer.Option(None, "--scheduler", help=SCHEDULER_HELP, show_default=False)


def seed(default: int, help: str) -> Any:
    """``--seed N``: the seed of whatever the command draws at random."""
    return typer.Option(default, "--seed", help=help)


def experiment(help: str = "MLflow experiment. Default: $ETA_EXPERIMENT_NAME or eta.") -> Any:
    """``--experiment NAME``: overrides the experiment_name setting for this command."""
    return typer.Option(None, "--experiment", help=help, show_default=False)


def sources(help: str) -> Any:
    """``SOURCE...``: files, globs, folders or s3:// URIs of orders (ingest, pipeline)."""
    return typer.Argument(None, metavar="SOURCE", help=help, show_default=False)


def synthetic(help: str, *, min: int | None = None) -> Any:
    """``--synthetic N``: also generate N synthetic orders (demos and tests)."""
    return typer.Option(None, "--synthetic", min=min, help=help, show_default=False)


def drift() -> Any:
    """``--drift``: the synthetic orders come from a shifted population."""
    return typer.Option(False, "--drift", help="Synthetic orders from a shifted population.")


def sample(help: str) -> Any:
    """``--sample N``: rows per side of a drift report."""
    return typer.Option(None, "--sample", help=help, show_default=False)


def upload_s3(help: str) -> Any:
    """``--upload-s3``: the drift report also goes to the S3 bucket."""
    return typer.Option(False, "--upload-s3", help=help)


def alert_webhook(help: str) -> Any:
    """``--alert-webhook URL``: where drift alerts are posted."""
    return typer.Option(None, "--alert-webhook", help=help, show_default=False)


def trials(help: str, *, min: int | None = None) -> Any:
    """``--trials N``: Optuna trials for the XGBoost parameters (0 = defaults)."""
    return typer.Option(0, "--trials", min=min, help=help)


def max_rounds(default: int | None, help: str, *, min: int | None = None) -> Any:
    """``--max-rounds N``: the cap on boosting rounds."""
    return typer.Option(
        default, "--max-rounds", min=min, help=help, show_default=default is not None
    )


def model(help: str) -> Any:
    """``--model/-m URI``: which model to load instead of the champion."""
    return typer.Option(None, "--model", "-m", help=help, show_default=False)


def since(help: str) -> Any:
    """``--since WHEN``: the window of orders a command reads."""
    return typer.Option(None, "--since", help=help, show_default=False)
