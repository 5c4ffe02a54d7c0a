"""The rule of one order value: accepted types, ranges and spellings, and the message
when a value breaks it (field, what was wrong, what is allowed).

Applied to one JSON order by :func:`eta_cli.validation.validate_order` and, for the
cells the vectorised checks cannot settle, by :func:`eta_cli.orders.batch.check_batch`.
No NumPy or pyarrow here: this is on the request path of ``eta serve``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.schema import Column

if TYPE_CHECKING:
    pass

ORDER_ID = schema.ORDER_ID
MAX_TEXT_LENGTH = 200
MAX_ORDER_ID_LENGTH = schema.ORDER_ID_MAX_LENGTH
MAX_ORDER_ID_INT = 2**63 - 1
_ORDER_ID_RE = re.compile(schema.ORDER_ID_PATTERN)

# Years 1970-2199 keep created_at + quoted ETA inside every datetime type we use.
TIMESTAMP_PATTERN = (
    r"^(19[7-9][0-9]|2[01][0-9]{2})-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}"
    r"(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)

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
        text = (
            f"string of at most {MAX_TEXT_LENGTH} printable characters (no control "
            "characters, line breaks, NUL or lone surrogates)"
        )
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
    f"string of 1 to {MAX_ORDER_ID_LENGTH} letters, digits and . _ : - starting with a letter "
    f"or digit, or integer from 0 to {MAX_ORDER_ID_INT}, optional; echoed in the answer "
    "and the prediction log"
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
        if not value.isprintable():  # control characters, NUL, surrogates, line breaks
            return None, Problem(where, f"{_unprintable(value)} is not allowed", allowed)
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


def _unprintable(text: str) -> str:
    """The first character of ``text`` that is not printable, named by its code point
    (never echoed raw: it may be a NUL or a lone surrogate, which cannot be encoded)."""
    char = next(c for c in text if not c.isprintable())
    return f"character U+{ord(char):04X}"


def check_order_id(value: Any, where: str) -> tuple[str | None, Problem | None]:
    """The order id as text (None when not given), or the problem with it.

    A text id must match :data:`eta_cli.schema.ORDER_ID_PATTERN`, the one id alphabet
    ingest and batch files use too, so an id is safe as it is in every log, database,
    report and URL it reaches.
    """
    if value is None:
        return None, None
    if type(value) is str and _ORDER_ID_RE.fullmatch(value):
        return value, None
    if type(value) is int and 0 <= value <= MAX_ORDER_ID_INT:
        return str(value), None
    if type(value) is str:
        if not 1 <= len(value) <= MAX_ORDER_ID_LENGTH:
            return None, Problem(where, f"string of {len(value)} characters", ORDER_ID_ALLOWED)
        bad = next(
            (c for i, c in enumerate(value) if not _ORDER_ID_RE.fullmatch("a" + c if i else c)),
            value[0],
        )
        shown = f"character {bad!r}" if bad.isprintable() and bad.isascii() else f"U+{ord(bad):04X}"
        return None, Problem(where, f"{shown} is not allowed here", ORDER_ID_ALLOWED)
    if type(value) is int:
        return None, Problem(where, f"{value} is out of range", ORDER_ID_ALLOWED)
    return None, Problem(
        where, f"expected a string or an integer, got {type_name(value)}", ORDER_ID_ALLOWED
    )


def error_text(problems: Sequence[Problem]) -> str:
    """The ``error`` cell of a rejected row: every problem as ``field: what``."""
    return "; ".join(f"{p.field}: {p.problem}" for p in problems) or "rejected"
