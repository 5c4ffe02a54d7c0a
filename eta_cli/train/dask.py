"""``eta train --engine dask``: the local training, with the data on a Dask cluster.

What runs on the workers, partition by partition (a partition is a Parquet file or
a slice of its row groups):

1. read + :func:`eta_cli.train.data.clean_orders` (the local engine's cleaning:
   :mod:`eta_cli.train.dask_read`);
2. per-minute order counts (and min/max ``created_at``), reduced with a Dask
   groupby: the time split's boundaries are the minutes where the cumulative count
   crosses the train / validation / test fractions, so the newest orders are the
   test set as in the local engine;
3. per-fold sums and counts of the duration per store / market / category over
   the training rows (a Dask groupby), from which the driver builds the same
   :class:`~eta_cli.features.FeatureState` as :func:`~eta_cli.features.fit_feature_state`
   (:func:`~eta_cli.features.state_from_sums`) for the full training split, and one
   per fold for out-of-fold encodings (the fold of a row is a hash of its ``order_id``);
4. features with :func:`eta_cli.features.build_features`, then
   ``xgboost.dask.train`` on ``DaskQuantileDMatrix`` with the local engine's
   parameters and early stopping on the validation split.

The driver then fits the baselines and the linear candidate, calibrates the
interval and computes test metrics on bounded random samples of each split (all
rows when a split is small), and logs everything through
:func:`eta_cli.train.run.fit_and_log`, so the run and the pyfunc model look exactly
like the local engine's and ``eta register`` / ``eta serve`` do not change.

The entry point is :func:`eta_cli.train.train` with ``engine="dask"``; it opens
the cluster and calls :func:`train_on_cluster`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from eta_cli import features, schema
from eta_cli.config import Settings
from eta_cli.dask_engine import Tracker, cluster_size, wait_persisted
from eta_cli.progress import ProgressCallback
from eta_cli.train.dask_read import read_orders
from eta_cli.train.data import (
    MIN_EVAL_ROWS,
    MIN_TRAIN_ROWS,
    Matrices,
    Split,
    TrainError,
    upstream_sum,
)
from eta_cli.train.fit import (
    DEFAULT_MAX_ROUNDS,
    DEFAULT_SEED,
    EARLY_STOPPING_ROUNDS,
    FitResult,
    booster_params,
    model_quantiles,
)
from eta_cli.train.log import TrainingRun, TrainResult
from eta_cli.train.run import fit_and_log

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

FOLDS = 5
# Rows brought to the driver per split for baselines, calibration, metrics and plots.
EVAL_ROWS = 500_000
TRAIN_SAMPLE_ROWS = 200_000
_NS_PER_MINUTE = 60_000_000_000
_TRAIN, _VAL, _TEST = 0, 1, 2
_SPLIT_NAMES = ("train", "val", "test")
_LABEL = "_y"


# ------------------------------------------------------------------- split + fingerprint


def _minute_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Orders per minute of ``created_at``, first/last timestamp and two halves of the
    sum of row hashes (an order-independent fingerprint, without uint64 overflow)."""
    import pandas as pd

    created = frame[schema.CREATED_AT].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    columns = [c for c in schema.CLEAN_COLUMNS if c in frame.columns and c != schema.ORDER_DATE]
    hashes = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    summary = pd.DataFrame(
        {
            "minute": created // _NS_PER_MINUTE,
            "count": np.ones(len(frame), np.int64),
            "lo": (hashes & np.uint64(0xFFFFFFFF)).astype(np.int64),
            "hi": (hashes >> np.uint64(32)).astype(np.int64),
            "first": created,
            "last": created,
        }
    )
    return summary.groupby("minute", sort=False).agg(_MINUTE_TOTALS).reset_index()


_SUMMARY_META = dict.fromkeys(("minute", "count", "lo", "hi", "first", "last"), "int64")
_MINUTE_TOTALS = {"count": "sum", "lo": "sum", "hi": "sum", "first": "min", "last": "max"}


@dataclass(frozen=True)
class TimeSplit:
    """Minute boundaries (ns since the epoch) and what each split holds."""

    val_start_ns: int
    test_start_ns: int
    rows: dict[str, int]
    boundaries: dict[str, str]
    fingerprint: str


def time_split_from_minutes(
    minutes: pd.DataFrame, validation_fraction: float, test_fraction: float
) -> TimeSplit:
    """Train / validation / test by time: the newest ``test_fraction`` of orders is the
    test set, the ``validation_fraction`` before it validation, at minute granularity."""
    import pandas as pd

    table = minutes.sort_values("minute").reset_index(drop=True)
    counts = table["count"].to_numpy(dtype=np.int64)
    n = int(counts.sum())
    cumulative = np.cumsum(counts)
    # The first minute whose orders (cumulatively, from the newest) reach the fraction.
    n_test_target = round(n * test_fraction)
    n_val_target = round(n * validation_fraction)
    test_from = int(np.searchsorted(cumulative, n - n_test_target, side="right"))
    val_from = int(np.searchsorted(cumulative, n - n_test_target - n_val_target, side="right"))
    val_from = min(val_from, test_from)
    n_train = int(cumulative[val_from - 1]) if val_from > 0 else 0
    n_before_test = int(cumulative[test_from - 1]) if test_from > 0 else 0
    rows = {"train": n_train, "val": n_before_test - n_train, "test": n - n_before_test}
    if (
        rows["train"] < MIN_TRAIN_ROWS
        or rows["val"] < MIN_EVAL_ROWS
        or rows["test"] < MIN_EVAL_ROWS
    ):
        raise TrainError(
            f"too few orders for a time split: {n} usable orders give train/validation/test "
            f"= {rows['train']}/{rows['val']}/{rows['test']}; need at least {MIN_TRAIN_ROWS} "
            f"for training and {MIN_EVAL_ROWS} each for validation and test"
        )
    minute = table["minute"].to_numpy(dtype=np.int64)
    first = table["first"].to_numpy(dtype=np.int64)
    last = table["last"].to_numpy(dtype=np.int64)

    def stamp(ns: int) -> str:
        return str(pd.Timestamp(int(ns)))

    ranges = {"train": (0, val_from), "val": (val_from, test_from), "test": (test_from, len(table))}
    boundaries = {}
    for name, (lo, hi) in ranges.items():
        boundaries[f"{name}_start"] = stamp(first[lo:hi].min())
        boundaries[f"{name}_end"] = stamp(last[lo:hi].max())
    lo_sum = int(table["lo"].astype(object).sum())
    hi_sum = int(table["hi"].astype(object).sum())
    digest = hashlib.sha256(f"{n}:{lo_sum}:{hi_sum}".encode()).hexdigest()[:16]
    return TimeSplit(
        val_start_ns=int(minute[val_from]) * _NS_PER_MINUTE,
        test_start_ns=int(minute[test_from]) * _NS_PER_MINUTE,
        rows=rows,
        boundaries=boundaries,
        fingerprint=digest,
    )


def _split_codes(frame: pd.DataFrame, split: TimeSplit) -> np.ndarray:
    created = frame[schema.CREATED_AT].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    codes = np.full(len(frame), _TRAIN, np.int8)
    codes[created >= split.val_start_ns] = _VAL
    codes[created >= split.test_start_ns] = _TEST
    return codes


# ------------------------------------------------------------------------- statistics


def fold_of(order_ids: Any, seed: int, folds: int = FOLDS) -> np.ndarray:
    """The out-of-fold group of each order: a hash of its id, so it does not depend on
    how the data is partitioned."""
    return (_hash_ids(order_ids, f"fold{seed}") % np.uint64(folds)).astype(np.int64)


def _hash_ids(order_ids: Any, salt: str) -> np.ndarray:
    import pandas as pd

    key = hashlib.blake2b(salt.encode(), digest_size=8).hexdigest()  # 16 characters
    values = pd.Series(order_ids).astype("string").fillna("").to_numpy(dtype=object)
    return pd.util.hash_array(values, hash_key=key)


def _sampled(order_ids: Any, fraction: float, seed: int, salt: str) -> np.ndarray:
    """A deterministic random subset (independent of partitioning) of about ``fraction``."""
    if fraction >= 1.0:
        return np.ones(len(order_ids), bool)
    scale = np.uint64(1_000_000)
    return (_hash_ids(order_ids, f"{salt}{seed}") % scale) < int(fraction * 1_000_000)


def _group_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """store / market (-1 = missing) / category ("" = missing), as fit_feature_state sees them."""
    import pandas as pd

    market = features.as_float(frame["market_id"])
    category = features.as_strings(frame["store_primary_category"])
    return pd.DataFrame(
        {
            "store": features.as_float(frame["store_id"]).astype(np.int64),
            "market": np.where(np.isnan(market), -1, market).astype(np.int64),
            "category": [c or "" for c in category],
        }
    )


def _fold_sums(frame: pd.DataFrame, split: TimeSplit, seed: int) -> pd.DataFrame:
    """Per (fold, store, market, category): sum and count of the duration, training rows."""
    train = frame.loc[_split_codes(frame, split) == _TRAIN]
    keys = _group_keys(train)
    keys["fold"] = fold_of(train[schema.ORDER_ID], seed)
    keys["sum"] = train[schema.TARGET].to_numpy(dtype=np.float64)
    keys["count"] = np.ones(len(train), np.int64)
    grouped = keys.groupby(["fold", "store", "market", "category"], sort=False)
    return grouped[["sum", "count"]].sum().reset_index()


@dataclass
class States:
    """The full-training-split state and one out-of-fold state per fold."""

    full: features.FeatureState
    folds: list[features.FeatureState]


def states_from_fold_sums(sums: pd.DataFrame, folds: int = FOLDS) -> States:
    keys = ["store", "market", "category"]
    total = sums.groupby(keys)[["sum", "count"]].sum().reset_index()
    per_fold = []
    for k in range(folds):
        rest = sums[sums["fold"] != k].groupby(keys)[["sum", "count"]].sum().reset_index()
        per_fold.append(features.state_from_sums(rest))
    return States(features.state_from_sums(total), per_fold)


# --------------------------------------------------------------------------- features


def split_features(
    frame: pd.DataFrame, which: int, split: TimeSplit, states: States, seed: int
) -> pd.DataFrame:
    """Features (float32, :data:`features.FEATURE_NAMES`) and label of one split's rows.

    Training rows get their fold's out-of-fold state, the others the full state: the
    local engine's :func:`eta_cli.train.build_matrices`, row by row.
    """
    rows = frame.loc[_split_codes(frame, split) == which]
    return _features_of(rows, which, states, seed)


def _features_of(rows: pd.DataFrame, which: int, states: States, seed: int) -> pd.DataFrame:
    """One float32 block: the features, then the label as the last column.

    A single block lets :func:`_features_only` and :func:`_label_only` be views of
    it: the training data is held once in worker memory, not once per column subset.
    """
    import pandas as pd

    width = len(features.FEATURE_NAMES)
    matrix = np.empty((len(rows), width + 1), np.float32)
    if which == _TRAIN:
        fold = fold_of(rows[schema.ORDER_ID], seed)
        for k, state in enumerate(states.folds):
            mask = fold == k
            if mask.any():
                subset = rows.loc[mask]
                matrix[mask, :width] = features.build_features(
                    features.columns_from_frame(subset), state
                )
    else:
        matrix[:, :width] = features.build_features(features.columns_from_frame(rows), states.full)
    matrix[:, width] = rows[schema.TARGET].to_numpy(dtype=np.float64)  # whole seconds: exact
    return pd.DataFrame(matrix, columns=[*features.FEATURE_NAMES, _LABEL], copy=False)


def _features_only(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[:, :-1]


def _label_only(frame: pd.DataFrame) -> pd.Series:
    return frame.iloc[:, -1]


def _features_meta() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {name: pd.Series([], dtype="float32") for name in (*features.FEATURE_NAMES, _LABEL)}
    )


def _sample_rows(
    frame: pd.DataFrame, split: TimeSplit, fractions: Sequence[float], seed: int
) -> pd.DataFrame:
    """The evaluation samples of every split in one pass, tagged with ``_split``."""
    codes = _split_codes(frame, split)
    keep = np.zeros(len(frame), bool)
    for which, fraction in enumerate(fractions):
        mask = codes == which
        if mask.any():
            keep[mask] = _sampled(frame.loc[mask, schema.ORDER_ID], fraction, seed, "sample")
    out = frame.loc[keep].copy()
    out["_split"] = codes[keep]
    return out


# ------------------------------------------------------------------------------ train


def _fit_dask(
    client: Client,
    persisted: dict[str, Any],
    quantiles: Sequence[float],
    max_rounds: int,
    seed: int,
) -> FitResult:
    """``xgboost.dask.train`` with the local engine's parameters, cut at the best round.

    ``persisted`` holds the training and validation feature frames; they are dropped
    from the cluster as soon as the booster exists.
    """
    from xgboost import dask as dxgb

    names = list(features.FEATURE_NAMES)
    full, logged = booster_params(quantiles, None, seed)
    start = time.perf_counter()
    (x_train, y_train), (x_val, y_val) = persisted["train"], persisted["val"]
    dtrain = dxgb.DaskQuantileDMatrix(client, x_train, y_train, feature_names=names, max_bin=256)
    dval = dxgb.DaskQuantileDMatrix(
        client, x_val, y_val, ref=dtrain, feature_names=names, max_bin=256
    )
    output = dxgb.train(
        client,
        full,
        dtrain,
        num_boost_round=max(1, int(max_rounds)),
        evals=[(dval, "val")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=False,
    )
    del dtrain, dval, x_train, y_train, x_val, y_val
    persisted.clear()
    booster = output["booster"]
    history = output.get("history", {})
    rounds = booster.num_boosted_rounds()
    best = int(getattr(booster, "best_iteration", rounds - 1) or 0)
    if best + 1 < rounds:
        booster = booster[: best + 1]
    curve = history.get("val", {}).get("quantile") or [float("nan")]
    return FitResult(
        booster, best + 1, rounds, time.perf_counter() - start, float(curve[best]), logged
    )


def train_on_cluster(
    settings: Settings,
    client: Client,
    *,
    data: str | None = None,
    since: str | None = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    seed: int = DEFAULT_SEED,
    experiment: str | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train on the cluster behind ``client``; the run is logged like the local engine's.

    Reached through :func:`eta_cli.train.train` with ``engine="dask"``, which checks
    the options and opens the cluster.
    """
    from eta_cli import tracking

    tracker = Tracker(progress)
    started = time.perf_counter()
    experiment_name = experiment or settings.experiment_name
    # Bad input fails before anything is written to MLflow ...
    orders, source = read_orders(settings, data, since)
    split = _time_split(client, tracker, orders, settings, source)
    timings = {"load_s": time.perf_counter() - started}
    # ... and a dead tracking server before minutes of training.
    mlflow_client = tracking.configure(settings, experiment_name)
    experiment_id = tracking.experiment_id(mlflow_client, settings, experiment_name)

    tick = time.perf_counter()
    states = _feature_states(client, tracker, orders, split, seed)
    persisted = _persist_features(client, tracker, orders, split, states, seed)
    frames = _evaluation_frames(client, tracker, orders, split, seed)
    m = _sample_matrices(frames, states, seed)
    timings["features_s"] = time.perf_counter() - tick
    quantiles = model_quantiles(settings)

    def fit() -> FitResult:
        with tracker.step(f"xgboost.dask: up to {max_rounds} rounds"):
            return _fit_dask(client, persisted, quantiles, max_rounds, seed)

    run = TrainingRun(
        client=mlflow_client,
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        source=source,
        data_fingerprint=split.fingerprint,
        rows=split.rows,
        boundaries=split.boundaries,
        max_rounds=max_rounds,
        seed=seed,
        extra_tags=_engine_tags(client, orders.npartitions, frames),
        timings=timings,
        started=started,
    )
    try:
        return fit_and_log(settings, m, Split(*frames), run, fit_booster=fit, progress=progress)
    finally:
        persisted.clear()


def _time_split(
    client: Client, tracker: Tracker, orders: Any, settings: Settings, source: str
) -> TimeSplit:
    """Orders per minute, reduced on the cluster, give the time split (and the fingerprint)."""
    summary = client.persist(orders.map_partitions(_minute_summary, meta=_SUMMARY_META))
    wait_persisted(tracker, summary, "reading orders")
    minutes = client.compute(summary.groupby("minute").agg(_MINUTE_TOTALS)).result()
    del summary
    if minutes.empty:
        raise TrainError(
            f"no usable orders in {source}: every row lacks created_at/store_id or has "
            f"{schema.TARGET} outside {settings.min_duration_s}-{settings.max_duration_s} s"
        )
    return time_split_from_minutes(
        minutes.reset_index(), settings.validation_fraction, settings.test_fraction
    )


_FOLD_SUMS_META = {
    "fold": "int64",
    "store": "int64",
    "market": "int64",
    "category": "object",
    "sum": "float64",
    "count": "int64",
}


def _feature_states(
    client: Client, tracker: Tracker, orders: Any, split: TimeSplit, seed: int
) -> States:
    """Per-fold duration sums over the training rows, reduced into the feature states."""
    partial = client.persist(orders.map_partitions(_fold_sums, split, seed, meta=_FOLD_SUMS_META))
    wait_persisted(tracker, partial, "store statistics")
    sums = client.compute(
        partial.groupby(["fold", "store", "market", "category"])[["sum", "count"]].sum()
    ).result()
    del partial
    return states_from_fold_sums(sums.reset_index())


def _persist_features(
    client: Client, tracker: Tracker, orders: Any, split: TimeSplit, states: States, seed: int
) -> dict[str, Any]:
    """The training and validation features and labels, persisted on the workers.

    Features and label come from one task per partition: both are views of the same
    block, so each order's features are held once.
    """
    import dask

    shared = dask.delayed(states, pure=True)
    persisted: dict[str, Any] = {}
    for which, name in ((_TRAIN, "train"), (_VAL, "val")):
        block = orders.map_partitions(
            split_features, which, split, shared, seed, meta=_features_meta()
        )
        x = block.map_partitions(_features_only, meta=_features_meta().iloc[:, :-1])
        y = block.map_partitions(_label_only, meta=_features_meta().iloc[:, -1])
        persisted[name] = client.persist([x, y])
        wait_persisted(tracker, persisted[name][0], f"{_SPLIT_NAMES[which]} features")
    return persisted


def _evaluation_frames(
    client: Client, tracker: Tracker, orders: Any, split: TimeSplit, seed: int
) -> list[pd.DataFrame]:
    """Bounded random samples of train / validation / test, brought to the driver, time-sorted."""
    import pandas as pd

    fractions = [
        min(1.0, TRAIN_SAMPLE_ROWS / max(split.rows["train"], 1)),
        min(1.0, EVAL_ROWS / max(split.rows["val"], 1)),
        min(1.0, EVAL_ROWS / max(split.rows["test"], 1)),
    ]
    sample_meta = orders._meta.assign(_split=pd.Series([], dtype="int8"))
    sample_parts = client.compute(
        orders.map_partitions(_sample_rows, split, fractions, seed, meta=sample_meta).to_delayed()
    )
    pieces = tracker.wait(sample_parts, "evaluation samples")
    samples = pd.concat(pieces, ignore_index=True)
    del pieces
    samples = samples.sort_values([schema.CREATED_AT, schema.ORDER_ID], kind="stable")
    return [
        samples.loc[samples["_split"] == which].drop(columns="_split").reset_index(drop=True)
        for which in (_TRAIN, _VAL, _TEST)
    ]


def _sample_matrices(frames: Sequence[pd.DataFrame], states: States, seed: int) -> Matrices:
    """Matrices of the samples, for baselines, calibration, metrics and plots on the driver."""
    built = [_features_of(frame, which, states, seed) for which, frame in enumerate(frames)]
    names = list(features.FEATURE_NAMES)
    return Matrices(
        x_train=built[0][names].to_numpy(),
        y_train=frames[0][schema.TARGET].to_numpy(dtype=np.float64),
        x_val=built[1][names].to_numpy(),
        y_val=frames[1][schema.TARGET].to_numpy(dtype=np.float64),
        x_test=built[2][names].to_numpy(),
        y_test=frames[2][schema.TARGET].to_numpy(dtype=np.float64),
        state=states.full,
        upstream_train=upstream_sum(frames[0]),
        upstream_test=upstream_sum(frames[2]),
    )


def _engine_tags(client: Client, partitions: int, frames: Sequence[pd.DataFrame]) -> dict[str, str]:
    """Tags saying the run was trained on a cluster, and how much of it was sampled."""
    workers, _, _ = cluster_size(client)
    return {
        "eta.engine": "dask",
        "eta.dask_workers": str(workers),
        "eta.partitions": str(partitions),
        **{f"eta.eval_rows_{n}": str(len(f)) for n, f in zip(_SPLIT_NAMES, frames, strict=True)},
    }
