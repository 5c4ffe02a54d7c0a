"""The shared feature builder: one answer whatever the input shape, robust to gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eta_cli import features, schema
from eta_cli.synthetic import generate_orders


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    frame = generate_orders(2000, seed=3, messy=True)
    frame = frame[frame[schema.DELIVERED_AT].notna()].reset_index(drop=True)
    frame[schema.TARGET] = (
        frame[schema.DELIVERED_AT] - frame[schema.CREATED_AT]
    ).dt.total_seconds()
    return frame


@pytest.fixture(scope="module")
def state(orders: pd.DataFrame) -> features.FeatureState:
    return features.fit_feature_state(
        features.columns_from_frame(orders), orders[schema.TARGET].to_numpy()
    )


def _records(frame: pd.DataFrame) -> list[dict]:
    """What the online service gets: plain Python values, None for missing, ISO timestamps."""
    out = []
    for row in frame[list(schema.INPUT_COLUMNS)].astype(object).to_dict("records"):
        record = {k: (None if pd.isna(v) else v) for k, v in row.items()}
        record[schema.CREATED_AT] = np.datetime64(pd.Timestamp(row[schema.CREATED_AT]), "s")
        for key, value in record.items():
            if isinstance(value, (int, np.integer)) and key != schema.CREATED_AT:
                record[key] = int(value)
        out.append(record)
    return out


def test_frame_and_records_give_identical_features(orders, state) -> None:
    sample = orders.sample(300, random_state=1)
    from_frame = features.build_features(features.columns_from_frame(sample), state)
    from_records = features.build_features(features.columns_from_records(_records(sample)), state)
    assert from_frame.shape == (300, len(features.FEATURE_NAMES))
    assert from_frame.dtype == np.float32
    np.testing.assert_array_equal(from_frame, from_records)


def test_single_order_matches_batch(orders, state) -> None:
    batch = features.build_features(features.columns_from_frame(orders.head(50)), state)
    for i in (0, 17, 49):
        one = features.build_features(
            features.columns_from_records(_records(orders.iloc[[i]])), state
        )
        np.testing.assert_array_equal(one[0], batch[i])


def test_time_features(state) -> None:
    record = {name: None for name in schema.INPUT_COLUMNS}
    record.update(
        created_at=np.datetime64("2015-02-02T21:45:00"),  # a Monday
        store_id=1,
        total_items=2,
        subtotal=1500,
        num_distinct_items=2,
    )
    row = features.build_features(features.columns_from_records([record]), state)[0]
    names = list(features.FEATURE_NAMES)
    assert row[names.index("hour_of_day")] == 21
    assert row[names.index("day_of_week")] == 0


def test_unseen_store_category_and_market_fall_back(orders, state) -> None:
    known = orders.iloc[[0]].copy()
    unseen = known.copy()
    unseen["store_id"] = 9_999_999
    unseen["store_primary_category"] = "martian"
    unseen["market_id"] = 999
    names = list(features.FEATURE_NAMES)
    row = features.build_features(features.columns_from_frame(unseen), state)[0]
    # Unknown market and category: no statistic (NaN routes like a missing value) ...
    assert np.isnan(row[names.index("market_mean_duration")])
    assert np.isnan(row[names.index("category_code")])
    assert np.isnan(row[names.index("category_mean_duration")])
    # ... unseen store: the global mean (its market is unknown too), zero history.
    assert row[names.index("store_mean_duration")] == pytest.approx(state.global_mean, rel=1e-6)
    assert row[names.index("store_log_orders")] == 0

    # Unseen store in a known market falls back to that market's mean.
    unseen_store = known.copy()
    unseen_store["store_id"] = 9_999_999
    row = features.build_features(features.columns_from_frame(unseen_store), state)[0]
    market = int(known["market_id"].iloc[0])
    assert row[names.index("store_mean_duration")] == pytest.approx(
        state.market_means[market], rel=1e-6
    )


def test_missing_values_stay_missing_and_ratios_guard_zero(state) -> None:
    record = {name: None for name in schema.INPUT_COLUMNS}
    record.update(
        created_at="2015-02-02T12:00:00",
        store_id=1,
        total_items=3,
        subtotal=2400,
        num_distinct_items=2,
        total_onshift_dashers=0,
        total_busy_dashers=0,
        total_outstanding_orders=4,
    )
    row = features.build_features(features.columns_from_records([record]), state)[0]
    names = list(features.FEATURE_NAMES)
    assert np.isnan(row[names.index("estimated_total_duration")])
    assert np.isnan(row[names.index("busy_ratio")])  # 0 onshift dashers: no ratio
    assert np.isnan(row[names.index("outstanding_per_onshift")])
    assert row[names.index("subtotal_per_item")] == pytest.approx(800)
    assert np.isnan(row[names.index("market_id")])


def test_nullable_pandas_columns(orders, state) -> None:
    """Ingested frames carry Int64 / string dtypes with <NA>: same features as floats."""
    sample = orders.head(200).copy()
    nullable = sample.copy()
    for name in ("market_id", "total_onshift_dashers", "store_id"):
        nullable[name] = nullable[name].astype("Int64")
    nullable.loc[nullable.index[:20], "total_onshift_dashers"] = pd.NA
    plain = sample.copy()
    plain["total_onshift_dashers"] = plain["total_onshift_dashers"].astype("float64")
    plain.loc[plain.index[:20], "total_onshift_dashers"] = np.nan
    a = features.build_features(features.columns_from_frame(nullable), state)
    b = features.build_features(features.columns_from_frame(plain), state)
    np.testing.assert_array_equal(a, b)


def test_state_round_trips_through_json(state) -> None:
    import json

    again = features.FeatureState.from_dict(json.loads(json.dumps(state.to_dict())))
    np.testing.assert_array_equal(again.store_ids, state.store_ids)
    np.testing.assert_allclose(again.store_means, state.store_means)
    assert again.market_means == state.market_means
    assert again.category_codes == state.category_codes


def test_training_features_are_out_of_fold(orders) -> None:
    """A store seen once must not see its own duration in its training row."""
    y = orders[schema.TARGET].to_numpy()
    columns = features.columns_from_frame(orders)
    matrix, full_state = features.build_training_features(columns, y, seed=0)
    in_sample = features.build_features(columns, full_state)
    col = list(features.FEATURE_NAMES).index("store_mean_duration")
    # The full-data state leaks each row's target; out-of-fold values differ from it.
    assert not np.allclose(matrix[:, col], in_sample[:, col])
    corr_oof = np.corrcoef(matrix[:, col], y)[0, 1]
    corr_in = np.corrcoef(in_sample[:, col], y)[0, 1]
    assert corr_oof < corr_in
