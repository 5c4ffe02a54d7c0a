"""Columns for ingest: order values parsed as whole Arrow columns, each with a *present*
mask (the field was given) and an *invalid* mask (given but unreadable); the caller
decides what a bad value means (ingest blanks a feature or quarantines the order).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def text_key(text: str) -> int:
    """A stable 64-bit key of a text (BLAKE2b), the same in every process and version."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def plain_array(arr: pa.Array) -> pa.Array:
    """A column as a plain Arrow array: one chunk, no dictionary, ``string`` text."""
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _bits(buffer: pa.Buffer | None, offset: int, n: int) -> np.ndarray:
    """A bitmap (validity or boolean values) as a NumPy bool array."""
    import numpy as np

    if buffer is None:
        return np.ones(n, bool)
    packed = np.frombuffer(buffer, np.uint8)
    return np.unpackbits(packed, count=offset + n, bitorder="little")[offset:].view(bool)


def present_mask(arr: pa.Array) -> np.ndarray:
    """Which cells are not null."""
    import numpy as np

    if arr.null_count == 0:
        return np.ones(len(arr), bool)
    return _bits(arr.buffers()[0], arr.offset, len(arr))


def true_mask(flags: pa.Array) -> np.ndarray:
    """A boolean Arrow array as NumPy, null counted as False."""
    values = _bits(flags.buffers()[1], flags.offset, len(flags))
    return values & present_mask(flags) if flags.null_count else values


def fixed_width(arr: pa.Array, dtype: Any) -> np.ndarray:
    """Zero-copy view of a fixed-width array's values (slots of nulls hold anything)."""
    import numpy as np

    dtype = np.dtype(dtype)
    data = arr.buffers()[1]
    if data is None:
        return np.zeros(len(arr), dtype)
    return np.frombuffer(data, dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def parse_numbers(arr: pa.Array, integral: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floats, present mask, invalid mask. ``1.0``, ``1`` and ``"1"`` all read as 1."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = plain_array(arr)
    kind = arr.type
    present = present_mask(arr)
    if pa.types.is_string(kind):
        try:
            floats = pc.cast(arr, pa.float64())
        except pa.ArrowInvalid:
            trimmed = pc.utf8_trim_whitespace(arr)
            present = true_mask(pc.not_equal(trimmed, ""))
            good = pc.match_substring_regex(trimmed, NUMBER_PATTERN)
            candidates = pc.if_else(good, trimmed, pa.scalar(None, pa.string()))
            try:
                floats = pc.cast(candidates, pa.float64())
            except pa.ArrowInvalid:
                floats = pa.array([_to_float(v) for v in candidates.to_pylist()], pa.float64())
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        floats = pc.cast(arr, pa.float64(), safe=False)
    else:  # all missing, or a type that cannot be a number (timestamp, list...)
        floats = pa.nulls(len(arr), pa.float64())
    if floats.null_count == len(floats):
        values = np.full(len(floats), np.nan)
    else:
        values = fixed_width(floats, np.float64)
    parsed = present_mask(floats)
    if pa.types.is_floating(kind):  # NaN in a typed float column means missing
        present = present & ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values)
        if integral:
            bad |= values != np.floor(values)
    return values, present, present & (bad | ~parsed)


def _to_float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


_ISO = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$"


def parse_timestamps(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Microseconds since the epoch, present mask, invalid mask."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = plain_array(arr)
    kind = arr.type
    present = present_mask(arr)
    target = pa.timestamp("us")
    if pa.types.is_string(kind):
        try:
            stamps = pc.cast(arr, target)
        except pa.ArrowInvalid:
            trimmed = pc.utf8_trim_whitespace(arr)
            present = true_mask(pc.not_equal(trimmed, ""))
            good = pc.match_substring_regex(trimmed, _ISO)
            candidates = pc.if_else(good, trimmed, pa.scalar(None, pa.string()))
            try:
                stamps = pc.cast(candidates, target)
            except pa.ArrowInvalid:
                stamps = pa.array([_to_datetime(v) for v in candidates.to_pylist()], target)
    elif pa.types.is_timestamp(kind):
        stamps = arr.cast(pa.timestamp("us", tz=kind.tz), safe=False)
    elif pa.types.is_date(kind):
        stamps = arr.cast(pa.date32()).cast(target)
    else:
        stamps = pa.nulls(len(arr), target)
    if stamps.null_count == len(stamps):
        return np.zeros(len(stamps), np.int64), present, present.copy()
    micros = np.where(present_mask(stamps), fixed_width(stamps, np.int64), 0)
    return micros, present, present & ~present_mask(stamps)


def _to_datetime(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text is not None else None
    except ValueError:
        return None


def parse_strings(arr: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Trimmed strings (blank -> null), present mask, and a 64-bit key per row for hashing.

    Works on the distinct values (a category has a few dozen), not on every row.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = plain_array(arr)
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    encoded = pc.dictionary_encode(arr)
    trimmed = [value.strip() or None for value in encoded.dictionary.to_pylist()]
    dictionary = pa.array(trimmed, pa.string())
    keys = np.array([text_key(v) if v else 0 for v in trimmed] or [0], np.uint64)
    indices = encoded.indices
    index = fixed_width(indices, np.int32)
    present = present_mask(indices)
    if indices.null_count:
        index = np.where(present, index, 0)
    if None in trimmed:
        present = present & true_mask(dictionary.is_valid())[index]
    values = dictionary.take(indices)
    return values, present, keys[index]


def with_mask(values: np.ndarray, valid: np.ndarray, kind: pa.DataType | None = None) -> pa.Array:
    """An Arrow array of NumPy values, null where ``valid`` is False."""
    import pyarrow as pa

    if valid.all():
        return pa.array(values, type=kind)
    return pa.array(values, type=kind, mask=~valid)


def constant_text(value: str, n: int) -> pa.Array:
    """``n`` times the same text, stored once (a dictionary-free take of one value)."""
    import numpy as np
    import pyarrow as pa

    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, np.int32)))


def as_text(arr: pa.Array) -> pa.Array:
    """Values as strings for the quarantine file, spelled like the CSV where possible."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = plain_array(arr)
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_timestamp(arr.type):
        return pc.strftime(arr, "%Y-%m-%d %H:%M:%S")
    return pc.cast(arr, pa.string())
