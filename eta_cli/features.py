"""The one feature builder, shared by training, batch scoring and the online service.

It works on *columns* (a mapping of column name -> 1-D array), so the same code
serves a 200,000-row training frame and a single JSON order without pandas on the
hot path. Per-store / per-market / per-category history is learned from training
data only (:func:`fit_feature_state`) and travels inside the model as a
:class:`FeatureState`, so serving needs no database and unseen stores fall back to
their market's or the global statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eta_cli import schema

# Smoothing strength of target encodings, in orders: a store with few orders is
# pulled towards its market's statistic instead of trusting a noisy mean.
SMOOTHING = 20.0

FEATURE_NAMES: tuple[str, ...] = (
    "hour_of_day",
    "day_of_week",
    "market_id",
    "order_protocol",
    "category_code",
    "total_items",
    "num_distinct_items",
    "subtotal",
    "min_item_price",
    "max_item_price",
    "price_spread",
    "subtotal_per_item",
    "total_onshift_dashers",
    "total_busy_dashers",
    "total_outstanding_orders",
    "busy_ratio",
    "outstanding_per_onshift",
    "free_dashers",
    "estimated_order_place_duration",
    "estimated_store_to_consumer_driving_duration",
    "estimated_total_duration",
    "store_mean_duration",
    "store_log_orders",
    "market_mean_duration",
    "category_mean_duration",
)

Columns = Mapping[str, Any]


@dataclass(frozen=True)
class FeatureState:
    """Statistics learned from the training split only; JSON-serialisable."""

    global_mean: float
    store_ids: np.ndarray  # sorted int64
    store_means: np.ndarray  # smoothed mean duration per store
    store_counts: np.ndarray
    market_means: dict[int, float] = field(default_factory=dict)
    category_codes: dict[str, int] = field(default_factory=dict)
    category_means: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "global_mean": self.global_mean,
            "store_ids": self.store_ids.tolist(),
            "store_means": self.store_means.tolist(),
            "store_counts": self.store_counts.tolist(),
            "market_means": {str(k): v for k, v in self.market_means.items()},
            "category_codes": self.category_codes,
            "category_means": self.category_means,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureState:
        return cls(
            global_mean=float(data["global_mean"]),
            store_ids=np.asarray(data["store_ids"], dtype=np.int64),
            store_means=np.asarray(data["store_means"], dtype=np.float64),
            store_counts=np.asarray(data["store_counts"], dtype=np.float64),
            market_means={int(k): float(v) for k, v in data["market_means"].items()},
            category_codes={str(k): int(v) for k, v in data["category_codes"].items()},
            category_means={str(k): float(v) for k, v in data["category_means"].items()},
        )


def as_float(values: Any) -> np.ndarray:
    """Any column (numpy, pandas nullable, list with None) as float64 with NaN for missing."""
    if hasattr(values, "to_numpy"):
        try:
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        except TypeError:
            return values.astype("float64").to_numpy()
    array = np.asarray(values)
    if array.dtype == object:
        return np.array([np.nan if v is None else v for v in array], dtype=np.float64)
    return array.astype(np.float64, copy=False)


def as_strings(values: Any) -> list[str | None]:
    """Any column as Python strings with None for missing (categories, ids as text)."""
    if hasattr(values, "to_numpy"):
        values = values.to_numpy(dtype=object, na_value=None)
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def _datetimes(values: Any) -> np.ndarray:
    if hasattr(values, "to_numpy"):
        values = values.to_numpy(dtype="datetime64[s]")
    return np.asarray(values, dtype="datetime64[s]")


def _group_means(
    keys: np.ndarray, target: np.ndarray, prior: np.ndarray | float, smoothing: float = SMOOTHING
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique keys, smoothed means and counts of ``target`` per key."""
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    sums = np.bincount(inverse, weights=target)
    if np.ndim(prior):
        prior_sum = np.bincount(inverse, weights=np.asarray(prior))
        prior_per_key = prior_sum / counts
    else:
        prior_per_key = np.full(unique.shape, float(prior))
    means = (sums + smoothing * prior_per_key) / (counts + smoothing)
    return unique, means, counts


def fit_feature_state(columns: Columns, target: Sequence[float] | np.ndarray) -> FeatureState:
    """Learn per-store, per-market and per-category statistics from training rows."""
    y = np.asarray(target, dtype=np.float64)
    global_mean = float(np.mean(y)) if y.size else 0.0

    market = as_float(columns["market_id"])
    known_market = ~np.isnan(market)
    m_keys, m_means, _ = _group_means(
        market[known_market].astype(np.int64), y[known_market], global_mean
    )
    market_means = {int(k): float(v) for k, v in zip(m_keys, m_means, strict=True)}

    market_prior = np.array(
        [market_means.get(int(m), global_mean) if not np.isnan(m) else global_mean for m in market]
    )
    stores = as_float(columns["store_id"]).astype(np.int64)
    s_keys, s_means, s_counts = _group_means(stores, y, market_prior)

    categories = np.array(
        [c or "" for c in as_strings(columns["store_primary_category"])], dtype=object
    )
    known_cat = categories != ""
    c_keys, c_means, _ = _group_means(categories[known_cat].astype(str), y[known_cat], global_mean)
    return FeatureState(
        global_mean=global_mean,
        store_ids=s_keys.astype(np.int64),
        store_means=s_means,
        store_counts=s_counts,
        market_means=market_means,
        category_codes={str(k): i for i, k in enumerate(c_keys)},
        category_means={str(k): float(v) for k, v in zip(c_keys, c_means, strict=True)},
    )


def state_from_sums(groups: Any) -> FeatureState:
    """The :class:`FeatureState` :func:`fit_feature_state` would learn from the rows
    behind ``groups`` (a pandas frame with columns store, market, category, sum, count;
    -1 / "" missing).

    Same statistics and smoothing, computed from sums and counts instead of rows, so
    an engine that only has per-group partial sums (Dask) learns the same state; kept
    beside :func:`fit_feature_state` so the two cannot drift apart.
    """
    smoothing = SMOOTHING
    n = int(groups["count"].sum())
    global_mean = float(groups["sum"].sum() / n) if n else 0.0

    known_market = groups[groups["market"] >= 0]
    markets = known_market.groupby("market")[["sum", "count"]].sum().sort_index()
    market_values = (markets["sum"] + smoothing * global_mean) / (markets["count"] + smoothing)
    market_means = {int(k): float(v) for k, v in market_values.items()}

    prior = groups["market"].map(market_means).fillna(global_mean).to_numpy(dtype=np.float64)
    per_store = groups.assign(prior=prior * groups["count"].to_numpy(dtype=np.float64))
    stores = per_store.groupby("store")[["sum", "count", "prior"]].sum().sort_index()
    counts = stores["count"].to_numpy(dtype=np.float64)
    store_means = (stores["sum"].to_numpy() + smoothing * stores["prior"].to_numpy() / counts) / (
        counts + smoothing
    )

    known_cat = groups[groups["category"] != ""]
    cats = known_cat.groupby("category")[["sum", "count"]].sum()
    names = sorted(str(c) for c in cats.index)
    cats = cats.loc[names]
    cat_values = (cats["sum"] + smoothing * global_mean) / (cats["count"] + smoothing)
    return FeatureState(
        global_mean=global_mean,
        store_ids=stores.index.to_numpy(dtype=np.int64),
        store_means=np.asarray(store_means, dtype=np.float64),
        store_counts=counts,
        market_means=market_means,
        category_codes={name: i for i, name in enumerate(names)},
        category_means={str(k): float(v) for k, v in cat_values.items()},
    )


def out_of_fold_states(
    columns: Columns, target: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, list[FeatureState]]:
    """Fold assignment and one state per fold fitted on the other folds.

    Training rows must not see their own target through the store statistics, or
    the model learns to trust them more than it should at serving time.
    """
    n = len(target)
    fold = np.random.default_rng(seed).integers(0, folds, size=n)
    states = []
    for k in range(folds):
        mask = fold != k
        subset = {name: _take(values, mask) for name, values in columns.items()}
        states.append(fit_feature_state(subset, np.asarray(target)[mask]))
    return fold, states


def _take(values: Any, mask: np.ndarray) -> Any:
    if hasattr(values, "iloc"):
        return values[mask]
    return np.asarray(values)[mask]


def build_features(columns: Columns, state: FeatureState) -> np.ndarray:
    """Model inputs (float32, one row per order, :data:`FEATURE_NAMES` order).

    Missing values stay NaN (XGBoost routes them); ratios with a zero denominator are NaN.
    """
    created = _datetimes(columns[schema.CREATED_AT])
    days = created.astype("datetime64[D]")
    hour = ((created - days).astype("timedelta64[h]").astype(np.int64)).astype(np.float64)
    day_of_week = ((days.astype(np.int64) + 3) % 7).astype(np.float64)  # Monday = 0

    market = as_float(columns["market_id"])
    protocol = as_float(columns["order_protocol"])
    items = as_float(columns["total_items"])
    distinct = as_float(columns["num_distinct_items"])
    subtotal = as_float(columns["subtotal"])
    min_price = as_float(columns["min_item_price"])
    max_price = as_float(columns["max_item_price"])
    onshift = as_float(columns["total_onshift_dashers"])
    busy = as_float(columns["total_busy_dashers"])
    outstanding = as_float(columns["total_outstanding_orders"])
    place = as_float(columns["estimated_order_place_duration"])
    drive = as_float(columns["estimated_store_to_consumer_driving_duration"])

    with np.errstate(divide="ignore", invalid="ignore"):
        positive_onshift = np.where(onshift > 0, onshift, np.nan)
        busy_ratio = busy / positive_onshift
        outstanding_ratio = outstanding / positive_onshift
        per_item = subtotal / np.where(items > 0, items, np.nan)

    categories = as_strings(columns["store_primary_category"])
    category_code = np.array(
        [state.category_codes.get(c, -1) if c else -1 for c in categories], dtype=np.float64
    )
    category_code[category_code < 0] = np.nan
    category_mean = np.array(
        [state.category_means.get(c, np.nan) if c else np.nan for c in categories], dtype=np.float64
    )

    market_mean = np.array(
        [state.market_means.get(int(m), np.nan) if not np.isnan(m) else np.nan for m in market],
        dtype=np.float64,
    )
    stores = as_float(columns["store_id"])
    store_mean, store_count = _lookup_stores(stores, state)
    # Unseen store: its market's mean (the prior it would have been smoothed towards).
    fallback = np.where(np.isnan(market_mean), state.global_mean, market_mean)
    store_mean = np.where(np.isnan(store_mean), fallback, store_mean)

    matrix = np.column_stack(
        [
            hour,
            day_of_week,
            market,
            protocol,
            category_code,
            items,
            distinct,
            subtotal,
            min_price,
            max_price,
            max_price - min_price,
            per_item,
            onshift,
            busy,
            outstanding,
            busy_ratio,
            outstanding_ratio,
            onshift - busy,
            place,
            drive,
            place + drive,
            store_mean,
            np.log1p(store_count),
            market_mean,
            category_mean,
        ]
    )
    return matrix.astype(np.float32, copy=False)


def _lookup_stores(stores: np.ndarray, state: FeatureState) -> tuple[np.ndarray, np.ndarray]:
    n = stores.shape[0]
    means = np.full(n, np.nan)
    counts = np.zeros(n)
    if state.store_ids.size == 0:
        return means, counts
    known = ~np.isnan(stores)
    keys = stores[known].astype(np.int64)
    pos = np.searchsorted(state.store_ids, keys)
    pos = np.clip(pos, 0, state.store_ids.size - 1)
    hit = state.store_ids[pos] == keys
    idx = np.flatnonzero(known)
    means[idx[hit]] = state.store_means[pos[hit]]
    counts[idx[hit]] = state.store_counts[pos[hit]]
    return means, counts


def build_training_features(
    columns: Columns, target: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, FeatureState]:
    """Features of the training rows with out-of-fold history, and the full-data state.

    The returned state (fitted on all training rows) is what the model carries for
    validation, test and serving.
    """
    n = len(target)
    fold, states = out_of_fold_states(columns, target, folds=folds, seed=seed)
    matrix = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
    for k, state in enumerate(states):
        mask = fold == k
        if mask.any():
            subset = {name: _take(values, mask) for name, values in columns.items()}
            matrix[mask] = build_features(subset, state)
    return matrix, fit_feature_state(columns, target)


def columns_from_frame(frame: Any) -> dict[str, Any]:
    """The input columns of a pandas frame, as the mapping :func:`build_features` takes."""
    return {name: frame[name] for name in schema.INPUT_COLUMNS if name in frame.columns}


def columns_from_records(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Column lists from validated order dicts (``created_at`` already a datetime64/ISO text)."""
    return {name: [record.get(name) for record in records] for name in schema.INPUT_COLUMNS}
