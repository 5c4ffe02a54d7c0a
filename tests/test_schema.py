"""The order schema: one consistent definition for ingest, training and serving."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from eta_cli import schema

PROFILE_ORDER = (
    "market_id",
    "created_at",
    "actual_delivery_time",
    "store_id",
    "store_primary_category",
    "order_protocol",
    "total_items",
    "subtotal",
    "num_distinct_items",
    "min_item_price",
    "max_item_price",
    "total_onshift_dashers",
    "total_busy_dashers",
    "total_outstanding_orders",
    "estimated_order_place_duration",
    "estimated_store_to_consumer_driving_duration",
)


def test_the_sixteen_columns_of_the_real_file_in_order():
    assert schema.COLUMN_NAMES == PROFILE_ORDER
    assert len(set(schema.COLUMN_NAMES)) == 16
    assert set(schema.BY_NAME) == set(PROFILE_ORDER)


def test_column_definitions_are_consistent():
    for column in schema.COLUMNS:
        assert column.kind in ("int", "float", "str", "timestamp")
        assert column.unit and column.description
        assert (column.minimum is None) == (column.maximum is None), column.name
        if column.minimum is not None:
            assert column.minimum < column.maximum, column.name
            assert column.kind in ("int", "float"), column.name
        assert column.out_of_range in ("null", "reject")
        if column.out_of_range == "null":
            # Blanking a value is only possible where a value may be missing.
            assert column.nullable, column.name
    required = {c.name for c in schema.COLUMNS if not c.nullable}
    assert required == {
        "created_at",
        "actual_delivery_time",
        "store_id",
        "total_items",
        "subtotal",
        "num_distinct_items",
    }


def test_label_is_not_an_input():
    assert schema.DELIVERED_AT not in schema.INPUT_COLUMNS
    assert schema.TARGET not in schema.INPUT_COLUMNS
    assert [c for c in schema.COLUMN_NAMES if c != schema.DELIVERED_AT] == list(
        schema.INPUT_COLUMNS
    )
    assert set(schema.REQUIRED_INPUT_COLUMNS) <= set(schema.INPUT_COLUMNS)
    assert schema.CREATED_AT in schema.REQUIRED_INPUT_COLUMNS
    assert set(schema.CATEGORICAL_COLUMNS) <= set(schema.COLUMN_NAMES)
    assert set(schema.NUMERIC_COLUMNS) == {
        c.name for c in schema.COLUMNS if c.kind in ("int", "float")
    }


def test_clean_columns_arrow_schema_and_pandas_dtypes_agree():
    assert (
        schema.ORDER_ID,
        *schema.COLUMN_NAMES,
        schema.TARGET,
        schema.ORDER_DATE,
    ) == schema.CLEAN_COLUMNS
    arrow = schema.arrow_schema()
    assert arrow.names == list(schema.CLEAN_COLUMNS)
    assert arrow.field(schema.ORDER_ID).type == pa.string()
    assert not arrow.field(schema.ORDER_ID).nullable
    assert arrow.field(schema.CREATED_AT).type == pa.timestamp("us")
    assert arrow.field(schema.TARGET).type == pa.float64()
    for column in schema.COLUMNS:
        assert arrow.field(column.name).nullable == column.nullable
    dtypes = schema.pandas_dtypes()
    assert set(dtypes) == set(schema.CLEAN_COLUMNS) - {schema.ORDER_DATE}
    for name, dtype in dtypes.items():
        pd.Series([], dtype=dtype)  # every dtype is a real pandas dtype
        kind = schema.BY_NAME[name].kind if name in schema.BY_NAME else None
        if kind == "int":
            assert dtype == "Int64", name  # ids and counts may be missing


def test_describe_column_says_what_is_allowed():
    assert schema.describe_column("total_items") == "int, 1 to 1000 count, required"
    assert "may be null" in schema.describe_column("market_id")
    assert "YYYY-MM-DD HH:MM:SS" in schema.describe_column("created_at")
