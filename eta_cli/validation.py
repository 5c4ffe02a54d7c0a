"""Validation of orders sent for prediction: one JSON order, or a request of them.

The rules themselves (types, ranges, spellings and the message of each problem) live
in :mod:`eta_cli.orders`, generated from :data:`eta_cli.schema.COLUMNS`, the definitions
ingest cleans with; batch files are checked with the same rules as whole columns.
This module applies them to decoded JSON: the shape of a request, unknown and
forbidden fields, and the error answered. Serving is stricter than ingest: ingest
blanks an out-of-range feature and keeps the order, while a caller asking for a
prediction gets a 4xx naming the field, because a silently blanked input would give
a silently worse ETA.

Plain Python on purpose: a single order is validated in a few microseconds, with
no pandas (nor NumPy or Arrow) on the request path. An HTTP batch is at most
``ETA_MAX_BATCH_ORDERS`` orders already decoded into Python objects, so it is
checked order by order with the same functions (:func:`eta_cli.orders.check_value`):
building Arrow columns of them would cost more than checking them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eta_cli import schema
from eta_cli.orders import (
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
    missing_problem,
    parse_timestamp,
    type_name,
)

__all__ = [
    "ACCEPTED_FIELDS",
    "BATCH_KEY",
    "FORBIDDEN_FIELDS",
    "MAX_DETAILS",
    "MAX_ORDER_ID_INT",
    "MAX_ORDER_ID_LENGTH",
    "MAX_TEXT_LENGTH",
    "ORDER_COLUMNS",
    "ORDER_ID",
    "ORDER_ID_ALLOWED",
    "PARTIAL_KEY",
    "REQUIRED_FIELDS",
    "TIMESTAMP_PATTERN",
    "ApiError",
    "PredictRequest",
    "Problem",
    "allowed_text",
    "interval_field",
    "parse_json",
    "parse_predict_request",
    "parse_timestamp",
    "validate_order",
]

BATCH_KEY = "orders"
# ``{"orders": [...], "partial": true}``: answer the valid orders and mark the invalid ones
# (HTTP 200) instead of refusing the whole batch with a 422, the default, which keeps a
# client that does not read per-order errors from silently missing orders.
PARTIAL_KEY = "partial"
MAX_DETAILS = 100

# Known but refused: the label is not known when the order is placed.
FORBIDDEN_FIELDS: dict[str, str] = {
    c.name: f"not allowed at prediction time ({c.description}: not known when the order is placed)"
    for c in schema.COLUMNS
    if not c.known_at_order_time
}


class ApiError(Exception):
    """A request the API refuses: an HTTP status, a message and the problems found."""

    def __init__(self, status: int, message: str, details: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "details": [d.to_dict() for d in self.details]}


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
                    f"expected an order object, got {type_name(order)}",
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
            missing = missing_problem(column, prefix + name, given=name in order)
            if missing is not None:
                problems.append(missing)
            record[name] = None
            continue
        clean, problem = check_value(column, value, prefix + name)
        if problem is not None:
            problems.append(problem)
        record[name] = clean
    order_id, problem = check_order_id(order.get(ORDER_ID), prefix + ORDER_ID)
    if problem is not None:
        problems.append(problem)
    for key in order:
        if key in _ACCEPTED_SET:
            continue
        if key in FORBIDDEN_FIELDS:
            problems.append(Problem(prefix + key, FORBIDDEN_FIELDS[key], _UNKNOWN_ALLOWED))
        else:
            problems.append(Problem(prefix + shown_key(key), "unknown field", _UNKNOWN_ALLOWED))
    return (None if problems else record), order_id, problems


def shown_key(key: str) -> str:
    """A client's field name as an error names it: as sent when it is printable, else
    JSON-quoted and escaped (an empty name, a NUL or a lone surrogate must be visible
    and writable in any answer or log); long names cut at 60 characters."""
    cut = key if len(key) <= 60 else key[:60] + "..."
    return cut if cut and cut.isprintable() else json.dumps(cut)


@dataclass
class PredictRequest:
    """The orders of one valid request: clean records, their ids, batch or single.

    A partial batch also carries the orders it refused, by position in the request
    (``rejected``), so the answer can keep every order in the place it was sent.
    """

    records: list[dict[str, Any]]
    order_ids: list[str | None]
    batch: bool
    rejected: dict[int, tuple[str | None, list[Problem]]] = field(default_factory=dict)

    def answers(self, predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One item per order sent, in order: its prediction, or its error and details."""
        if not self.rejected:
            return predictions
        made = iter(predictions)
        out = []
        for index in range(len(predictions) + len(self.rejected)):
            if index in self.rejected:
                order_id, problems = self.rejected[index]
                out.append(
                    {
                        "index": index,
                        "order_id": order_id,
                        "error": "invalid order",
                        "details": [p.to_dict() for p in problems[:MAX_DETAILS]],
                    }
                )
            else:
                out.append(next(made))
        return out


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
        extra = [k for k in body if k not in (BATCH_KEY, PARTIAL_KEY)]
        orders = body[BATCH_KEY]
        partial = body.get(PARTIAL_KEY, False)
        if extra:
            raise ApiError(
                422,
                "invalid batch",
                [
                    Problem(
                        shown_key(k),
                        "unknown field in a batch",
                        f"only '{BATCH_KEY}' and '{PARTIAL_KEY}'",
                    )
                    for k in extra[:MAX_DETAILS]
                ],
            )
        if not isinstance(partial, bool):
            raise ApiError(
                422,
                "invalid batch",
                [
                    Problem(
                        PARTIAL_KEY,
                        f"expected true or false, got {type_name(partial)}",
                        "true (answer the valid orders) or false (the default: all or none)",
                    )
                ],
            )
        allowed = f"an array of 1 to {max_batch} order objects"
        if not isinstance(orders, list):
            raise ApiError(
                422,
                "invalid batch",
                [Problem(BATCH_KEY, f"expected an array, got {type_name(orders)}", allowed)],
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
        rejected: dict[int, tuple[str | None, list[Problem]]] = {}
        for i, order in enumerate(orders):
            record, order_id, found = validate_order(order, f"{BATCH_KEY}[{i}].")
            if found:
                problems.extend(found)
                rejected[i] = (order_id, found)
            else:
                records.append(record)  # type: ignore[arg-type]
                ids.append(order_id)
        if problems and not partial:
            raise _invalid(problems, "invalid orders")
        return PredictRequest(records, ids, batch=True, rejected=rejected)
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
