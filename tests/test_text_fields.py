"""Text fields are safe by construction, with one rule on every path: the HTTP validator
(one order), and the column checks of batch files (``eta predict --input``). An id must
match schema.ORDER_ID_PATTERN; a category must be printable (no control characters,
line breaks, NUL or lone surrogates)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from helpers_model import sample_orders

from eta_cli import schema, validation
from eta_cli.orders import check_batch

BASE = {k: v for k, v in sample_orders(1)[0].items() if k != "order_id"}
# Texts Arrow can hold (a lone surrogate cannot be in a file: it is not UTF-8).
IDS = [
    "A-1",
    "demo-0001",
    "x",
    "a.b_c:d",
    "nul\x00id",
    "</script>",
    " padded",
    "a" * 64,
    "a" * 65,
    "tab\tid",
    "é",
    "line\n",
    "-lead",
    "ok:1",
    "",
]
CATEGORIES = [
    "pizza",
    "Café & Bar",
    "日本料理",
    "</script>",
    "pizza\x00",
    "line\nbreak",
    "bell\x07",
    "\u202eevil",
    "\x85",
    "",
    " spaced ",
]


def test_the_id_alphabet_is_the_schema_s():
    import re

    pattern = re.compile(schema.ORDER_ID_PATTERN)
    for order_id in IDS:
        _, clean_id, problems = validation.validate_order({**BASE, "order_id": order_id})
        assert (not problems) == bool(pattern.fullmatch(order_id)), order_id
        assert clean_id == (order_id if not problems else None)
        if problems:
            assert problems[0].field == "order_id"
            assert "letters, digits and . _ : -" in problems[0].allowed
            assert "\x00" not in problems[0].problem and "\n" not in problems[0].problem


@pytest.mark.parametrize("category", ["\ud800", "pizza\x00", "line\nbreak", "bell\x07", "\x85"])
def test_unprintable_categories_are_refused_naming_the_field(category):
    _, _, problems = validation.validate_order({**BASE, "store_primary_category": category})
    assert [p.field for p in problems] == ["store_primary_category"]
    assert "printable" in problems[0].allowed
    problems[0].problem.encode("utf-8")  # the message itself is always writable


def test_file_columns_get_the_same_verdict_as_one_order():
    orders = [{**BASE, "order_id": i} for i in IDS]
    orders += [
        {**BASE, "order_id": f"c{n}", "store_primary_category": c} for n, c in enumerate(CATEGORIES)
    ]
    names = list(orders[0])
    batch = pa.RecordBatch.from_pydict({n: [o.get(n) for o in orders] for n in names})
    checked = check_batch(batch)
    for row, order in enumerate(orders):
        _, clean_id, problems = validation.validate_order(order)
        assert bool(checked.valid[row]) == (not problems), order
        assert [p.field for p in checked.problems.get(row, [])] == [p.field for p in problems]
        if not problems:
            assert checked.order_ids[row] == clean_id
        elif checked.order_ids[row] is not None:
            assert checked.order_ids[row].isprintable()
