"""Orders parsed and checked: the one rule set, applied per value and per column.

One home for what an order may contain, used by every way orders arrive:

* **The rule of one value** (:func:`check_value`, :func:`check_order_id`, :class:`Problem`):
  which types, ranges and spellings a field accepts, and the message when it does not
  (field, what was wrong, what is allowed, from :data:`eta_cli.schema.COLUMNS`).
  :func:`eta_cli.validation.validate_order` applies it to one JSON order.
* **Columns of orders from a file** (:func:`check_batch`): an Arrow record batch is
  checked as whole columns. Cells in the common spellings are accepted with vectorised
  Arrow/NumPy code; every other cell (missing where required, out of range, an odd
  spelling or type) is decided by the rule of one value above, so the column path and
  the per-order path cannot disagree, and messages are built only for those cells.
* **Columns for ingest** (:func:`parse_numbers`, :func:`parse_timestamps`,
  :func:`parse_strings`): values with *present* and *invalid* masks; ingest decides
  what a bad value means (blank the feature or quarantine the order).

Accepted spellings, which the schema's types allow:

* numbers: JSON integers, or floats with a whole value (``4.0``); in files also text
  spelling a number (``"4"``, ``"4.0"``, ``" 4 "``, ``"4e0"``), typed Parquet integers
  and floats (NaN is missing). Booleans are never numbers.
* timestamps: ``YYYY-MM-DD HH:MM[:SS[.ffffff]]`` with ``T`` or a space, an optional
  ``Z`` or ``+HH:MM`` offset (converted to UTC), years 1970-2199; in files also typed
  Parquet timestamps. Serving refuses what ingest may still clean: ingest trims text,
  reads a blank cell as missing and accepts up to nine fractional digits, because it
  repairs historical files instead of refusing them (schema ``out_of_range``).
* text: a string of at most :data:`MAX_TEXT_LENGTH` characters, taken as given.

NumPy and pyarrow are imported inside the functions that need them: the per-order
rules are on the request path of ``eta serve`` and ``eta predict --json``, which must
not pay for importing them.
"""

from eta_cli.orders.batch import CheckedOrders, check_batch, file_values, rows_of
from eta_cli.orders.columns import (
    as_text,
    constant_text,
    fixed_width,
    parse_numbers,
    parse_strings,
    parse_timestamps,
    plain_array,
    present_mask,
    text_key,
    true_mask,
    with_mask,
)
from eta_cli.orders.values import (
    ACCEPTED_FIELDS,
    MAX_ORDER_ID_INT,
    MAX_ORDER_ID_LENGTH,
    MAX_TEXT_LENGTH,
    ORDER_COLUMNS,
    ORDER_ID,
    ORDER_ID_ALLOWED,
    REQUIRED_FIELDS,
    TIMESTAMP_PATTERN,
    Problem,
    allowed_text,
    check_order_id,
    check_value,
    error_text,
    missing_problem,
    parse_timestamp,
    type_name,
)

__all__ = [
    "ACCEPTED_FIELDS",
    "MAX_ORDER_ID_INT",
    "MAX_ORDER_ID_LENGTH",
    "MAX_TEXT_LENGTH",
    "ORDER_COLUMNS",
    "ORDER_ID",
    "ORDER_ID_ALLOWED",
    "REQUIRED_FIELDS",
    "TIMESTAMP_PATTERN",
    "CheckedOrders",
    "Problem",
    "allowed_text",
    "as_text",
    "check_batch",
    "check_order_id",
    "check_value",
    "constant_text",
    "error_text",
    "file_values",
    "fixed_width",
    "missing_problem",
    "parse_numbers",
    "parse_strings",
    "parse_timestamp",
    "parse_timestamps",
    "plain_array",
    "present_mask",
    "rows_of",
    "text_key",
    "true_mask",
    "type_name",
    "with_mask",
]
