"""``eta train``: train the candidates on a time split and track everything in MLflow."""

from __future__ import annotations

from typing import Optional

import typer

from eta_cli import dask_engine
from eta_cli.commands._common import (
    console,
    err_console,
    print_json,
    progress_display,
    settings_from,
)

HELP = (
    "Train ETA models on a time split (newest orders = test): two naive baselines, a linear "
    "model and a multi-quantile XGBoost model, tracked in MLflow."
)


def quiet_mlflow() -> None:
    """MLflow's INFO logs, progress bars and warnings are noise here (ETA_DEBUG=1 keeps them)."""
    import logging
    import os
    import warnings

    if os.environ.get("ETA_DEBUG"):
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read when mlflow is imported
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def train_command(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(  # noqa: UP045 - Typer needs Optional here
        None,
        "--data",
        help="Orders to train on: a Parquet file or folder, or a CSV file. "
        "Default: the ingested dataset (run `eta ingest` first).",
        show_default=False,
    ),
    since: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--since",
        help="Only orders created on/after this date (ingested dataset).",
        show_default=False,
    ),
    trials: int = typer.Option(
        0, "--trials", min=0, help="Optuna trials for the XGBoost parameters (0 = defaults)."
    ),
    max_rounds: int = typer.Option(
        1500, "--max-rounds", min=1, help="Most boosting rounds (early stopping picks fewer)."
    ),
    seed: int = typer.Option(42, "--seed", help="Seed for folds, sampling, XGBoost and Optuna."),
    experiment: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--experiment",
        help="MLflow experiment. Default: $ETA_EXPERIMENT_NAME or eta.",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    engine: str = typer.Option(
        "local",
        "--engine",
        help=dask_engine.ENGINE_HELP + " dask: reads Parquet (local or s3://), xgboost.dask.",
    ),
    scheduler: Optional[str] = typer.Option(  # noqa: UP045
        None, "--scheduler", help=dask_engine.SCHEDULER_HELP, show_default=False
    ),
) -> None:
    """Train, evaluate on the most recent orders, log the runs and the model to MLflow."""
    from eta_cli import train as training

    quiet_mlflow()
    settings = settings_from(ctx, experiment_name=experiment)
    if dask_engine.check_engine(engine, scheduler) == "dask":
        from eta_cli.train import dask as dask_train

        dask_train.check_options(trials, max_rounds)
        with (
            progress_display(not as_json) as report,
            dask_engine.engine_client(engine, scheduler, report) as client,
        ):
            result = dask_train.train(
                settings,
                client,
                data=data,
                trials=trials,
                max_rounds=max_rounds,
                seed=seed,
                since=since,
                progress=report,
            )
        if as_json:
            print_json(result.to_dict())
        else:
            _print_result(result)
        return
    progress_cb = None
    bar = None
    if trials > 0:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best val pinball {task.fields[best]}"),
            console=err_console,
            transient=as_json,
        )
        task = bar.add_task("trials", total=trials, best="-")

        def progress_cb(done: int, total: int, score: float, best: float) -> None:
            bar.update(task, completed=done, best=f"{best:.1f} s")

    try:
        if bar is not None:
            bar.start()
        result = training.train(
            settings,
            data=data,
            trials=trials,
            max_rounds=max_rounds,
            seed=seed,
            since=since,
            progress=progress_cb,
        )
    finally:
        if bar is not None:
            bar.stop()

    if as_json:
        print_json(result.to_dict())
        return
    _print_result(result)


def _print_result(result) -> None:  # TrainResult
    from rich.table import Table

    from eta_cli.train import MODEL_CANDIDATE

    table = Table(
        title=f"Candidates on the test set ({result.rows['test']:,} newest orders)",
        caption="* logged as the model; seconds; late = actual after the quoted ETA",
    )
    headers = ("candidate", "MAE", "RMSE", "R²", "±10min", "p10-p90", "late", "pinball", "fit")
    for column in headers:
        first = column == "candidate"
        table.add_column(column, justify="left" if first else "right", no_wrap=first)
    for cand in result.candidates:
        m = cand.metrics
        label = cand.name + (" *" if cand.name == MODEL_CANDIDATE else "")
        if cand.name == result.best_candidate:
            label = f"[bold green]{label}[/]"
        table.add_row(
            label,
            f"{m['mae']:.0f}",
            f"{m['rmse']:.0f}",
            f"{m['r2']:.3f}",
            f"{100 * m['within_10min']:.1f}%",
            f"{100 * m['coverage']:.1f}%",
            f"{100 * m['lateness_rate']:.1f}%",
            f"{m['pinball']:.1f}",
            f"{cand.seconds:.1f}",
        )
    console.print(table)
    split = result.boundaries
    console.print(
        f"rows train/val/test: {result.rows['train']:,} / {result.rows['val']:,} / "
        f"{result.rows['test']:,}; test orders {split['test_start']} .. {split['test_end']}"
    )
    console.print(f"data: {result.data_source} (fingerprint {result.data_fingerprint})")
    console.print(
        f"run {result.run_id} in experiment {result.experiment_name!r}; model {result.model_uri}"
    )
    console.print(
        f"time: {result.timings['total_s']:.1f} s (XGBoost fit {result.timings['xgb_fit_s']:.1f} s)"
        "; next: `eta register`"
    )
