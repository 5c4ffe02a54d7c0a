"""``eta train`` as a library: data -> time split -> candidates -> metrics -> MLflow.

One entry point, :func:`train`, for both engines (``engine="local"`` or ``"dask"``).
The stage is split by job:

- :mod:`eta_cli.train.data`: load, clean, time split, fingerprint, feature matrices;
- :mod:`eta_cli.train.fit`: baselines, linear model, quantile booster, Optuna search;
- :mod:`eta_cli.train.metrics`: the test metrics every candidate is scored with;
- :mod:`eta_cli.train.log`: everything MLflow (params, metrics, tags, plots, model);
- :mod:`eta_cli.train.run`: one run (fit + log), where both engines end;
- :mod:`eta_cli.train.dask`: the Dask engine's data path and booster fit.

Long steps report :class:`~eta_cli.progress.Progress` events to ``progress``:
features, each candidate, each boosting round, each Optuna trial, the logging.
"""

from __future__ import annotations

import time
from typing import Any

from eta_cli.config import Settings
from eta_cli.progress import ProgressCallback, report
from eta_cli.train.data import (
    MIN_EVAL_ROWS,
    MIN_TRAIN_ROWS,
    Matrices,
    Split,
    TrainError,
    build_matrices,
    clean_orders,
    fingerprint,
    load_orders,
    prepare_orders,
    time_split,
    upstream_sum,
)
from eta_cli.train.fit import (
    CANDIDATES,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_SEED,
    EARLY_STOPPING_ROUNDS,
    MODEL_CANDIDATE,
    XGB_PARAMS,
    Candidate,
    FitResult,
    booster_params,
    eta_model_from,
    fit_quantile_booster,
    model_quantiles,
    output_levels,
)
from eta_cli.train.log import CandidateResult, TrainingRun, TrainResult
from eta_cli.train.run import fit_and_log

__all__ = [
    "CANDIDATES",
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_SEED",
    "EARLY_STOPPING_ROUNDS",
    "FEATURES_TASK",
    "MIN_EVAL_ROWS",
    "MIN_TRAIN_ROWS",
    "MODEL_CANDIDATE",
    "XGB_PARAMS",
    "Candidate",
    "CandidateResult",
    "FitResult",
    "Matrices",
    "Split",
    "TrainError",
    "TrainResult",
    "TrainingRun",
    "booster_params",
    "build_matrices",
    "check_options",
    "clean_orders",
    "eta_model_from",
    "fingerprint",
    "fit_and_log",
    "fit_quantile_booster",
    "load_orders",
    "model_quantiles",
    "output_levels",
    "prepare_orders",
    "time_split",
    "train",
    "upstream_sum",
]

FEATURES_TASK = "features"


def train(
    settings: Settings,
    *,
    data: Any = None,
    since: str | None = None,
    trials: int = 0,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    seed: int = DEFAULT_SEED,
    experiment: str | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train every candidate on a time split, score them on the newest orders, log to MLflow.

    ``data``: a DataFrame or path, else the ingested dataset (``since`` filters it).
    ``trials`` > 0 runs an Optuna search for the XGBoost parameters (local engine
    only; each trial a nested run). ``engine="dask"`` reads Parquet on the cluster at
    ``scheduler`` (or a local one) and fits with ``xgboost.dask``.
    """
    from eta_cli.dask_engine import engine_client

    check_options(trials, max_rounds, engine, scheduler)
    options = {"data": data, "since": since, "max_rounds": max_rounds, "seed": seed}
    with engine_client(engine, scheduler, progress, settings=settings) as client:
        if client is not None:
            from eta_cli.train.dask import train_on_cluster

            return train_on_cluster(
                settings, client, **options, experiment=experiment, progress=progress
            )
    return train_local(settings, **options, trials=trials, experiment=experiment, progress=progress)


def check_options(
    trials: int, max_rounds: int, engine: str = "local", scheduler: str | None = None
) -> None:
    """Refuse bad options before anything is read or a cluster is started."""
    from eta_cli.dask_engine import check_engine

    if trials < 0:
        raise TrainError(f"--trials must be >= 0, got {trials}")
    if check_engine(engine, scheduler) == "dask" and trials:
        raise TrainError(
            "--trials needs --engine local: the Dask engine trains the default XGBoost "
            "parameters (tune on a sample locally, then train at scale)"
        )
    if max_rounds < 1:
        raise TrainError(f"--max-rounds must be >= 1, got {max_rounds}")


def train_local(
    settings: Settings,
    *,
    data: Any = None,
    since: str | None = None,
    trials: int = 0,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    seed: int = DEFAULT_SEED,
    experiment: str | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """The local engine: the whole split in memory, features and fits in this process."""
    from eta_cli import tracking

    started = time.perf_counter()
    experiment_name = experiment or settings.experiment_name
    # Bad input fails before anything is written to MLflow ...
    raw, source = load_orders(settings, data, since)
    orders = prepare_orders(raw, settings, source)
    split = time_split(orders, settings.validation_fraction, settings.test_fraction)
    data_fp = fingerprint(orders)
    timings = {"load_s": time.perf_counter() - started}
    # ... and a dead tracking server before minutes of training.
    client = tracking.configure(settings, experiment_name)
    run = TrainingRun(
        client=client,
        experiment_id=tracking.experiment_id(client, settings, experiment_name),
        experiment_name=experiment_name,
        source=source,
        data_fingerprint=data_fp,
        rows=split.rows(),
        boundaries=split.boundaries(),
        trials=trials,
        max_rounds=max_rounds,
        seed=seed,
        timings=timings,
        started=started,
    )
    tick = time.perf_counter()
    report(progress, FEATURES_TASK, done=0, total=1, unit="", note=f"{len(orders):,} orders")
    m = build_matrices(split, seed=seed)
    timings["features_s"] = time.perf_counter() - tick
    report(
        progress, FEATURES_TASK, done=1, total=1, message=f"features: {timings['features_s']:.1f} s"
    )
    return fit_and_log(settings, m, split, run, progress=progress)
