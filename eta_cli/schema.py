"""The one definition of an order, shared by ingest, training and serving.

Columns follow the public DoorDash delivery-duration file (``historical_data.csv``).
Prices are cents, durations seconds, timestamps UTC without zone suffix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["int", "float", "str", "timestamp"]


@dataclass(frozen=True)
class Column:
    """One column of an order: type, unit, whether it may be missing, valid range.

    ``out_of_range`` says what cleaning does with a value outside [minimum, maximum]:
    ``"null"`` blanks the value and keeps the order (a recording glitch in a feature),
    ``"reject"`` quarantines the whole order.
    """

    name: str
    kind: Kind
    unit: str
    nullable: bool
    description: str
    minimum: float | None = None
    maximum: float | None = None
    out_of_range: Literal["null", "reject"] = "null"
    known_at_order_time: bool = True


COLUMNS: tuple[Column, ...] = (
    Column("market_id", "int", "id", True, "city/region of the order", 1, 1_000),
    Column(
        "created_at",
        "timestamp",
        "UTC",
        False,
        "when the customer placed the order",
        out_of_range="reject",
    ),
    Column(
        "actual_delivery_time",
        "timestamp",
        "UTC",
        False,
        "when the order reached the customer (the label)",
        out_of_range="reject",
        known_at_order_time=False,
    ),
    Column("store_id", "int", "id", False, "restaurant", 1, 10_000_000, out_of_range="reject"),
    Column("store_primary_category", "str", "label", True, "cuisine of the store"),
    Column("order_protocol", "int", "code", True, "how the order reached the store", 1, 20),
    Column(
        "total_items", "int", "count", False, "items in the order", 1, 1_000, out_of_range="reject"
    ),
    Column("subtotal", "int", "cents", False, "order value", 0, 10_000_000, out_of_range="reject"),
    Column(
        "num_distinct_items",
        "int",
        "count",
        False,
        "distinct items",
        1,
        1_000,
        out_of_range="reject",
    ),
    Column("min_item_price", "int", "cents", True, "cheapest item", 0, 10_000_000),
    Column("max_item_price", "int", "cents", True, "dearest item", 0, 10_000_000),
    Column(
        "total_onshift_dashers",
        "int",
        "count",
        True,
        "dashers on shift within 10 miles at order time",
        0,
        100_000,
    ),
    Column(
        "total_busy_dashers",
        "int",
        "count",
        True,
        "of those, dashers busy with another order",
        0,
        100_000,
    ),
    Column(
        "total_outstanding_orders",
        "int",
        "count",
        True,
        "orders being processed within 10 miles",
        0,
        100_000,
    ),
    Column(
        "estimated_order_place_duration",
        "int",
        "seconds",
        True,
        "upstream estimate of the time for the store to receive the order",
        0,
        86_400,
    ),
    Column(
        "estimated_store_to_consumer_driving_duration",
        "int",
        "seconds",
        True,
        "upstream estimate of the driving time store -> customer",
        0,
        86_400,
    ),
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

CREATED_AT = "created_at"
DELIVERED_AT = "actual_delivery_time"
ORDER_ID = "order_id"
#: The order id alphabet: 1 to 64 characters, letters, digits and ``. _ : -``, starting
#: with a letter or digit (UUIDs, ``A-1``, ``demo-0001``, integers as text). Safe in a URL,
#: a log line, a CSV cell and HTML as it is, so ids never need escaping downstream.
#: Regular-expression syntax common to Python ``re`` and Arrow's RE2 (ingest checks
#: whole columns with it).
ORDER_ID_MAX_LENGTH = 64
ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
ORDER_DATE = "order_date"
TARGET = "delivery_seconds"
REASON = "reason"

# What a caller must or may send to get a prediction: known at order time.
INPUT_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.known_at_order_time)
REQUIRED_INPUT_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in COLUMNS if c.known_at_order_time and not c.nullable
)
NUMERIC_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.kind in ("int", "float"))
CATEGORICAL_COLUMNS: tuple[str, ...] = (
    "market_id",
    "store_id",
    "store_primary_category",
    "order_protocol",
)

# Columns of the cleaned dataset written by ingest, in order.
CLEAN_COLUMNS: tuple[str, ...] = (ORDER_ID, *COLUMN_NAMES, TARGET, ORDER_DATE)


def pandas_dtypes() -> dict[str, str]:
    """Nullable pandas dtypes for the cleaned dataset (ids and counts may be missing)."""
    mapping = {"int": "Int64", "float": "Float64", "str": "string", "timestamp": "datetime64[ns]"}
    dtypes = {c.name: mapping[c.kind] for c in COLUMNS}
    dtypes[ORDER_ID] = "string"
    dtypes[TARGET] = "float64"
    return dtypes


def arrow_schema():  # -> pyarrow.Schema; imported lazily to keep import cheap
    """The Arrow schema of the cleaned dataset; every writer uses it so files agree."""
    import pyarrow as pa

    mapping = {
        "int": pa.int64(),
        "float": pa.float64(),
        "str": pa.string(),
        "timestamp": pa.timestamp("us"),
    }
    return pa.schema(
        [pa.field(ORDER_ID, pa.string(), nullable=False)]
        + [pa.field(c.name, mapping[c.kind], nullable=c.nullable) for c in COLUMNS]
        + [
            pa.field(TARGET, pa.float64(), nullable=False),
            pa.field(ORDER_DATE, pa.string(), nullable=False),
        ]
    )


def describe_column(name: str) -> str:
    """Human text of what a column allows, for error messages."""
    col = BY_NAME[name]
    parts = [col.kind if col.kind != "timestamp" else "timestamp 'YYYY-MM-DD HH:MM:SS' (UTC)"]
    if col.minimum is not None and col.maximum is not None:
        parts.append(f"{col.minimum:g} to {col.maximum:g} {col.unit}")
    parts.append("may be null" if col.nullable else "required")
    return ", ".join(parts)
