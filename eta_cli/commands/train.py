"""``eta train``: train the candidates on a time split and track everything in MLflow."""

from __future__ import annotations

import typer

from eta_cli import tracking
from eta_cli.commands import options
from eta_cli.commands._common import (
    console,
    print_json,
    progress_display,
    settings_from,
)

HELP = (
    "Train ETA models on a time split (newest orders = test): two naive baselines, a linear "
    "model and a multi-quantile XGBoost model, tracked in MLflow."
)


def train_command(
    ctx: typer.Context,
    data: str | None = typer.Option(
        None,
        "--data",
        help="Orders to train on: a Parquet file or folder, or a CSV file. "
        "Default: the ingested dataset (run `eta ingest` first).",
        show_default=False,
    ),
    since: str | None = options.since("Only orders created on/after this date (ingested dataset)."),
    trials: int = options.trials("Optuna trials for the XGBoost parameters (0 = defaults).", min=0),
    max_rounds: int = options.max_rounds(
        1500, "Most boosting rounds (early stopping picks fewer).", min=1
    ),
    seed: int = options.seed(42, "Seed for folds, sampling, XGBoost and Optuna."),
    experiment: str | None = options.experiment(),
    as_json: bool = options.json_output(),
    engine: options.Engine = options.engine("dask: reads Parquet (local or s3://), xgboost.dask."),
    scheduler: str | None = options.scheduler(),
) -> None:
    """Train, evaluate on the most recent orders, log the runs and the model to MLflow."""
    settings = settings_from(ctx, experiment_name=experiment)
    tracking.quiet_mlflow(settings.debug)
    from eta_cli import train as training

    with progress_display(not as_json) as report:
        result = training.train(
            settings,
            data=data,
            since=since,
            trials=trials,
            max_rounds=max_rounds,
            seed=seed,
            engine=engine,
            scheduler=scheduler,
            progress=report,
        )

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
