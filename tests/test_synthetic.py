"""Synthetic orders: deterministic, shaped like the real file (orders_profile.md), drift shifts."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from eta_cli import schema, synthetic

N = 60_000


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    return synthetic.generate_orders(N, seed=7, keep_truth=True)


@pytest.fixture(scope="module")
def durations(orders: pd.DataFrame) -> pd.Series:
    return (orders.actual_delivery_time - orders.created_at).dt.total_seconds()


def test_deterministic_per_seed():
    a = synthetic.generate_orders(2_000, seed=3)
    b = synthetic.generate_orders(2_000, seed=3)
    c = synthetic.generate_orders(2_000, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    np.testing.assert_array_equal(
        synthetic.expected_duration(a, 3), synthetic.expected_duration(b, 3)
    )


def test_columns_and_types_follow_the_schema(orders):
    plain = synthetic.generate_orders(500, seed=1)
    assert list(plain.columns) == list(schema.COLUMN_NAMES)
    for column in schema.COLUMNS:
        dtype = str(plain[column.name].dtype)
        expected = {"int": "Int64", "timestamp": "datetime64[ns]", "str": "string"}[column.kind]
        assert dtype == expected, column.name
    assert {c for c in orders.columns if c.startswith("_true_")}
    assert synthetic.generate_orders(0, seed=1).empty


def test_duration_quantiles_match_the_real_file(durations):
    # orders_profile.md: p1 1,170 · p5 1,510 · p25 2,130 · p50 2,700 · p75 3,430 · p95 4,930
    profile = {0.01: 1170, 0.05: 1510, 0.25: 2130, 0.5: 2700, 0.75: 3430, 0.95: 4930, 0.99: 6700}
    for q, real in profile.items():
        assert durations.quantile(q) == pytest.approx(real, rel=0.12), q


def test_missing_rates_match_the_real_file(orders):
    missing = orders.isna().mean()
    dashers = ["total_onshift_dashers", "total_busy_dashers", "total_outstanding_orders"]
    for column in dashers:
        assert missing[column] == pytest.approx(0.076, abs=0.01)
    # Missing together, as in the real file.
    together = orders[dashers].isna()
    assert (together.all(axis=1) == together.any(axis=1)).mean() > 0.999
    assert missing["store_primary_category"] == pytest.approx(0.028, abs=0.015)
    assert missing["market_id"] == pytest.approx(0.005, abs=0.002)
    assert missing["order_protocol"] == pytest.approx(0.005, abs=0.002)
    assert missing["estimated_store_to_consumer_driving_duration"] == pytest.approx(
        0.002, abs=0.0015
    )
    assert 0 < orders.actual_delivery_time.isna().sum() < 20
    for column in ("created_at", "store_id", "total_items", "subtotal", "num_distinct_items"):
        assert missing[column] == 0, column


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_market_shares_match_the_real_file(seed):
    frame = synthetic.generate_orders(40_000, seed=seed)
    shares = frame.market_id.value_counts(normalize=True)
    for market, real in {4: 0.28, 2: 0.24, 1: 0.19, 3: 0.13, 5: 0.10, 6: 0.07}.items():
        assert shares[market] == pytest.approx(real, abs=0.05), (seed, market)
    assert synthetic.DRIFT_MARKET not in shares.index
    # No single store dominates (the real file's busiest store has ~0.5 % of orders).
    assert frame.store_id.value_counts(normalize=True).iloc[0] < 0.02


def test_categorical_shapes(orders):
    protocol = orders.order_protocol.value_counts(normalize=True)
    for code, real in {1: 0.29, 3: 0.29, 5: 0.16, 2: 0.13, 4: 0.11}.items():
        assert protocol[code] == pytest.approx(real, abs=0.03), code
    categories = orders.store_primary_category.value_counts(normalize=True)
    assert 60 <= orders.store_primary_category.nunique() <= 80
    assert categories.index[0] == "american"
    assert categories.iloc[0] < 0.2
    assert 4_000 <= orders.store_id.nunique() <= 7_000
    place = orders.estimated_order_place_duration.value_counts(normalize=True)
    assert set(place.index[:2]) == {251, 446} and place.iloc[:2].sum() > 0.9
    assert orders.total_items.median() == 3
    assert orders.num_distinct_items.median() == 2
    assert orders.estimated_store_to_consumer_driving_duration.median() == pytest.approx(
        545, rel=0.05
    )
    assert orders.total_onshift_dashers.median() == pytest.approx(33, rel=0.15)
    assert orders.total_outstanding_orders.median() == pytest.approx(37, rel=0.15)
    hours = orders.created_at.dt.hour.value_counts(normalize=True)
    assert hours.reindex(range(7, 14), fill_value=0).sum() < 0.02  # almost none 07-14 UTC
    assert hours.reindex(range(1, 4)).sum() > 0.3  # US dinner


def test_ordered_by_store_and_a_store_keeps_its_market_and_category(orders):
    assert orders.store_id.is_monotonic_increasing
    per_store = orders.groupby("store_id")
    assert per_store.store_primary_category.nunique(dropna=False).max() == 1
    assert (per_store.market_id.nunique() <= 1).all()


def test_the_real_files_bad_rows_are_present(orders, durations):
    assert (orders.created_at < "2015-01-01").sum() == 1  # the order months before the rest
    assert durations.max() > 8_000_000
    assert (durations > 86_400).sum() >= 2
    for column in (
        "total_onshift_dashers",
        "total_busy_dashers",
        "total_outstanding_orders",
        "min_item_price",
    ):
        assert (orders[column] < 0).sum() >= 5, column
    assert (orders.total_busy_dashers > orders.total_onshift_dashers).any()
    clean = synthetic.generate_orders(5_000, seed=7, messy=False)
    # Without quirks only stores that have no category leave a gap (a store property).
    assert clean.drop(columns=["store_primary_category"]).notna().all().all()
    clean_durations = (clean.actual_delivery_time - clean.created_at).dt.total_seconds()
    assert clean_durations.between(300, 14_400).all()


def test_expected_duration_sets_a_sensible_noise_floor(orders, durations):
    valid = durations.between(300, 14_400)
    expected = synthetic.expected_duration(orders[valid], seed=7)
    actual = durations[valid].to_numpy()
    floor = np.abs(expected - actual).mean()
    median_mae = np.abs(np.median(actual) - actual).mean()
    # Learnable signal (well below predicting the median), but noise remains, as in the
    # real data where good models reach ~600 s and the mean ~835 s.
    assert floor < 0.75 * median_mae
    assert 300 < floor < 650
    assert 700 < median_mae < 950
    # Per-store preparation speed and congestion both matter.
    stores = orders[valid].assign(residual=actual - synthetic.expected_duration(orders[valid], 7))
    assert abs(stores.residual.mean()) < 150


def test_drift_changes_the_population(orders):
    drifted = synthetic.generate_orders(N, seed=7, drift=True)
    assert (drifted.market_id == synthetic.DRIFT_MARKET).mean() > 0.05
    assert (orders.market_id == synthetic.DRIFT_MARKET).sum() == 0
    assert drifted.total_items.mean() > 1.4 * orders.total_items.mean()
    congestion = (orders.total_outstanding_orders / orders.total_onshift_dashers).median()
    drifted_congestion = (drifted.total_outstanding_orders / drifted.total_onshift_dashers).median()
    assert drifted_congestion > 1.2 * congestion
    slower = (drifted.actual_delivery_time - drifted.created_at).dt.total_seconds().median()
    assert (
        slower
        > 1.05 * (orders.actual_delivery_time - orders.created_at).dt.total_seconds().median()
    )


def test_write_csv_spellings(tmp_path):
    frame = synthetic.generate_orders(300, seed=2)
    original = synthetic.write_csv(frame, tmp_path / "o.csv").read_text()
    reexport = synthetic.write_csv(frame, tmp_path / "r.csv", spelling="reexport").read_text()
    assert original.splitlines()[0] == ",".join(schema.COLUMN_NAMES)
    assert ".0," in original and ",," in original and "NA" not in original
    assert '"' in reexport and ",NA," in reexport
    first = reexport.splitlines()[1].split(",")
    assert first[3].startswith('"') and first[3].endswith('"')  # store_id quoted
    packed = synthetic.write_csv(
        frame, tmp_path / "g.csv.gz", compression="gzip", bom=True, crlf=True
    )
    text = gzip.decompress(packed.read_bytes()).decode("utf-8")
    assert text.startswith("\ufeff") and "\r\n" in text
    assert text.lstrip("\ufeff").replace("\r\n", "\n") == original
    with pytest.raises(ValueError, match="spelling"):
        synthetic.write_csv(frame, tmp_path / "x.csv", spelling="excel")
