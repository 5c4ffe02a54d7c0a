"""``eta train`` as a library: data -> time split -> candidates -> metrics -> MLflow.

The steps are separate functions so another engine (e.g. Dask) can reuse them:
:func:`prepare_orders` and :func:`time_split` work on a pandas frame,
:func:`build_matrices` turns a split into feature matrices with the shared
:mod:`eta_cli.features` code, and :func:`fit_quantile_booster` /
:func:`fit_candidates` only take already-built matrices.

MLflow layout (one experiment): a parent run per ``eta train`` (tag
``eta.run_type=training``) carries the chosen model's test metrics, the tags
(data fingerprint, row counts, split boundaries, git commit), plots, the
reference sample, the test split (for the registration gate) and the model as
one pyfunc model named ``model``. Each candidate is a nested child run
(``eta.run_type=candidate``) and each Optuna trial a nested run
(``eta.run_type=trial``) under the same parent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eta_cli import schema
from eta_cli.config import Settings
from eta_cli.errors import EtaError

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.features import FeatureState
    from eta_cli.model import EtaModel

MIN_TRAIN_ROWS = 200
MIN_EVAL_ROWS = 50
REFERENCE_ROWS = 20_000
TEST_ARTIFACT_ROWS = 100_000
EARLY_STOPPING_ROUNDS = 50
DEFAULT_MAX_ROUNDS = 1500
DEFAULT_SEED = 42
# Checked on 200k synthetic orders: MAE within ~4 % of the noise floor, ~80 % p10-p90 coverage.
XGB_PARAMS: dict[str, Any] = {
    "tree_method": "hist",
    "learning_rate": 0.08,
    "max_depth": 6,
    "min_child_weight": 20,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
}
CANDIDATES = ("median", "upstream_sum", "linear", "xgboost")
MODEL_CANDIDATE = "xgboost"  # the candidate logged as the servable model


class TrainError(EtaError):
    """The data cannot be trained on (missing, empty, wrong columns, too few rows)."""


# --------------------------------------------------------------------------- data


def _read_path(path: str, settings: Settings) -> pd.DataFrame:
    import pandas as pd

    from eta_cli import storage

    lower = path.lower()
    try:
        if storage.is_s3(path):
            filesystem, inner = storage.filesystem_and_path(path, settings)
            return pd.read_parquet(inner, filesystem=filesystem)
        local = Path(path).expanduser()
        if not local.exists():
            raise TrainError(f"--data {path}: no such file or folder")
        if local.is_dir() or lower.endswith((".parquet", ".pq")):
            return pd.read_parquet(local)
        if lower.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(local, low_memory=False)
    except EtaError:
        raise
    except Exception as exc:
        raise TrainError(f"cannot read --data {path}: {type(exc).__name__}: {exc}") from exc
    raise TrainError(
        f"--data {path}: unknown format; allowed: a Parquet file or folder, a CSV file"
    )


def load_orders(
    settings: Settings, data: Any = None, since: str | None = None
) -> tuple[pd.DataFrame, str]:
    """The orders to train on and a description of where they came from.

    ``data`` may be a DataFrame, a path (Parquet file/folder, CSV) or None for the
    ingested dataset (``eta_cli.ingest.read_orders``).
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data, "dataframe"
    if data is not None:
        return _read_path(str(data), settings), str(data)
    from eta_cli.ingest import read_orders

    # read_orders raises a clear EtaError when nothing was ingested yet.
    return read_orders(settings, since=since), f"{settings.effective_data_uri}/orders"


def prepare_orders(frame: pd.DataFrame, settings: Settings, source: str = "data") -> pd.DataFrame:
    """Check columns, coerce types, drop unusable rows, sort by order time.

    The ingested dataset is already clean; this is the guard for ``--data`` files.
    """
    if frame is None or len(frame) == 0:
        raise TrainError(f"no orders in {source}: the dataset is empty")
    has_target = schema.TARGET in frame.columns or schema.DELIVERED_AT in frame.columns
    missing = [c for c in schema.INPUT_COLUMNS if c not in frame.columns]
    if not has_target:
        missing.append(f"{schema.TARGET} (or {schema.DELIVERED_AT})")
    if missing:
        raise TrainError(
            f"{source} lacks column(s) {', '.join(missing)}; expected the cleaned order "
            f"columns: {', '.join(schema.CLEAN_COLUMNS[:-1])}"
        )
    out = clean_orders(frame, settings, source)
    if out.empty:
        raise TrainError(
            f"no usable orders in {source}: every row lacks created_at/store_id or has "
            f"{schema.TARGET} outside {settings.min_duration_s}-{settings.max_duration_s} s"
        )
    out = out.sort_values([schema.CREATED_AT, schema.ORDER_ID], kind="stable")
    return out.reset_index(drop=True)


def clean_orders(frame: pd.DataFrame, settings: Settings, source: str = "data") -> pd.DataFrame:
    """Coerce types, derive the target and drop unusable rows, without sorting.

    Works on any slice of the data (an empty one too), so the Dask engine applies
    it to each partition and both engines train on the same rows.
    """
    import pandas as pd

    out = frame.copy()
    for name in (schema.CREATED_AT, schema.DELIVERED_AT):
        if name in out.columns and not pd.api.types.is_datetime64_any_dtype(out[name]):
            try:
                out[name] = pd.to_datetime(out[name], errors="raise", format="mixed")
            except (ValueError, TypeError) as exc:
                raise TrainError(f"{source}: column {name} is not a timestamp ({exc})") from exc
        if name in out.columns and getattr(out[name].dt, "tz", None) is not None:
            out[name] = out[name].dt.tz_convert("UTC").dt.tz_localize(None)
    if schema.TARGET not in out.columns:
        out[schema.TARGET] = (out[schema.DELIVERED_AT] - out[schema.CREATED_AT]).dt.total_seconds()
    out[schema.TARGET] = pd.to_numeric(out[schema.TARGET], errors="coerce").astype("float64")
    for column in schema.COLUMNS:
        if column.kind in ("int", "float") and column.name in out.columns:
            values = out[column.name]
            if not pd.api.types.is_numeric_dtype(values):
                values = pd.to_numeric(values, errors="coerce")
            out[column.name] = values.astype("Float64")
        elif column.kind == "str" and column.name in out.columns:
            out[column.name] = out[column.name].astype("string")
    if schema.ORDER_ID not in out.columns:
        out[schema.ORDER_ID] = [f"row-{i}" for i in range(len(out))]
    out[schema.ORDER_ID] = out[schema.ORDER_ID].astype("string")
    usable = (
        out[schema.CREATED_AT].notna()
        & out[schema.TARGET].between(settings.min_duration_s, settings.max_duration_s)
        & out["store_id"].notna()
    )
    return out.loc[usable]


def fingerprint(frame: pd.DataFrame) -> str:
    """A short, order-independent-of-index hash of the training data (to compare runs)."""
    import pandas as pd

    columns = [c for c in schema.CLEAN_COLUMNS if c in frame.columns and c != schema.ORDER_DATE]
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


@dataclass
class Split:
    """Time-ordered train / validation / test frames; test holds the most recent orders."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def boundaries(self) -> dict[str, str]:
        def ts(frame: pd.DataFrame, fn: str) -> str:
            return str(getattr(frame[schema.CREATED_AT], fn)())

        return {
            "train_start": ts(self.train, "min"),
            "train_end": ts(self.train, "max"),
            "val_start": ts(self.val, "min"),
            "val_end": ts(self.val, "max"),
            "test_start": ts(self.test, "min"),
            "test_end": ts(self.test, "max"),
        }

    def rows(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def time_split(frame: pd.DataFrame, validation_fraction: float, test_fraction: float) -> Split:
    """Split a time-sorted frame by position: oldest = train, then validation, newest = test."""
    n = len(frame)
    n_test = round(n * test_fraction)
    n_val = round(n * validation_fraction)
    n_train = n - n_val - n_test
    if n_train < MIN_TRAIN_ROWS or n_val < MIN_EVAL_ROWS or n_test < MIN_EVAL_ROWS:
        raise TrainError(
            f"too few orders for a time split: {n} usable orders give train/validation/test "
            f"= {n_train}/{n_val}/{n_test}; need at least {MIN_TRAIN_ROWS} for training and "
            f"{MIN_EVAL_ROWS} each for validation and test"
        )
    return Split(
        train=frame.iloc[:n_train],
        val=frame.iloc[n_train : n_train + n_val],
        test=frame.iloc[n_train + n_val :],
    )


# ------------------------------------------------------------------ features / fits


@dataclass
class Matrices:
    """Feature matrices of a split; what every fit function takes (engine-independent)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    state: FeatureState
    # Raw upstream estimates, for the naive baseline (not model features).
    upstream_train: np.ndarray
    upstream_test: np.ndarray


def upstream_sum(frame: pd.DataFrame) -> np.ndarray:
    from eta_cli.features import as_float

    place = as_float(frame["estimated_order_place_duration"])
    drive = as_float(frame["estimated_store_to_consumer_driving_duration"])
    return place + drive


def build_matrices(split: Split, seed: int = 0) -> Matrices:
    """Features with the shared builder: out-of-fold history for train, full state for the rest."""
    from eta_cli import features

    y_train = split.train[schema.TARGET].to_numpy(dtype=np.float64)
    x_train, state = features.build_training_features(
        features.columns_from_frame(split.train), y_train, seed=seed
    )
    x_val = features.build_features(features.columns_from_frame(split.val), state)
    x_test = features.build_features(features.columns_from_frame(split.test), state)
    return Matrices(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=split.val[schema.TARGET].to_numpy(dtype=np.float64),
        x_test=x_test,
        y_test=split.test[schema.TARGET].to_numpy(dtype=np.float64),
        state=state,
        upstream_train=upstream_sum(split.train),
        upstream_test=upstream_sum(split.test),
    )


def model_quantiles(settings: Settings) -> tuple[float, ...]:
    """The booster's output quantiles: low, median, high and quoted, sorted and unique."""
    levels = {
        round(q, 6)
        for q in (settings.quantile_low, 0.5, settings.quantile_high, settings.quoted_quantile)
    }
    return tuple(sorted(levels))


def output_levels(settings: Settings) -> tuple[float, float, float, float]:
    """Quantile levels of the four prediction columns: p_low, p50, p_high, quoted."""
    return (settings.quantile_low, 0.5, settings.quantile_high, settings.quoted_quantile)


@dataclass
class FitResult:
    booster: Any
    best_iteration: int
    rounds: int
    seconds: float
    val_pinball: float
    params: dict[str, Any]


def booster_params(
    quantiles: Sequence[float], params: Mapping[str, Any] | None = None, seed: int = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """XGBoost parameters of the multi-quantile booster, and their loggable form.

    One definition for every engine (local ``xgb.train`` and ``xgboost.dask``), so
    both fit the same objective with the same settings.
    """
    full = {**XGB_PARAMS, **(params or {})}
    full.update(
        {
            "objective": "reg:quantileerror",
            "quantile_alpha": np.asarray(quantiles, dtype=np.float64),
            "seed": seed,
        }
    )
    logged = {k: v for k, v in full.items() if k not in ("quantile_alpha", "nthread")}
    logged["quantile_alpha"] = ",".join(f"{q:g}" for q in quantiles)
    return full, logged


def fit_quantile_booster(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    quantiles: Sequence[float],
    params: Mapping[str, Any] | None = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    early_stopping_rounds: int = EARLY_STOPPING_ROUNDS,
    seed: int = 0,
    nthread: int | None = None,
) -> FitResult:
    """One multi-quantile XGBoost booster with early stopping on validation pinball loss.

    The returned booster is cut at the best iteration, so every prediction path
    (``inplace_predict`` included) uses exactly the trees that were validated.
    """
    import xgboost as xgb

    from eta_cli.features import FEATURE_NAMES

    full, logged = booster_params(quantiles, params, seed)
    full["nthread"] = nthread or os.cpu_count() or 1
    start = time.perf_counter()
    names = list(FEATURE_NAMES)
    max_bin = int(full.get("max_bin", 256))
    dtrain = xgb.QuantileDMatrix(x_train, y_train, feature_names=names, max_bin=max_bin)
    dval = xgb.QuantileDMatrix(x_val, y_val, ref=dtrain, feature_names=names, max_bin=max_bin)
    history: dict[str, Any] = {}
    booster = xgb.train(
        full,
        dtrain,
        num_boost_round=max(1, int(max_rounds)),
        evals=[(dval, "val")],
        early_stopping_rounds=early_stopping_rounds,
        evals_result=history,
        verbose_eval=False,
    )
    rounds = booster.num_boosted_rounds()
    best = int(getattr(booster, "best_iteration", rounds - 1) or 0)
    if best + 1 < rounds:
        booster = booster[: best + 1]
    seconds = time.perf_counter() - start
    curve = history.get("val", {}).get("quantile") or [float("nan")]
    return FitResult(booster, best + 1, rounds, seconds, float(curve[best]), logged)


@dataclass
class Candidate:
    """One candidate's test predictions (n, 4) and what it is."""

    name: str
    description: str
    test_predictions: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _quantile_offsets(residuals: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    return np.quantile(residuals[~np.isnan(residuals)], levels)


def fit_baselines(m: Matrices, levels: Sequence[float]) -> list[Candidate]:
    """The two naive baselines: the median duration, and the upstream estimates' sum + offset."""
    start = time.perf_counter()
    constant = np.quantile(m.y_train, levels)
    median = Candidate(
        "median",
        "training-set quantiles of the duration, same for every order",
        np.tile(constant, (m.y_test.size, 1)),
        {"p50_s": float(constant[1])},
        time.perf_counter() - start,
    )
    start = time.perf_counter()
    fill = float(np.nanmedian(m.upstream_train)) if np.isfinite(m.upstream_train).any() else 0.0
    train_sum = np.where(np.isnan(m.upstream_train), fill, m.upstream_train)
    test_sum = np.where(np.isnan(m.upstream_test), fill, m.upstream_test)
    offsets = _quantile_offsets(m.y_train - train_sum, levels)
    upstream = Candidate(
        "upstream_sum",
        "sum of the two upstream estimates plus training-set residual quantiles",
        test_sum[:, None] + offsets[None, :],
        {"median_offset_s": float(offsets[1])},
        time.perf_counter() - start,
    )
    return [median, upstream]


def fit_linear(m: Matrices, levels: Sequence[float]) -> Candidate:
    """Ridge on imputed, standardised features; interval from validation residual quantiles."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    pipeline = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        Ridge(alpha=1.0),
    )
    pipeline.fit(m.x_train.astype(np.float64), m.y_train)
    val_pred = pipeline.predict(m.x_val.astype(np.float64))
    offsets = _quantile_offsets(m.y_val - val_pred, levels)
    test_pred = pipeline.predict(m.x_test.astype(np.float64))
    return Candidate(
        "linear",
        "ridge regression on the shared features (median imputation, standardised); "
        "interval from validation residual quantiles",
        np.maximum(test_pred[:, None] + offsets[None, :], 0.0),
        {"alpha": 1.0, "imputer": "median+indicator"},
        time.perf_counter() - start,
    )


MIN_CALIBRATION_ROWS = 200


def calibration_offsets(
    raw_val: np.ndarray, y_val: np.ndarray, quantiles: Sequence[float]
) -> tuple[float, ...]:
    """Shift each non-median quantile so its share of validation actuals below it is its level.

    Boosted quantiles fit the training rows too well and come out slightly too narrow
    on new orders (~78.5 % instead of 80 % p10-p90 coverage); a conformal-style shift
    learned on the validation split fixes that without touching the median.
    """
    if y_val.size < MIN_CALIBRATION_ROWS:
        return tuple(0.0 for _ in quantiles)
    offsets = []
    for j, q in enumerate(quantiles):
        if abs(q - 0.5) < 1e-9:
            offsets.append(0.0)
        else:
            offsets.append(float(np.quantile(y_val - raw_val[:, j], q)))
    return tuple(offsets)


def eta_model_from(
    fit: FitResult,
    state: FeatureState,
    settings: Settings,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
) -> EtaModel:
    """The servable model; with validation data its quantiles are calibrated on it."""
    from eta_cli.model import EtaModel

    quantiles = model_quantiles(settings)
    offsets: tuple[float, ...] = ()
    if x_val is not None and y_val is not None:
        raw = np.asarray(fit.booster.inplace_predict(x_val), dtype=np.float64)
        offsets = calibration_offsets(raw.reshape(x_val.shape[0], -1), y_val, quantiles)
    return EtaModel(
        fit.booster,
        state,
        quantiles,
        low=settings.quantile_low,
        high=settings.quantile_high,
        quoted=settings.quoted_quantile,
        offsets=offsets,
    )


# --------------------------------------------------------------------------- search

TrialCallback = Callable[[int, int, float, float], None]


def search_booster(
    m: Matrices,
    quantiles: Sequence[float],
    trials: int,
    max_rounds: int,
    seed: int,
    on_trial_done: Callable[[int, FitResult], None] | None = None,
    progress: TrialCallback | None = None,
) -> tuple[FitResult, list[FitResult]]:
    """Optuna TPE search on validation pinball loss; the defaults are the first trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fits: list[FitResult] = []
    best: list[FitResult] = []

    def objective(trial: optuna.Trial) -> float:
        params = {
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "max_depth": trial.suggest_int("max_depth", 3, 10),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 200.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        }
        fit = fit_quantile_booster(
            m.x_train, m.y_train, m.x_val, m.y_val, quantiles, params, max_rounds, seed=seed
        )
        fits.append(fit)
        if not best or fit.val_pinball < best[0].val_pinball:
            best[:] = [fit]
        if on_trial_done is not None:
            on_trial_done(trial.number, fit)
        if progress is not None:
            progress(len(fits), trials, fit.val_pinball, best[0].val_pinball)
        return fit.val_pinball

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(
        {
            "learning_rate": XGB_PARAMS["learning_rate"],
            "max_depth": XGB_PARAMS["max_depth"],
            "min_child_weight": float(XGB_PARAMS["min_child_weight"]),
            "subsample": XGB_PARAMS["subsample"],
            "colsample_bytree": XGB_PARAMS["colsample_bytree"],
            "reg_lambda": 1.0,
        }
    )
    study.optimize(objective, n_trials=trials)
    return best[0], fits


# --------------------------------------------------------------------------- result


@dataclass
class CandidateResult:
    name: str
    description: str
    metrics: dict[str, float]
    params: dict[str, Any]
    run_id: str | None
    seconds: float


@dataclass
class TrainResult:
    """What ``eta train`` produced; ``to_dict`` is the ``--json`` output."""

    run_id: str
    experiment_id: str
    experiment_name: str
    model_uri: str
    model_id: str | None
    best_candidate: str
    candidates: list[CandidateResult]
    rows: dict[str, int]
    boundaries: dict[str, str]
    data_source: str
    data_fingerprint: str
    trained_at: str
    timings: dict[str, float]
    trials: int
    model: EtaModel | None = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        return next(c.metrics for c in self.candidates if c.name == MODEL_CANDIDATE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "experiment": self.experiment_name,
            "model_uri": self.model_uri,
            "model_id": self.model_id,
            "best_candidate": self.best_candidate,
            "metrics": self.metrics,
            "candidates": {
                c.name: {
                    "metrics": c.metrics,
                    "params": c.params,
                    "run_id": c.run_id,
                    "seconds": round(c.seconds, 3),
                }
                for c in self.candidates
            },
            "rows": self.rows,
            "split": self.boundaries,
            "data_source": self.data_source,
            "data_fingerprint": self.data_fingerprint,
            "trained_at": self.trained_at,
            "trials": self.trials,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


# --------------------------------------------------------------------------- logging


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _prefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if np.isfinite(v)}


def _log_child(
    client: Any,
    experiment_id: str,
    parent_id: str,
    name: str,
    run_type: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
) -> str:
    """A nested run with params/metrics in one batch (cheap on a remote server)."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={"mlflow.parentRunId": parent_id, "eta.run_type": run_type, **(tags or {})},
    )
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if np.isfinite(v)],
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[RunTag("eta.description", tags.get("eta.description", "") if tags else "")],
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _signature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Order inputs with the types of the model signature (numbers as double, nulls allowed)."""
    out = {}
    for name in schema.INPUT_COLUMNS:
        column = schema.BY_NAME[name]
        if column.kind == "timestamp":
            out[name] = frame[name].astype("datetime64[ns]")
        elif column.kind == "str":
            out[name] = frame[name].astype(object).where(frame[name].notna(), None)
        else:
            out[name] = frame[name].astype("float64")
    import pandas as pd

    return pd.DataFrame(out, index=frame.index)


def model_signature() -> Any:
    """Inputs: the order columns known at order time (nullable ones optional); outputs: ETAs.

    Numeric inputs are typed ``Any``: MLflow's enforcement refuses int64 -> double and
    nullable Int64, yet callers send integers, nulls and floats; the feature builder
    coerces them itself.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from eta_cli.model import OUTPUT_COLUMNS

    inputs = []
    for column in schema.COLUMNS:
        if not column.known_at_order_time:
            continue
        kind = {"timestamp": "datetime", "str": "string"}.get(column.kind, AnyType())
        inputs.append(ColSpec(kind, column.name, required=not column.nullable))
    outputs = [ColSpec("double", name) for name in OUTPUT_COLUMNS]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _plots(m: Matrices, split: Split, predictions: np.ndarray, booster: Any) -> dict[str, Any]:
    """Predicted vs actual, residuals by hour of day, feature importance (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figures = {}
    y = m.y_test
    p50 = predictions[:, 1]
    rng = np.random.default_rng(0)
    idx = rng.choice(y.size, size=min(y.size, 5000), replace=False)

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(y[idx] / 60, p50[idx] / 60, s=4, alpha=0.3)
    top = float(np.quantile(np.concatenate([y, p50]), 0.995) / 60)
    ax.plot([0, top], [0, top], color="black", linewidth=1)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="actual (min)", ylabel="predicted p50 (min)")
    ax.set_title("Test set: predicted vs actual")
    figures["plots/predicted_vs_actual.png"] = fig

    hours = split.test[schema.CREATED_AT].dt.hour.to_numpy()
    residual = (y - p50) / 60
    fig, ax = plt.subplots(figsize=(8, 4))
    present = [h for h in range(24) if (hours == h).sum() > 0]
    ax.boxplot([residual[hours == h] for h in present], positions=present, showfliers=False)
    ax.axhline(0, color="black", linewidth=1)
    ax.set(xlabel="hour of day (UTC)", ylabel="actual - p50 (min)")
    ax.set_title("Test residuals by hour")
    figures["plots/residuals_by_hour.png"] = fig

    gain = booster.get_score(importance_type="total_gain")
    ranked = sorted(gain.items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh([k for k, _ in ranked], [v for _, v in ranked])
    ax.set(xlabel="total gain")
    ax.set_title("XGBoost feature importance")
    fig.tight_layout()
    figures["plots/feature_importance.png"] = fig
    return figures


def _clean_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in schema.CLEAN_COLUMNS if c in frame.columns]


# ----------------------------------------------------------------------------- train


def train(
    settings: Settings,
    data: Any = None,
    trials: int = 0,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    seed: int = DEFAULT_SEED,
    experiment: str | None = None,
    since: str | None = None,
    progress: TrialCallback | None = None,
) -> TrainResult:
    """Train every candidate on a time split, score them on the newest orders, log to MLflow.

    ``data``: a DataFrame or path, else the ingested dataset. ``trials`` > 0 runs an
    Optuna search for the XGBoost parameters (each trial a nested run).
    """
    from eta_cli import tracking

    if trials < 0:
        raise TrainError(f"--trials must be >= 0, got {trials}")
    if max_rounds < 1:
        raise TrainError(f"--max-rounds must be >= 1, got {max_rounds}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    experiment_name = experiment or settings.experiment_name
    # Bad input fails before anything is written to MLflow ...
    tick = time.perf_counter()
    raw, source = load_orders(settings, data, since)
    orders = prepare_orders(raw, settings, source)
    split = time_split(orders, settings.validation_fraction, settings.test_fraction)
    data_fp = fingerprint(orders)
    timings["load_s"] = time.perf_counter() - tick
    # ... and a dead tracking server before minutes of training.
    client = tracking.configure(settings, experiment_name)
    experiment_id = tracking.experiment_id(client, settings, experiment_name)

    tick = time.perf_counter()
    m = build_matrices(split, seed=seed)
    timings["features_s"] = time.perf_counter() - tick
    return fit_and_log(
        settings,
        m,
        split,
        client=client,
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        source=source,
        data_fp=data_fp,
        rows=split.rows(),
        boundaries=split.boundaries(),
        timings=timings,
        started=started,
        trials=trials,
        max_rounds=max_rounds,
        seed=seed,
        progress=progress,
    )


def fit_and_log(
    settings: Settings,
    m: Matrices,
    split: Split,
    *,
    client: Any,
    experiment_id: str,
    experiment_name: str,
    source: str,
    data_fp: str,
    rows: Mapping[str, int],
    boundaries: Mapping[str, str],
    timings: dict[str, float],
    started: float,
    trials: int = 0,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    seed: int = DEFAULT_SEED,
    progress: TrialCallback | None = None,
    fit_booster: Callable[[], FitResult] | None = None,
    extra_tags: Mapping[str, str] | None = None,
) -> TrainResult:
    """Baselines, the XGBoost fit, test metrics and everything logged to MLflow.

    Shared by both engines so a run looks the same whoever built the matrices:
    ``split`` frames feed the plots, the reference sample and the test artifact
    (the Dask engine passes bounded samples of them), ``rows``/``boundaries`` are
    the full split's. ``fit_booster`` replaces the local XGBoost fit (Dask engine).
    """
    import mlflow

    from eta_cli import __version__, registry, tracking
    from eta_cli.model import MODEL_DIR_ARTIFACT, OUTPUT_COLUMNS
    from eta_cli.train import metrics as evaluation

    levels = output_levels(settings)
    quantiles = model_quantiles(settings)
    tick = time.perf_counter()
    candidates = [*fit_baselines(m, levels), fit_linear(m, levels)]
    timings["baselines_s"] = time.perf_counter() - tick

    trained_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rows = dict(rows)
    boundaries = dict(boundaries)
    tags = {
        registry.TAG_RUN_TYPE: registry.RUN_TYPE_TRAINING,
        "eta.version": __version__,
        "eta.data_source": source,
        "eta.data_fingerprint": data_fp,
        "eta.trials": str(trials),
        **{f"eta.rows_{k}": str(v) for k, v in rows.items()},
        **{f"eta.{k}": v for k, v in boundaries.items()},
        **(extra_tags or {}),
    }
    commit = _git_commit()
    if commit:
        tags["eta.git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit

    with (
        tracking.quiet_stdout(),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"train-{trained_at.replace(':', '').replace('+0000', 'Z')}",
            tags=tags,
        ) as run,
    ):
        run_id = run.info.run_id
        fit_seconds = 0.0
        if fit_booster is not None:
            fit = fit_booster()
            fit_seconds = fit.seconds
        elif trials > 0:

            def log_trial(number: int, fit: FitResult) -> None:
                _log_child(
                    client,
                    experiment_id,
                    run_id,
                    f"trial-{number}",
                    "trial",
                    {**fit.params, "best_iteration": fit.best_iteration},
                    {"val_pinball": fit.val_pinball, "fit_seconds": fit.seconds},
                )

            fit, fits = search_booster(
                m, quantiles, trials, max_rounds, seed, on_trial_done=log_trial, progress=progress
            )
            fit_seconds = sum(f.seconds for f in fits)
        else:
            fit = fit_quantile_booster(
                m.x_train, m.y_train, m.x_val, m.y_val, quantiles, None, max_rounds, seed=seed
            )
            fit_seconds = fit.seconds
        timings["xgb_fit_s"] = fit_seconds
        model = eta_model_from(fit, m.state, settings, m.x_val, m.y_val)
        xgb_test = model.predict_matrix(m.x_test)
        candidates.append(
            Candidate(
                MODEL_CANDIDATE,
                "XGBoost multi-quantile booster (reg:quantileerror), early stopping on validation",
                xgb_test,
                {
                    **fit.params,
                    "best_iteration": fit.best_iteration,
                    "max_rounds": max_rounds,
                    "calibration_offsets_s": ",".join(f"{v:.1f}" for v in model.offsets),
                },
                fit.seconds,
            )
        )

        results: list[CandidateResult] = []
        for cand in candidates:
            metrics = evaluation.eta_metrics(m.y_test, cand.test_predictions, levels)
            child = _log_child(
                client,
                experiment_id,
                run_id,
                cand.name,
                "candidate",
                cand.params,
                {**_prefixed(metrics, "test_"), "fit_seconds": cand.seconds},
                {"eta.candidate": cand.name, "eta.description": cand.description},
            )
            results.append(
                CandidateResult(
                    cand.name, cand.description, metrics, cand.params, child, cand.seconds
                )
            )
        best_name = min(results, key=lambda r: r.metrics["mae"]).name
        xgb_metrics = next(r.metrics for r in results if r.name == MODEL_CANDIDATE)

        tick = time.perf_counter()
        mlflow.log_params(
            {
                **{f"xgb_{k}": v for k, v in fit.params.items()},
                "max_rounds": max_rounds,
                "best_iteration": fit.best_iteration,
                "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
                "seed": seed,
                "trials": trials,
                "quantile_low": settings.quantile_low,
                "quantile_high": settings.quantile_high,
                "quoted_quantile": settings.quoted_quantile,
                "validation_fraction": settings.validation_fraction,
                "test_fraction": settings.test_fraction,
                "n_features": m.x_train.shape[1],
            }
        )
        summary = _prefixed(xgb_metrics, "test_")
        summary["val_pinball"] = fit.val_pinball
        for r in results:
            summary.update(_prefixed({"mae": r.metrics["mae"]}, f"{r.name}_test_"))
        mlflow.log_metrics(summary)
        mlflow.set_tags({"eta.best_candidate": best_name, "eta.model_candidate": MODEL_CANDIDATE})

        import matplotlib.pyplot as plt

        for path, fig in _plots(m, split, xgb_test, fit.booster).items():
            mlflow.log_figure(fig, path)
            plt.close(fig)

        model.metadata.update(
            {
                "run_id": run_id,
                "experiment_id": experiment_id,
                "trained_at": trained_at,
                "metrics": summary,
                "data_fingerprint": data_fp,
                "data_source": source,
                "rows": rows,
                "split": boundaries,
                "best_iteration": fit.best_iteration,
                "params": fit.params,
                "eta_version": __version__,
            }
        )
        with tempfile.TemporaryDirectory(prefix="eta-train-") as tmp:
            tmp_path = Path(tmp)
            # Reference sample for drift: training rows + the model's predictions.
            reference = split.train
            if len(reference) > REFERENCE_ROWS:
                reference = reference.sample(REFERENCE_ROWS, random_state=seed).sort_index()
            reference = reference[_clean_columns(reference)].copy()
            predicted = model.predict_frame(reference)
            for name in OUTPUT_COLUMNS:
                reference[name] = predicted[name].to_numpy()
            (tmp_path / "reference").mkdir()
            reference.to_parquet(tmp_path / "reference" / "orders.parquet", index=False)
            mlflow.log_artifact(str(tmp_path / "reference" / "orders.parquet"), "reference")

            # The test split, so `eta register` re-scores champion and candidate on it.
            test = split.test
            if len(test) > TEST_ARTIFACT_ROWS:
                test = test.sample(TEST_ARTIFACT_ROWS, random_state=seed).sort_index()
            (tmp_path / "evaluation").mkdir()
            test[_clean_columns(test)].to_parquet(
                tmp_path / "evaluation" / "test_orders.parquet", index=False
            )
            mlflow.log_artifact(str(tmp_path / "evaluation" / "test_orders.parquet"), "evaluation")

            model_dir = model.save(tmp_path / MODEL_DIR_ARTIFACT)
            example = _signature_frame(split.test.head(5))
            info = _log_pyfunc(model_dir, example)
        mlflow.set_tag(registry.TAG_MODEL_ID, info.model_id or "")
        timings["logging_s"] = time.perf_counter() - tick
        timings["total_s"] = time.perf_counter() - started
        mlflow.log_metrics({f"timing_{k}": v for k, v in timings.items()})

    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        model_uri=f"runs:/{run_id}/{registry.MODEL_ARTIFACT}",
        model_id=info.model_id,
        best_candidate=best_name,
        candidates=results,
        rows=rows,
        boundaries=boundaries,
        data_source=source,
        data_fingerprint=data_fp,
        trained_at=trained_at,
        timings=timings,
        trials=trials,
        model=model,
    )


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("mlflow", "xgboost", "numpy", "pandas", "pyarrow", "scikit-learn"):
        try:
            out.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return out


def _log_pyfunc(model_dir: Path, example: pd.DataFrame) -> Any:
    """The model as one pyfunc (``mlflow models serve`` / ``pyfunc.load_model`` work on it)."""
    import warnings

    import mlflow

    from eta_cli.model import MODEL_DIR_ARTIFACT
    from eta_cli.pyfunc import EtaPyfunc
    from eta_cli.registry import MODEL_ARTIFACT

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=EtaPyfunc(),
            artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
            signature=model_signature(),
            input_example=example,
            pip_requirements=_pip_requirements(),
        )
