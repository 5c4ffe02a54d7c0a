"""Synthetic DoorDash-like orders, for demos, tests and benchmarks.

The real file cannot be downloaded here, so we generate orders with its schema,
its distributions and its quirks (see ``shared/data/orders_profile.md``).
Durations come from a believable process: store preparation speed varying by
store, congestion (outstanding orders per onshift dasher), driving time, time of
day and market, plus heavy-tailed noise. :func:`expected_duration` exposes the
noise-free part, so a benchmark can compare a model with the data's noise floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eta_cli import schema

N_STORES = 6_700
DRIFT_MARKET = 7
# Drifted deliveries take this much longer than their features say (a concept shift).
DRIFT_SLOWDOWN = 1.25
START = pd.Timestamp("2015-01-21")
DAYS = 28

MARKET_SHARES = {4: 0.28, 2: 0.24, 1: 0.19, 3: 0.13, 5: 0.10, 6: 0.06}
# Market-specific slowness (traffic, distances).
MARKET_FACTOR = {1: 1.00, 2: 0.93, 3: 1.08, 4: 0.97, 5: 1.12, 6: 1.04, DRIFT_MARKET: 1.25}
# Dasher supply per market (bigger markets have more dashers).
MARKET_SUPPLY = {1: 0.9, 2: 1.1, 3: 0.7, 4: 1.3, 5: 0.6, 6: 0.5, DRIFT_MARKET: 0.5}
PROTOCOL_SHARES = np.array([0.29, 0.13, 0.29, 0.11, 0.16, 0.015, 0.005])
# estimated_order_place_duration takes a few discrete values, by protocol.
PLACE_DURATION = np.array([446, 251, 251, 251, 251, 446, 446])

TOP_CATEGORIES = [
    ("american", 0.10),
    ("pizza", 0.07),
    ("chinese", 0.07),
    ("burger", 0.07),
    ("mexican", 0.055),
    ("indian", 0.04),
    ("dessert", 0.035),
    ("japanese", 0.035),
    ("italian", 0.03),
    ("fast", 0.03),
    ("sandwich", 0.03),
    ("thai", 0.028),
    ("mediterranean", 0.025),
    ("vietnamese", 0.02),
    ("sushi", 0.02),
    ("breakfast", 0.018),
    ("salad", 0.017),
    ("greek", 0.015),
    ("korean", 0.013),
    ("cafe", 0.012),
]
# Category effect on preparation time (pizza and indian are slow, fast food quick).
CATEGORY_PREP = {
    "pizza": 1.15,
    "indian": 1.2,
    "fast": 0.7,
    "burger": 0.85,
    "sandwich": 0.8,
    "dessert": 0.75,
    "cafe": 0.75,
    "sushi": 1.1,
    "breakfast": 0.9,
}
# Orders by hour of day, UTC: US dinner 01-04, lunch 19-21, almost none 07-14.
HOUR_WEIGHTS = np.array(
    [
        6.0,
        9.0,
        10.0,
        9.0,
        6.0,
        3.0,
        1.2,
        0.3,
        0.05,
        0.02,
        0.02,
        0.02,
        0.05,
        0.1,
        0.4,
        1.0,
        1.8,
        2.5,
        3.5,
        4.5,
        4.2,
        3.5,
        3.8,
        4.5,
    ]
)


@dataclass(frozen=True)
class World:
    """Hidden store properties that drive durations; fixed by the seed."""

    store_id: np.ndarray
    market_id: np.ndarray
    category: np.ndarray  # object array, "" where the store has no category
    prep_seconds: np.ndarray
    popularity: np.ndarray


def _categories(rng: np.random.Generator, n: int) -> np.ndarray:
    names = [c for c, _ in TOP_CATEGORIES]
    shares = [s for _, s in TOP_CATEGORIES]
    tail = [f"cuisine_{i:02d}" for i in range(54)]  # ~74 distinct values in all
    tail_share = (1.0 - sum(shares)) / len(tail)
    probs = np.array(shares + [tail_share] * len(tail))
    return rng.choice(np.array(names + tail, dtype=object), size=n, p=probs / probs.sum())


def make_world(seed: int) -> World:
    """The stores of a synthetic city network; the same seed gives the same world."""
    rng = np.random.default_rng([seed, 7919])
    markets = np.array(list(MARKET_SHARES))
    market = rng.choice(markets, size=N_STORES, p=np.array(list(MARKET_SHARES.values())))
    # A block of extra stores only used by drifted batches (a newly opened market).
    n_new = 300
    market = np.concatenate([market, np.full(n_new, DRIFT_MARKET)])
    n = N_STORES + n_new
    category = _categories(rng, n)
    factor = np.array([CATEGORY_PREP.get(c, 1.0) for c in category])
    # Stores differ a lot in how fast they prepare food.
    prep = 720.0 * factor * rng.lognormal(0.0, 0.35, size=n)
    # Heavy-tailed popularity, capped: uncapped, one store could take ~20 % of all
    # orders and skew market and category shares far from the real file (whose
    # busiest store has ~0.5 % of orders).
    popularity = np.minimum(rng.pareto(1.2, size=n), 100.0) + 0.05
    missing_category = rng.random(n) < 0.045
    category = np.where(missing_category, "", category).astype(object)
    return World(np.arange(1, n + 1), market, category, prep, popularity)


def _hour_effect(hour: np.ndarray) -> np.ndarray:
    """Kitchens are slower at meal peaks."""
    peak = HOUR_WEIGHTS / HOUR_WEIGHTS.max()
    return 1.0 + 0.25 * peak[hour]


def _congestion_delay(outstanding: np.ndarray, onshift: np.ndarray) -> np.ndarray:
    """Waiting for a free dasher grows fast once orders outnumber dashers."""
    ratio = outstanding / np.maximum(onshift, 1.0)
    return 180.0 + 900.0 * np.clip(ratio - 0.7, 0, None) ** 1.6


def expected_duration(orders: pd.DataFrame, seed: int) -> np.ndarray:
    """Noise-free expected delivery duration (seconds) of synthetic orders.

    Uses the hidden world of ``seed`` (store preparation speeds) and the true,
    pre-corruption inputs stored in the frame's hidden columns when present, so it
    is exact even for rows whose visible features were blanked by messiness.
    """
    world = make_world(seed)
    store_index = orders["store_id"].astype("int64").to_numpy() - 1
    prep = world.prep_seconds[store_index]
    market = world.market_id[store_index]
    created = pd.to_datetime(orders["created_at"])
    hour = created.dt.hour.to_numpy()
    items = orders["total_items"].astype("float64").to_numpy()
    onshift = _true(orders, "total_onshift_dashers")
    outstanding = _true(orders, "total_outstanding_orders")
    driving = _true(orders, "estimated_store_to_consumer_driving_duration")
    place = _true(orders, "estimated_order_place_duration")
    market_factor = np.vectorize(MARKET_FACTOR.get, otypes=[float])(market)
    prep_total = prep * (1.0 + 0.035 * np.minimum(items, 30)) * _hour_effect(hour)
    wait = _congestion_delay(outstanding, onshift)
    drive = driving * 1.35 * market_factor
    return 200.0 + place + prep_total + wait + drive


def _true(orders: pd.DataFrame, column: str) -> np.ndarray:
    hidden = f"_true_{column}"
    source = orders[hidden] if hidden in orders.columns else orders[column]
    return source.astype("float64").to_numpy()


def generate_orders(
    n: int,
    seed: int = 0,
    *,
    drift: bool = False,
    messy: bool = True,
    start: pd.Timestamp | str = START,
    days: int = DAYS,
    keep_truth: bool = False,
) -> pd.DataFrame:
    """``n`` raw orders with the real file's columns, ordered by store like the real file.

    ``drift`` shifts the population (more congestion, a new market, bigger baskets) and
    slows every delivery by :data:`DRIFT_SLOWDOWN` beyond what those features explain,
    so a model trained before the shift is visibly wrong on drifted orders and one
    retrained on them is not. ``start``: the first order day (``eta ingest --drift``
    passes the day after the lake's newest order: the shifted orders arrive later).
    ``messy`` adds the real file's quirks: missing values, negative counts, absurd
    durations, orders with no delivery time. ``keep_truth`` keeps hidden ``_true_*``
    columns that :func:`expected_duration` uses.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    world = make_world(seed)
    rng = np.random.default_rng([seed, 1 if drift else 0, n])
    start = pd.Timestamp(start)

    eligible = world.market_id != DRIFT_MARKET
    weights = world.popularity * eligible
    if drift:
        weights = world.popularity * np.where(eligible, 1.0, 3.0)
    store_index = rng.choice(world.store_id.size, size=n, p=weights / weights.sum())
    market = world.market_id[store_index]

    day = rng.integers(0, days, size=n)
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    seconds = rng.integers(0, 3600, size=n)
    created = start + pd.to_timedelta(day * 86_400 + hour * 3600 + seconds, unit="s")

    protocol = rng.choice(np.arange(1, 8), size=n, p=PROTOCOL_SHARES / PROTOCOL_SHARES.sum())
    place = PLACE_DURATION[protocol - 1].astype(float)
    odd_place = rng.random(n) < 0.03
    place[odd_place] = rng.choice([0, 313, 600, 2715], size=odd_place.sum())

    frame = pd.DataFrame(
        {
            "market_id": market,
            "created_at": created,
            "store_id": world.store_id[store_index],
            "store_primary_category": world.category[store_index],
            "order_protocol": protocol,
            **_basket(rng, n, drift),
            **_dashers(rng, market, hour, drift),
            "estimated_order_place_duration": place,
        }
    )
    frame["estimated_store_to_consumer_driving_duration"] = np.round(
        rng.lognormal(np.log(545), 0.33, size=n)
    ).clip(30, 2_500)
    _add_delivery_times(frame, rng, seed, drift)

    if messy:
        _add_quirks(frame, rng)
    frame = frame.sort_values(["store_id", "created_at"], kind="stable").reset_index(drop=True)
    frame["store_primary_category"] = frame["store_primary_category"].replace("", None)
    ordered = [*schema.COLUMN_NAMES]
    if keep_truth:
        ordered += [c for c in frame.columns if c.startswith("_true_")]
    return _to_file_types(frame[ordered])


def _basket(rng: np.random.Generator, n: int, drift: bool) -> dict[str, np.ndarray]:
    """Items, distinct items, prices and subtotal of ``n`` baskets (bigger when drifted)."""
    basket_boost = 1.6 if drift else 1.0
    items = 1 + rng.negative_binomial(2.0, 0.45 / basket_boost, size=n)
    items = np.minimum(items, 400)
    distinct = np.minimum(items, 1 + rng.binomial(np.maximum(items - 1, 0), 0.45))
    min_price = np.round(rng.lognormal(np.log(500), 0.55, size=n)).astype(int)
    spread = rng.lognormal(np.log(2.3), 0.45, size=n)
    max_price = np.where(distinct > 1, np.round(min_price * spread), min_price).astype(int)
    subtotal = np.round(
        (min_price + max_price) / 2 * items * rng.lognormal(0, 0.15, size=n)
    ).astype(int)
    return {
        "total_items": items,
        "subtotal": subtotal,
        "num_distinct_items": distinct,
        "min_item_price": min_price,
        "max_item_price": max_price,
    }


def _dashers(
    rng: np.random.Generator, market: np.ndarray, hour: np.ndarray, drift: bool
) -> dict[str, np.ndarray]:
    """Dashers on shift and busy and outstanding orders: more at peak hours and in the
    better-supplied markets; fewer dashers, busier and more congested when drifted."""
    n = market.size
    peak = HOUR_WEIGHTS[hour] / HOUR_WEIGHTS.max()
    supply = np.vectorize(MARKET_SUPPLY.get, otypes=[float])(market)
    onshift = np.round(rng.lognormal(np.log(48), 0.5, size=n) * supply * (0.25 + 0.75 * peak)).clip(
        0
    )
    if drift:
        onshift = np.round(onshift * 0.7)
    utilisation = rng.beta(6, 2.2, size=n) * (1.08 if drift else 1.0)
    busy = np.round(onshift * utilisation)
    load = rng.lognormal(np.log(1.0), 0.35, size=n) * (1.35 if drift else 1.0)
    outstanding = np.round(onshift * load * (0.6 + 0.9 * peak)).clip(0)
    return {
        "total_onshift_dashers": onshift,
        "total_busy_dashers": busy,
        "total_outstanding_orders": outstanding,
    }


def _add_delivery_times(
    frame: pd.DataFrame, rng: np.random.Generator, seed: int, drift: bool
) -> None:
    """``actual_delivery_time`` from the true features (kept as ``_true_*`` columns before
    the quirks spoil them) plus heavy-tailed noise; drifted deliveries are slower still."""
    for column in (
        "total_onshift_dashers",
        "total_outstanding_orders",
        "estimated_store_to_consumer_driving_duration",
        "estimated_order_place_duration",
    ):
        frame[f"_true_{column}"] = frame[column].astype(float)

    n = len(frame)
    expected = expected_duration(frame, seed)
    if drift:  # what the features cannot tell: roads and kitchens are slower everywhere
        expected = expected * DRIFT_SLOWDOWN
    # Heavy-tailed noise: multiplicative spread plus occasional long delays.
    noise = expected * (rng.lognormal(0.0, 0.2, size=n) - 1.0)
    noise += rng.standard_t(3, size=n) * 120.0
    duration = np.clip(expected + noise, 300.0, None)
    frame["actual_delivery_time"] = frame["created_at"] + pd.to_timedelta(
        np.round(duration), unit="s"
    )


def _add_quirks(frame: pd.DataFrame, rng: np.random.Generator) -> None:
    """The real file's missing values and bad rows, at its measured rates."""
    n = len(frame)
    if n == 0:
        return

    def pick(rate: float, minimum: int = 0) -> np.ndarray:
        count = rng.binomial(n, rate)
        count = max(count, minimum if n >= 1000 else 0)
        return rng.choice(n, size=min(count, n), replace=False)

    dashers = ["total_onshift_dashers", "total_busy_dashers", "total_outstanding_orders"]
    frame.loc[pick(0.076), dashers] = np.nan
    frame.loc[pick(0.005), "market_id"] = np.nan
    frame.loc[pick(0.005), "order_protocol"] = np.nan
    frame.loc[pick(0.002), "estimated_store_to_consumer_driving_duration"] = np.nan
    frame.loc[pick(0.00004, minimum=1), "actual_delivery_time"] = pd.NaT
    for column in [*dashers, "min_item_price"]:
        rows = pick(0.0003)
        frame.loc[rows, column] = -rng.integers(1, 5, size=rows.size)
    frame.loc[pick(0.00005), "subtotal"] = 0
    # Scheduled orders (> 1 day) and a few dozen above 3 hours per 200k.
    late = pick(0.00003, minimum=1)
    frame.loc[late, "actual_delivery_time"] = frame.loc[late, "created_at"] + pd.to_timedelta(
        rng.integers(90_000, 400_000, size=late.size), unit="s"
    )
    slow = pick(0.00015)
    frame.loc[slow, "actual_delivery_time"] = frame.loc[slow, "created_at"] + pd.to_timedelta(
        rng.integers(10_800, 30_000, size=slow.size), unit="s"
    )
    if n >= 1000:
        # The one order placed months before all others, ~8.5 million seconds long.
        row = int(rng.integers(0, n))
        frame.loc[row, "created_at"] = pd.Timestamp("2014-10-19 05:24:15")
        frame.loc[row, "actual_delivery_time"] = pd.Timestamp("2015-01-25 19:11:54")


def _to_file_types(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in schema.COLUMNS:
        if col.kind == "int":
            out[col.name] = pd.array(np.round(out[col.name].to_numpy(dtype=float)), dtype="Int64")
        elif col.kind == "str":
            out[col.name] = out[col.name].astype("string")
    return out


def write_csv(
    frame: pd.DataFrame,
    path: str | Path,
    spelling: str = "original",
    *,
    compression: str | None = None,
    bom: bool = False,
    crlf: bool = False,
) -> Path:
    """Write orders as the real file is spelled.

    ``original``: floats such as ``1.0`` in columns with missing values, empty
    missing fields. ``reexport``: every id quoted (``"1845"``), missing as ``NA``.
    """
    if spelling not in ("original", "reexport"):
        raise ValueError("spelling must be 'original' or 'reexport'")
    path = Path(path)
    out = frame[list(schema.COLUMN_NAMES)].copy()
    for col in ("created_at", "actual_delivery_time"):
        out[col] = out[col].dt.strftime("%Y-%m-%d %H:%M:%S")
    if spelling == "original":
        for col in schema.COLUMNS:
            if col.kind == "int" and out[col.name].isna().any():
                out[col.name] = out[col.name].astype("float64")
        kwargs = {"na_rep": ""}
    else:
        for name in ("market_id", "store_id", "order_protocol"):
            out[name] = out[name].map(lambda v: pd.NA if pd.isna(v) else str(int(v)))
        kwargs = {"na_rep": "NA", "quoting": 2}  # csv.QUOTE_NONNUMERIC quotes strings
    text = out.to_csv(index=False, lineterminator="\r\n" if crlf else "\n", **kwargs)
    if spelling == "reexport":
        text = text.replace('"NA"', "NA")
    data = (("\ufeff" if bom else "") + text).encode("utf-8")
    if compression == "gzip":
        import gzip

        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
    return path
