"""Columns of orders from a file: an Arrow record batch checked as whole columns.

Cells in the common spellings are accepted with vectorised Arrow/NumPy code; every
other cell is decided by the rule of one value (:mod:`eta_cli.orders.values`), so the
column path and the per-order path cannot disagree, and messages are built only for the
rows that are rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.schema import Column

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

from eta_cli.orders.columns import fixed_width, parse_numbers, plain_array, present_mask, true_mask
from eta_cli.orders.values import (
    MAX_ORDER_ID_INT,
    MAX_ORDER_ID_LENGTH,
    MAX_TEXT_LENGTH,
    ORDER_COLUMNS,
    ORDER_ID,
    Problem,
    check_order_id,
    check_value,
    error_text,
    missing_problem,
)

# The spelling of most files, checked without Python per value (calendar by round trip).
_PLAIN_TIMESTAMP = r"^(19[7-9][0-9]|2[01][0-9]{2})-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}$"
_EPOCH = datetime(1970, 1, 1)


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
    """Text of at most :data:`MAX_TEXT_LENGTH` characters, as given. Plain printable ASCII
    is settled here; any other text by the rule of one value (printable characters only),
    so the two paths cannot disagree on what is printable."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    array = plain_array(raw)
    given = present_mask(array)
    if pa.types.is_string(array.type):
        length = fixed_width(pc.utf8_length(array), np.int32)
        plain = true_mask(pc.match_substring_regex(array, r"^[\x20-\x7e]*$"))
        fine = given & (length <= MAX_TEXT_LENGTH) & plain
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
        in_alphabet = true_mask(pc.match_substring_regex(array, schema.ORDER_ID_PATTERN))
        fine = ~given | ((length >= 1) & (length <= MAX_ORDER_ID_LENGTH) & in_alphabet)
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
            # A refused text id is echoed when it can be written anywhere (printable).
            echo = value if isinstance(value, str) and value.isprintable() else None
            ids[row] = clean if clean is not None else echo
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
