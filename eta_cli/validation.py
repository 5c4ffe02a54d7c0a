"""Validation of orders sent for prediction, and the OpenAPI description of the API.

Both are generated from :data:`eta_cli.schema.COLUMNS` (names, kinds, nullability,
minimum/maximum: the definitions ingest cleans with), so what the server accepts
and what ``/openapi.json`` documents cannot drift apart. Serving is stricter than
ingest: ingest blanks an out-of-range feature and keeps the order, while a caller
asking for a prediction gets a 4xx naming the field, because a silently blanked
input would give a silently worse ETA.

Plain Python on purpose: a single order is validated in a few microseconds, with
no pandas on the request path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eta_cli import schema
from eta_cli.schema import Column

ORDER_ID = schema.ORDER_ID
BATCH_KEY = "orders"
MAX_TEXT_LENGTH = 200
MAX_ORDER_ID_LENGTH = 64
MAX_ORDER_ID_INT = 2**63 - 1
MAX_DETAILS = 100

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
# Known but refused: the label is not known when the order is placed.
FORBIDDEN_FIELDS: dict[str, str] = {
    c.name: f"not allowed at prediction time ({c.description}: not known when the order is placed)"
    for c in schema.COLUMNS
    if not c.known_at_order_time
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: which field, what is wrong, what is allowed."""

    field: str
    problem: str
    allowed: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "problem": self.problem, "allowed": self.allowed}


class ApiError(Exception):
    """A request the API refuses: an HTTP status, a message and the problems found."""

    def __init__(self, status: int, message: str, details: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "details": [d.to_dict() for d in self.details]}


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


ORDER_ID_ALLOWED = (
    f"string of 1 to {MAX_ORDER_ID_LENGTH} characters or integer from 0 to {MAX_ORDER_ID_INT}, "
    "optional; echoed in the answer and the prediction log"
)
_ALLOWED = {c.name: allowed_text(c) for c in ORDER_COLUMNS}
_UNKNOWN_ALLOWED = "one of: " + ", ".join(ACCEPTED_FIELDS)
_ACCEPTED_SET = frozenset(ACCEPTED_FIELDS)
# (column, name, low, high): an int in [low, high] is accepted without further checks;
# other kinds get an empty range so they always take the full check.
_INT_FAST_PATH = tuple(
    (
        c,
        c.name,
        c.minimum if c.kind == "int" and c.minimum is not None else math.inf,
        c.maximum if c.kind == "int" and c.maximum is not None else -math.inf,
    )
    for c in ORDER_COLUMNS
)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
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


def _check_column(column: Column, value: Any, where: str) -> tuple[Any, Problem | None]:
    """The clean value of one field, or the problem with it."""
    kind = column.kind
    allowed = _ALLOWED[column.name]
    if kind == "int":
        kind_of = type(value)
        if kind_of is float:
            if not value.is_integer():
                return None, Problem(where, f"{value!r} is not a whole number", allowed)
            value = int(value)
        elif kind_of is not int:  # bool is its own type, so True is refused here
            return None, Problem(where, f"expected an integer, got {_type_name(value)}", allowed)
    elif kind == "float":
        if type(value) not in (int, float) or not math.isfinite(value):
            return None, Problem(where, f"expected a number, got {_type_name(value)}", allowed)
        value = float(value)
    elif kind == "str":
        if type(value) is not str:
            return None, Problem(where, f"expected a string, got {_type_name(value)}", allowed)
        if len(value) > MAX_TEXT_LENGTH:
            return None, Problem(where, f"string of {len(value)} characters is too long", allowed)
        return value, None
    else:  # timestamp
        if type(value) is not str:
            return None, Problem(
                where, f"expected a timestamp string, got {_type_name(value)}", allowed
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


def _check_order_id(value: Any, where: str) -> tuple[str | None, Problem | None]:
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
        where, f"expected a string or an integer, got {_type_name(value)}", ORDER_ID_ALLOWED
    )


def validate_order(
    order: Any, prefix: str = ""
) -> tuple[dict[str, Any] | None, str | None, list[Problem]]:
    """Check one order; return (clean record, order id, problems).

    The record has every input column (missing optional ones as None), ints as
    ``int`` and ``created_at`` as a naive UTC ``datetime``, which is what
    :func:`eta_cli.features.columns_from_records` takes. It is None when any
    problem was found; every problem is reported, not only the first.
    """
    if not isinstance(order, dict):
        return (
            None,
            None,
            [
                Problem(
                    prefix or "body",
                    f"expected an order object, got {_type_name(order)}",
                    "a JSON object with the order fields",
                )
            ],
        )
    problems: list[Problem] = []
    record: dict[str, Any] = {}
    for column, name, low, high in _INT_FAST_PATH:
        value = order.get(name)
        # The common case, inlined: an int (not a bool) within range.
        if type(value) is int and low <= value <= high:
            record[name] = value
            continue
        if value is None:
            if not column.nullable:
                problem = "missing" if name not in order else "must not be null"
                problems.append(Problem(prefix + name, problem, _ALLOWED[name]))
            record[name] = None
            continue
        clean, problem = _check_column(column, value, prefix + name)
        if problem is not None:
            problems.append(problem)
        record[name] = clean
    order_id, problem = _check_order_id(order.get(ORDER_ID), prefix + ORDER_ID)
    if problem is not None:
        problems.append(problem)
    for key in order:
        if key in _ACCEPTED_SET:
            continue
        if key in FORBIDDEN_FIELDS:
            problems.append(Problem(prefix + key, FORBIDDEN_FIELDS[key], _UNKNOWN_ALLOWED))
        else:
            shown = key if len(key) <= 60 else key[:60] + "..."
            problems.append(Problem(prefix + shown, "unknown field", _UNKNOWN_ALLOWED))
    return (None if problems else record), order_id, problems


@dataclass
class PredictRequest:
    """The orders of one valid request: clean records, their ids, batch or single."""

    records: list[dict[str, Any]]
    order_ids: list[str | None]
    batch: bool


def parse_json(raw: bytes) -> Any:
    """Decode a JSON body; refuse empty bodies, bad UTF-8, NaN/Infinity and absurd nesting."""
    if not raw or not raw.strip():
        raise ApiError(400, "empty body", [Problem("body", "empty", "a JSON object")])

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise ApiError(
            400, "body is not valid JSON", [Problem("body", "nested too deeply", "a JSON object")]
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(
            400, "body is not valid JSON", [Problem("body", str(exc)[:200], "a JSON object")]
        ) from None


def parse_predict_request(body: Any, max_batch: int) -> PredictRequest:
    """Validate a decoded ``POST /predict`` body: one order, or ``{"orders": [...]}``."""
    if isinstance(body, dict) and BATCH_KEY in body:
        extra = [k for k in body if k != BATCH_KEY]
        orders = body[BATCH_KEY]
        if extra:
            raise ApiError(
                422,
                "invalid batch",
                [
                    Problem(k[:60], "unknown field in a batch", f"only '{BATCH_KEY}'")
                    for k in extra[:MAX_DETAILS]
                ],
            )
        allowed = f"an array of 1 to {max_batch} order objects"
        if not isinstance(orders, list):
            raise ApiError(
                422,
                "invalid batch",
                [Problem(BATCH_KEY, f"expected an array, got {_type_name(orders)}", allowed)],
            )
        if not orders:
            raise ApiError(422, "invalid batch", [Problem(BATCH_KEY, "empty", allowed)])
        if len(orders) > max_batch:
            raise ApiError(
                413,
                "batch too large",
                [Problem(BATCH_KEY, f"{len(orders)} orders", allowed)],
            )
        records: list[dict[str, Any]] = []
        ids: list[str | None] = []
        problems: list[Problem] = []
        for i, order in enumerate(orders):
            record, order_id, found = validate_order(order, f"{BATCH_KEY}[{i}].")
            if found:
                problems.extend(found)
            else:
                records.append(record)  # type: ignore[arg-type]
                ids.append(order_id)
        if problems:
            raise _invalid(problems, "invalid orders")
        return PredictRequest(records, ids, batch=True)
    record, order_id, problems = validate_order(body)
    if problems:
        raise _invalid(problems, "invalid order")
    return PredictRequest([record], [order_id], batch=False)  # type: ignore[list-item]


def _invalid(problems: list[Problem], message: str) -> ApiError:
    details = problems[:MAX_DETAILS]
    if len(problems) > MAX_DETAILS:
        details.append(Problem("...", f"{len(problems) - MAX_DETAILS} more problems not shown"))
    return ApiError(422, message, details)


def interval_field(quantile: float) -> str:
    """Answer field of a quantile, e.g. 0.1 -> ``eta_p10_s``."""
    percent = round(quantile * 100, 4)
    text = str(int(percent)) if float(percent).is_integer() else str(percent).replace(".", "_")
    return f"eta_p{text}_s"
