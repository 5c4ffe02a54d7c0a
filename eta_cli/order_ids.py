"""Order ids: the one rule of an order's identity, shared by ingest, serve and predict.

An order keeps the id its platform gave it: the ``order_id`` column of a source file,
or the ``order_id`` of a request, checked against :data:`eta_cli.schema.ORDER_ID_PATTERN`.
Only an order that comes without one gets a *derived* id (:func:`derive_order_ids`),
so a prediction made for an order sent without an id and the delivery outcome of the
same order ingested later carry the same id and join.

Derived ids, version ``v2``: ``"v2-"`` + 16 hex digits of a 64-bit hash of the fields
known at order time (every schema column except ``actual_delivery_time``, which a
prediction cannot know), each normalised the way the lake stores it: integers as
int64, ``created_at`` as UTC microseconds, text trimmed (blank is missing), missing as
missing. splitmix64 per field, salted by the field's name, chained by xor-multiply, in
NumPy: one call hashes a whole chunk, the same call hashes the one order of a request.
The prefix names the version, so a later rule can never be mistaken for this one.

Version ``v1`` (earlier lakes) hashed all 16 fields, the delivery time included, and
replaced a source's own ids, so its ids can never meet a prediction. Every partition
file records the version in its Parquet key-value metadata (:data:`VERSION_KEY`);
``eta ingest`` refuses to add to a lake written with another version and names the
command that re-ingests the sources (:func:`eta_cli.ingest.merge.check_lake_version`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from eta_cli import schema

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

ORDER_ID_VERSION = "v2"
DERIVED_PREFIX = f"{ORDER_ID_VERSION}-"
#: Parquet key-value metadata of every published partition: the id version it holds.
VERSION_KEY = b"eta.order_id_version"
#: The fields a derived id is computed from: what is known when the order is placed.
DERIVED_FROM: tuple[schema.Column, ...] = tuple(c for c in schema.COLUMNS if c.known_at_order_time)

_SEED = 0x6A09E667F3BCC908
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_CHAIN = 0x100000001B3  # odd: multiplication is a bijection


@functools.cache
def _salts(name: str) -> tuple[int, int]:
    """A field's salt for present values and its value for missing (stable across runs)."""
    from eta_cli.orders import text_key

    return text_key(name), text_key(f"{name}:null")


class _Hasher:
    """Row hashes over columns added in order; in place, reusing two scratch buffers."""

    def __init__(self, n: int) -> None:
        import numpy as np

        self.np = np
        self.hashes = np.full(n, np.uint64(_SEED), np.uint64)
        self.value = np.empty(n, np.uint64)
        self.scratch = np.empty(n, np.uint64)

    def add(self, key: np.ndarray, valid: np.ndarray, name: str) -> None:
        """Chain one column in: its 64-bit keys, salted by name (missing has its own salt)."""
        np = self.np
        salt, null_salt = _salts(name)
        value = self.value
        np.add(key, np.uint64(salt), out=value)
        if not valid.all():
            value[~valid] = np.uint64(null_salt)
        self._mix(value)
        np.bitwise_xor(self.hashes, value, out=self.hashes)
        np.multiply(self.hashes, np.uint64(_CHAIN), out=self.hashes)

    def _mix(self, z: np.ndarray) -> None:
        """splitmix64's finaliser (uint64 arithmetic wraps)."""
        np = self.np
        tmp = self.scratch
        for shift, factor in ((30, _M1), (27, _M2), (31, None)):
            np.right_shift(z, np.uint64(shift), out=tmp)
            np.bitwise_xor(z, tmp, out=z)
            if factor is not None:
                np.multiply(z, np.uint64(factor), out=z)

    def digest(self) -> np.ndarray:
        """The finished hashes (the buffer is reused: call once)."""
        self._mix(self.hashes)
        return self.hashes


def _as_arrow(values: Any) -> pa.Array:
    """A column in any form the stages hold (Arrow, NumPy, pandas, a list) as one Arrow array."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values if hasattr(values, "dtype") else list(values), from_pandas=True)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _python_key(kind: str, value: Any) -> tuple[int, bool]:
    """One Python value's 64-bit key and whether it is present, normalised exactly as
    :func:`_column_keys` normalises the same value in an Arrow column."""
    import math
    import struct

    from eta_cli.orders import text_key

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0, False
    if kind == "str":
        text = str(value).strip()
        return (text_key(text), True) if text else (0, False)
    if kind == "timestamp":
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            value = (value - _EPOCH) // _MICROSECOND
        return int(value) & 0xFFFFFFFFFFFFFFFF, True
    if kind == "int":
        return int(value) & 0xFFFFFFFFFFFFFFFF, True
    return struct.unpack("<Q", struct.pack("<d", float(value)))[0], True


def _column_keys(column: schema.Column, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """One column's 64-bit keys and present mask, normalised as the lake stores the value."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from eta_cli.orders import text_key

    arr = _as_arrow(values)
    n = len(arr)
    if column.kind == "str" or pa.types.is_null(arr.type):
        if pa.types.is_null(arr.type):
            return np.zeros(n, np.uint64), np.zeros(n, bool)
        encoded = pc.dictionary_encode(pc.cast(arr, pa.string()))
        trimmed = [(value or "").strip() for value in encoded.dictionary.to_pylist()]
        keys = np.array([text_key(v) if v else 0 for v in trimmed] or [0], np.uint64)
        known = np.array([bool(v) for v in trimmed] or [False], bool)
        index = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        present = encoded.indices.is_valid().to_numpy(zero_copy_only=False) & known[index]
        return keys[index], present
    if column.kind == "timestamp":
        if pa.types.is_timestamp(arr.type):
            arr = pc.cast(arr, pa.timestamp("us"), safe=False).cast(pa.int64())
        target = pa.int64()  # an integer column holds microseconds already
    else:
        target = pa.int64() if column.kind == "int" else pa.float64()
    present = arr.is_valid().to_numpy(zero_copy_only=False)
    typed = pc.cast(arr, target, safe=False).fill_null(0).to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(typed).view(np.uint64), present


def derive_order_ids(columns: Mapping[str, Any]) -> pa.Array:
    """The ``v2`` id of every order from its order-time fields, as an Arrow string array.

    ``columns`` maps field names to equal-length columns (Arrow arrays, NumPy arrays
    with NaN as missing, pandas Series or lists with None; ``created_at`` as datetimes,
    timestamps or int64 microseconds); an absent field counts as missing. This is the
    only implementation: ingest calls it per chunk, ``eta serve`` and ``eta predict``
    per request or batch, so the same order gets the same id on every path.
    """
    created = columns[schema.CREATED_AT]
    n = len(created)
    hasher = _Hasher(n)
    for column in DERIVED_FROM:
        values = columns.get(column.name)
        if values is None:
            import numpy as np

            keys, present = np.zeros(n, np.uint64), np.zeros(n, bool)
        else:
            keys, present = _column_keys(column, values)
        hasher.add(keys, present, column.name)
    return hex_ids(hasher.digest(), DERIVED_PREFIX)


def hex_ids(hashes: np.ndarray, prefix: str = "") -> pa.Array:
    """Each hash as ``prefix`` + its 16 hex digits, built without Python strings."""
    import numpy as np
    import pyarrow as pa

    n = len(hashes)
    width = len(prefix) + 16
    raw = hashes.astype(">u8").view(np.uint8).reshape(n, 8)
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    text = np.empty((n, width), np.uint8)
    if prefix:
        text[:, : len(prefix)] = np.frombuffer(prefix.encode("ascii"), np.uint8)
    text[:, len(prefix) :: 2] = digits[raw >> 4]
    text[:, len(prefix) + 1 :: 2] = digits[raw & 15]
    offsets = np.arange(0, width * n + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def given_order_ids(values: Any) -> tuple[pa.Array, np.ndarray]:
    """A source's own ``order_id`` column: trimmed text (blank: null) and its invalid mask.

    Integers (typed Parquet ids) become their decimal text, as a request's integer id
    does; a present id that does not match :data:`~eta_cli.schema.ORDER_ID_PATTERN`
    is invalid (ingest quarantines its row as ``invalid_order_id``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _as_arrow(values)
    if pa.types.is_null(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    text = pc.utf8_trim_whitespace(arr)
    text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)
    fine = pc.match_substring_regex(text, schema.ORDER_ID_PATTERN)
    invalid = pc.and_(text.is_valid(), pc.invert(fine.fill_null(False)))
    return text, invalid.to_numpy(zero_copy_only=False)


def fill_order_ids(
    order_ids: Sequence[str | None], columns: Mapping[str, Any], rows: Sequence[int] | None = None
) -> list[str | None]:
    """``order_ids`` with every missing id derived from its order (given ids are kept).

    ``columns`` hold the orders' fields; ``rows`` says which entry of ``order_ids`` each
    row of ``columns`` belongs to (default: the same position). Entries not covered by
    ``rows`` (rejected orders) keep their value.
    """
    out = list(order_ids)
    positions = range(len(out)) if rows is None else rows
    if all(out[i] is not None for i in positions):
        return out
    derived = derive_order_ids(columns).to_pylist()
    for position, derived_id in zip(positions, derived, strict=True):
        if out[position] is None:
            out[position] = derived_id
    return out


def record_order_ids(
    records: Sequence[Mapping[str, Any]], order_ids: Sequence[str | None]
) -> list[str | None]:
    """The ids of validated orders (clean records): the given one, or the derived one."""
    if all(order_id is not None for order_id in order_ids):
        return list(order_ids)
    missing = [i for i, order_id in enumerate(order_ids) if order_id is None]
    if len(missing) > _FEW_ORDERS:  # vectorised: a fixed cost of ~1 ms, then ~2 us an order
        columns = {c.name: [records[i].get(c.name) for i in missing] for c in DERIVED_FROM}
        derived = derive_order_ids(columns).to_pylist()
    else:  # plain Python: ~40 us an order, no fixed cost
        derived = derive_record_ids([records[i] for i in missing])
    out = list(order_ids)
    for position, derived_id in zip(missing, derived, strict=True):
        out[position] = derived_id
    return out


_MASK = 0xFFFFFFFFFFFFFFFF
#: Up to this many orders a request's ids are derived in plain Python, beyond it with NumPy.
_FEW_ORDERS = 16


def _mix_int(z: int) -> int:
    """splitmix64's finaliser on one Python integer (the arithmetic of :class:`_Hasher`)."""
    z ^= z >> 30
    z = (z * _M1) & _MASK
    z ^= z >> 27
    z = (z * _M2) & _MASK
    return z ^ (z >> 31)


def derive_record_ids(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """:func:`derive_order_ids` of the few orders of one request, in plain Python.

    The same keys (:func:`_python_key`), salts and chaining as the NumPy hasher, one
    order at a time: for the handful of orders a request carries, creating arrays per
    field cost a millisecond per request, ten times this. Both give the same id (tests
    compare them on random orders).
    """
    out = []
    for record in records:
        digest = _SEED
        for column in DERIVED_FROM:
            salt, null_salt = _salts(column.name)
            key, present = _python_key(column.kind, record.get(column.name))
            value = _mix_int((key + salt) & _MASK if present else null_salt)
            digest = ((digest ^ value) * _CHAIN) & _MASK
        out.append(f"{DERIVED_PREFIX}{_mix_int(digest):016x}")
    return out
