"""Options shared by several commands, defined once (as ``mlflow/cli_args.py`` does).

Each function returns the ``typer.Option`` (or ``typer.Argument``) to use as a parameter's
default, so the flag's name, type, default and base help text live here and nowhere else.
A command may append what the option means for it (``engine("dask: one task per file.")``)
or replace a help text whose wording is its own, but never re-declares the flag.
"""

from __future__ import annotations

from typing import Any, Literal

import typer
from typer.core import TyperCommand, TyperGroup

# Closed sets of values as Literal types: Typer turns them into choices, so `--help` lists
# them, a wrong value is refused with the allowed ones, and shell completion offers them.
Engine = Literal["local", "dask"]
OutputFormat = Literal["auto", "table", "json"]

ENGINE_HELP = "local: this process; dask: a Dask cluster (see --scheduler)."
SCHEDULER_HELP = (
    "Dask scheduler address (e.g. tcp://scheduler:8786) for --engine dask. Default: "
    "$DASK_SCHEDULER_ADDRESS, else a local cluster sized to this machine "
    "($ETA_DASK_WORKERS, $ETA_DASK_THREADS_PER_WORKER, $ETA_DASK_MEMORY_LIMIT adjust it)."
)


def _plain_flags(params: list[Any]) -> list[Any]:
    """Give every on/off flag an empty metavar: Typer's Rich help would otherwise show
    ``--json <bool>``, which reads as if the flag took a value (``--json true`` fails)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class EtaCommand(TyperCommand):
    """A command whose flags (``--json``, ``--force``, ``--help``) show as plain flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters Typer would give, with flags displayed without a type."""
        return _plain_flags(super().get_params(ctx))


class EtaGroup(TyperGroup):
    """A command group (``eta``, ``eta config``) with the same plain flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters Typer would give, with flags displayed without a type."""
        return _plain_flags(super().get_params(ctx))


def json_output(help: str = "Print one JSON object.") -> Any:
    """``--json``: one JSON object on stdout instead of the table (for scripts)."""
    return typer.Option(False, "--json", help=help)


def engine(detail: str) -> Any:
    """``--engine local|dask`` (annotate the parameter :data:`Engine`, so the values are
    completed and checked); ``detail`` says what the Dask engine does for this command."""
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
    """``--drift``: the synthetic orders come from a shifted population, arriving later."""
    return typer.Option(
        False,
        "--drift",
        help="Synthetic orders from a shifted population, starting the day after the "
        "newest order in the lake.",
    )


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
