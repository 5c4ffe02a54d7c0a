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

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.schema import Column

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

ORDER_ID = schema.ORDER_ID
MAX_TEXT_LENGTH = 200
MAX_ORDER_ID_LENGTH = 64
MAX_ORDER_ID_INT = 2**63 - 1

# Years 1970-2199 keep created_at + quoted ETA inside every datetime type we use.
TIMESTAMP_PATTERN = (
    r"^(19[7-9][0-9]|2[01][0-9]{2})-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}"
    r"(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
# The spelling of most files, checked without Python per value (calendar by round trip).
_PLAIN_TIMESTAMP = r"^(19[7-9][0-9]|2[01][0-9]{2})-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}$"
_EPOCH = datetime(1970, 1, 1)

# Fields a caller may send for one order, in schema order, then the optional id.
ORDER_COLUMNS: tuple[Column, ...] = tuple(c for c in schema.COLUMNS if c.known_at_order_time)
ACCEPTED_FIELDS: tuple[str, ...] = (*(c.name for c in ORDER_COLUMNS), ORDER_ID)
REQUIRED_FIELDS: tuple[str, ...] = tuple(c.name for c in ORDER_COLUMNS if not c.nullable)


# --- the rule of one value ---------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: which field, what is wrong, what is allowed."""

    field: str
    problem: str
    allowed: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "problem": self.problem, "allowed": self.allowed}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def allowed_text(column: Column) -> str:
    """What a column accepts, in words; shared by error details and the OpenAPI descriptions."""
    if column.kind == "int":
        text = "integer"
    elif column.kind == "float":
        text = "number"
    elif column.kind == "str":
        text = f"string of at most {MAX_TEXT_LENGTH} characters"
    else:
        text = (
            "timestamp 'YYYY-MM-DD HH:MM:SS' (UTC; ISO 8601 with 'T', fractional seconds "
            "and a Z or +HH:MM offset also accepted), years 1970-2199"
        )
    if column.minimum is not None and column.maximum is not None:
        text += f" from {_number(column.minimum)} to {_number(column.maximum)} ({column.unit})"
    elif column.kind in ("int", "float"):
        text += f" ({column.unit})"
    return text + (", or null" if column.nullable else ", required")


ALLOWED: dict[str, str] = {c.name: allowed_text(c) for c in ORDER_COLUMNS}
ORDER_ID_ALLOWED = (
    f"string of 1 to {MAX_ORDER_ID_LENGTH} characters or integer from 0 to {MAX_ORDER_ID_INT}, "
    "optional; echoed in the answer and the prediction log"
)


_TYPE_NAMES = (
    (bool, "boolean"),  # before int: a bool is an int to isinstance
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (Mapping, "object"),
    (list | tuple, "array"),
)


def type_name(value: Any) -> str:
    """The JSON name of a value's type, as error messages say it."""
    if value is None:
        return "null"
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def parse_timestamp(value: str) -> datetime | None:
    """UTC naive datetime of an accepted timestamp text, or None when it is not one."""
    if not _TIMESTAMP_RE.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:  # e.g. February 30th: the pattern cannot see the calendar
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def missing_problem(column: Column, where: str, given: bool) -> Problem | None:
    """The problem of a missing (absent or null) value: none when the column is optional."""
    if column.nullable:
        return None
    return Problem(where, "must not be null" if given else "missing", ALLOWED[column.name])


def check_value(column: Column, value: Any, where: str) -> tuple[Any, Problem | None]:
    """The clean value of one given (not None) field, or the problem with it."""
    kind = column.kind
    allowed = ALLOWED[column.name]
    if kind == "int":
        kind_of = type(value)
        if kind_of is float:
            if not value.is_integer():
                return None, Problem(where, f"{value!r} is not a whole number", allowed)
            value = int(value)
        elif kind_of is not int:  # bool is its own type, so True is refused here
            return None, Problem(where, f"expected an integer, got {type_name(value)}", allowed)
    elif kind == "float":
        if type(value) not in (int, float) or not math.isfinite(value):
            return None, Problem(where, f"expected a number, got {type_name(value)}", allowed)
        value = float(value)
    elif kind == "str":
        if type(value) is not str:
            return None, Problem(where, f"expected a string, got {type_name(value)}", allowed)
        if len(value) > MAX_TEXT_LENGTH:
            return None, Problem(where, f"string of {len(value)} characters is too long", allowed)
        return value, None
    else:  # timestamp
        if type(value) is not str:
            return None, Problem(
                where, f"expected a timestamp string, got {type_name(value)}", allowed
            )
        parsed = parse_timestamp(value)
        if parsed is None:
            shown = value if len(value) <= 40 else value[:40] + "..."
            return None, Problem(where, f"{shown!r} is not a valid timestamp", allowed)
        return parsed, None
    if (column.minimum is not None and value < column.minimum) or (
        column.maximum is not None and value > column.maximum
    ):
        return None, Problem(where, f"{value} is out of range", allowed)
    return value, None


def check_order_id(value: Any, where: str) -> tuple[str | None, Problem | None]:
    """The order id as text (None when not given), or the problem with it."""
    if value is None:
        return None, None
    if type(value) is str and 1 <= len(value) <= MAX_ORDER_ID_LENGTH:
        return value, None
    if type(value) is int and 0 <= value <= MAX_ORDER_ID_INT:
        return str(value), None
    if type(value) is str:
        return None, Problem(where, f"string of {len(value)} characters", ORDER_ID_ALLOWED)
    if type(value) is int:
        return None, Problem(where, f"{value} is out of range", ORDER_ID_ALLOWED)
    return None, Problem(
        where, f"expected a string or an integer, got {type_name(value)}", ORDER_ID_ALLOWED
    )


def error_text(problems: Sequence[Problem]) -> str:
    """The ``error`` cell of a rejected row: every problem as ``field: what``."""
    return "; ".join(f"{p.field}: {p.problem}" for p in problems) or "rejected"


# --- columns of orders from a file -------------------------------------------------


def _number_or_text(text: Any) -> Any:
    """A cell as the number it spells, or the text (which the rule then refuses)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def casts_to_numbers(array: pa.Array) -> bool:
    """Whether Arrow reads every text cell of a column as a number (then it reads them all)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.cast(array, pa.float64())
    except pa.ArrowInvalid:
        return False
    return True


def file_values(name: str, array: pa.Array, numbers_cast: bool | None = None) -> list[Any]:
    """A file's column as the values a JSON order would hold: text spelling a number
    becomes that number, a typed timestamp its ISO text, NaN in a number column None.

    ``numbers_cast`` says whether the *whole* column's text casts to numbers, when
    ``array`` is only some of its cells: that decides how each cell is read.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    column = schema.BY_NAME.get(name)
    if column is not None and column.kind in ("int", "float") and pa.types.is_string(array.type):
        if numbers_cast is None:
            numbers_cast = casts_to_numbers(array)
        if numbers_cast:
            values = pc.cast(array, pa.float64()).to_pylist()
        else:
            values = [_number_or_text(v) for v in array.to_pylist()]
    elif pa.types.is_timestamp(array.type):
        values = [None if v is None else v.isoformat() for v in array.to_pylist()]
    else:
        values = array.to_pylist()
    if pa.types.is_floating(array.type) or (column is not None and column.kind == "int"):
        values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    if name == ORDER_ID:
        values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    return values


def rows_of(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Python dicts of a record batch, with file spellings turned into API values
    (what is sent to a server, and what the per-order rules check)."""
    columns = {name: file_values(name, batch.column(name)) for name in batch.schema.names}
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


@dataclass
class CheckedOrders:
    """A record batch of orders, checked column by column.

    ``columns`` are the model inputs of every row (what
    :func:`eta_cli.features.build_features` takes; a rejected row's cells hold anything),
    ``created_us`` the order times in microseconds, ``valid`` which rows passed,
    ``problems`` what is wrong with each rejected row (only those), and ``order_ids``
    the id each row echoes (a rejected row's id text too, as the per-order path does).
    """

    rows: int
    valid: np.ndarray
    columns: dict[str, Any]
    created_us: np.ndarray
    order_ids: list[str | None]
    problems: dict[int, list[Problem]] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return len(self.problems)

    def error_texts(self) -> list[str | None]:
        """The ``error`` cell of every row: None when valid."""
        texts: list[str | None] = [None] * self.rows
        for row, found in self.problems.items():
            texts[row] = error_text(found)
        return texts

    def valid_columns(self) -> dict[str, Any]:
        """The model inputs of the valid rows only."""
        import numpy as np

        if not self.problems:
            return self.columns
        index = np.flatnonzero(self.valid)
        return {
            name: values[index] if isinstance(values, np.ndarray) else [values[i] for i in index]
            for name, values in self.columns.items()
        }


@dataclass
class _Cells:
    """One checked column: model values, and which cells are plainly fine."""

    values: Any  # float64 (numbers), int64 microseconds (timestamps) or a list (text)
    fine: np.ndarray


def _in_range(column: Column, values: np.ndarray) -> np.ndarray:
    import numpy as np

    fine = np.ones(len(values), bool)
    with np.errstate(invalid="ignore"):
        if column.minimum is not None:
            fine &= values >= column.minimum
        if column.maximum is not None:
            fine &= values <= column.maximum
    return fine


def _number_cells(column: Column, raw: pa.Array) -> _Cells:
    """Whole numbers in range, typed or spelled as text: fine; anything else: the rule's."""
    import numpy as np
    import pyarrow as pa

    kind = raw.type
    given = present_mask(raw)
    if pa.types.is_string(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values, present, invalid = parse_numbers(raw, integral=True)
        values = np.where(present, values, np.nan)  # null slots hold anything
        fine = present & ~invalid & _in_range(column, values)
        if pa.types.is_floating(kind):  # NaN in a typed float column is missing
            given = given & ~np.isnan(values)
    else:  # booleans, decimals, dictionaries...: as their Python values say
        values = np.full(len(raw), np.nan)
        fine = np.zeros(len(raw), bool)
    return _Cells(values, fine | (~given & column.nullable))


def _timestamp_cells(column: Column, raw: pa.Array) -> _Cells:
    """``YYYY-MM-DD HH:MM:SS`` (or ``T``) of a real day, or a typed timestamp, 1970-2199."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    array = plain_array(raw)
    kind = array.type
    given = present_mask(array)
    n = len(array)
    micros = np.zeros(n, np.int64)
    fine = np.zeros(n, bool)
    if pa.types.is_string(kind):
        text = pc.replace_substring(array, "T", " ")
        fmt = "%Y-%m-%d %H:%M:%S"
        parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        # Round trip: what Arrow normalised (Feb 30, hour 24) goes to the rule of one value.
        fine = true_mask(pc.match_substring_regex(array, _PLAIN_TIMESTAMP))
        fine &= true_mask(pc.equal(pc.strftime(parsed, format=fmt), text))
        micros = np.where(fine, fixed_width(parsed, np.int64), 0) * 1_000_000
    elif pa.types.is_timestamp(kind) and kind.tz is None:
        ticks = fixed_width(array, np.int64)
        if kind.unit == "ns":  # more digits than microseconds are not a valid timestamp
            exact = ticks % 1000 == 0
            values = ticks // 1000
        else:
            exact = np.ones(n, bool)
            values = ticks * {"s": 1_000_000, "ms": 1_000, "us": 1}[kind.unit]
        years = values.astype("datetime64[us]").astype("datetime64[Y]").astype(np.int64) + 1970
        fine = given & exact & (years >= 1970) & (years <= 2199)
        micros = np.where(fine, values, 0)
    return _Cells(micros, fine | (~given & column.nullable))


def _text_cells(column: Column, raw: pa.Array) -> _Cells:
    """Text of at most :data:`MAX_TEXT_LENGTH` characters, as given."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    array = plain_array(raw)
    given = present_mask(array)
    if pa.types.is_string(array.type):
        length = fixed_width(pc.utf8_length(array), np.int32)
        fine = given & (length <= MAX_TEXT_LENGTH)
        values: list[Any] = array.to_pylist()
    else:
        fine = np.zeros(len(array), bool)
        values = [None] * len(array)
    return _Cells(values, fine | (~given & column.nullable))


_CELLS = {"int": _number_cells, "timestamp": _timestamp_cells, "str": _text_cells}


def _settle(
    column: Column, raw: pa.Array, cells: _Cells, problems: dict[int, list[Problem]]
) -> None:
    """Decide the cells that are not plainly fine with the rule of one value: take the
    clean value of an odd spelling, record the problem of a bad one."""
    import numpy as np
    import pyarrow as pa

    rows = np.flatnonzero(~cells.fine)
    if rows.size == 0:
        return
    whole = casts_to_numbers(raw) if pa.types.is_string(raw.type) else None
    values = file_values(column.name, raw.take(pa.array(rows)), numbers_cast=whole)
    for row, value in zip(rows.tolist(), values, strict=True):
        if value is None:
            clean, problem = None, missing_problem(column, column.name, given=True)
        else:
            clean, problem = check_value(column, value, column.name)
        if problem is not None:
            problems.setdefault(row, []).append(problem)
        elif column.kind == "timestamp":
            cells.values[row] = (clean - _EPOCH) // timedelta(microseconds=1)
        elif column.kind == "str":
            cells.values[row] = clean
        else:
            cells.values[row] = np.nan if clean is None else clean


def _absent(column: Column, n: int, problems: dict[int, list[Problem]]) -> Any:
    """Model values of a column the file does not have (every row missing it)."""
    import numpy as np

    problem = missing_problem(column, column.name, given=False)
    if problem is not None:  # the batch reader refuses such files; a caller may not
        for row in range(n):
            problems.setdefault(row, []).append(problem)
    if column.kind == "str":
        return [None] * n
    if column.kind == "timestamp":
        return np.zeros(n, "datetime64[us]")
    return np.full(n, np.nan)


def _order_ids(batch: pa.RecordBatch, problems: dict[int, list[Problem]]) -> list[str | None]:
    """The id each row echoes: text as given (also when refused), an integer as text."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    if ORDER_ID not in batch.schema.names:
        return [None] * n
    raw = batch.column(ORDER_ID)
    array = plain_array(raw)
    given = present_mask(array)
    if pa.types.is_string(array.type):
        length = fixed_width(pc.utf8_length(array), np.int32)
        fine = ~given | ((length >= 1) & (length <= MAX_ORDER_ID_LENGTH))
        ids: list[Any] = array.to_pylist()
    elif pa.types.is_integer(array.type):
        values = fixed_width(array, array.type.to_pandas_dtype())
        top = values <= MAX_ORDER_ID_INT if values.dtype.kind == "u" else values >= 0
        fine = ~given | top
        ids = pc.cast(array, pa.string()).to_pylist()
    else:
        fine = ~given
        ids = [None] * n
    rows = np.flatnonzero(~fine)
    if rows.size:
        given_ids = file_values(ORDER_ID, raw.take(pa.array(rows)))
        for row, value in zip(rows.tolist(), given_ids, strict=True):
            clean, problem = check_order_id(value, ORDER_ID)
            ids[row] = clean if clean is not None or not isinstance(value, str) else value
            if problem is not None:
                problems.setdefault(row, []).append(problem)
    return ids


def check_batch(batch: pa.RecordBatch) -> CheckedOrders:
    """Check a record batch of orders (columns named as the order fields) as columns.

    Every row gets exactly the verdict and the messages that
    :func:`eta_cli.validation.validate_order` gives the order :func:`rows_of` makes of it.
    """
    import numpy as np

    n = batch.num_rows
    names = set(batch.schema.names)
    problems: dict[int, list[Problem]] = {}
    columns: dict[str, Any] = {}
    created = np.zeros(n, np.int64)
    for column in ORDER_COLUMNS:
        if column.name not in names:
            columns[column.name] = _absent(column, n, problems)
            continue
        raw = batch.column(column.name)
        cells = _CELLS[column.kind](column, raw)
        _settle(column, raw, cells, problems)
        if column.kind == "timestamp":
            created = cells.values
            columns[column.name] = created.astype("datetime64[us]")
        else:
            columns[column.name] = cells.values
    order_ids = _order_ids(batch, problems)
    valid = np.ones(n, bool)
    if problems:
        valid[list(problems)] = False
    problems = {row: problems[row] for row in sorted(problems)}
    return CheckedOrders(n, valid, columns, created, order_ids, problems)


# --- columns for ingest: values with present and invalid masks ---------------------

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
