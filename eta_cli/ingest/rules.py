"""The cleaning rules: the single place that says what ingest accepts.

A row is rejected (quarantined with a reason) by the first ``reject`` rule that matches,
in :data:`RULES` order; a ``blank`` rule nulls one out-of-range value and keeps the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eta_cli import schema


@dataclass(frozen=True)
class Rule:
    """One cleaning rule. ``reject`` quarantines the row, ``blank`` nulls one value."""

    reason: str
    action: Literal["reject", "blank"]
    column: str | None
    description: str


def _build_rules() -> tuple[Rule, ...]:
    """Every rule in the order it applies, derived from the schema's column definitions."""
    cols = schema.COLUMNS
    rules = [
        Rule(
            "malformed_row",
            "reject",
            None,
            "a CSV line whose number of fields differs from the header",
        ),
        Rule(
            "invalid_order_id",
            "reject",
            schema.ORDER_ID,
            f"the source's order_id is not 1 to {schema.ORDER_ID_MAX_LENGTH} letters, digits "
            "or . _ : - starting with a letter or digit (a blank one is derived instead)",
        ),
    ]
    rules += [
        Rule(
            f"invalid_{c.name}",
            "reject",
            c.name,
            f"value present but not a valid {schema.describe_column(c.name)}",
        )
        for c in cols
    ]
    rules += [
        Rule(f"missing_{c.name}", "reject", c.name, "required value is missing")
        for c in cols
        if not c.nullable
    ]
    rules += [
        Rule(
            f"{c.name}_out_of_range",
            "reject",
            c.name,
            f"outside {c.minimum:g} to {c.maximum:g} {c.unit}",
        )
        for c in cols
        if c.out_of_range == "reject" and c.minimum is not None
    ]
    rules.append(
        Rule(
            "duration_out_of_range",
            "reject",
            schema.TARGET,
            "actual_delivery_time - created_at outside "
            "[settings.min_duration_s, settings.max_duration_s]",
        )
    )
    rules.append(
        Rule(
            "duplicate_order",
            "reject",
            schema.ORDER_ID,
            "same order_id already in the dataset or earlier in this run",
        )
    )
    rules += [
        Rule(
            f"{c.name}_out_of_range",
            "blank",
            c.name,
            f"outside {c.minimum:g} to {c.maximum:g} {c.unit}: value blanked, row kept",
        )
        for c in cols
        if c.out_of_range == "null" and c.minimum is not None
    ]
    return tuple(rules)


#: Every rule, in the order it is applied: a rejected row gets the first reason that matches.
RULES: tuple[Rule, ...] = _build_rules()
REJECT_REASONS: tuple[str, ...] = tuple(r.reason for r in RULES if r.action == "reject")
BLANK_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.action == "blank")
#: The rejection code of each reason in a chunk's code array (0 means accepted).
REJECT_CODE = {reason: i + 1 for i, reason in enumerate(REJECT_REASONS)}
#: The bit of each blanked column in a staged row's ``_blank`` mask.
BLANK_BIT = {r.column: i for i, r in enumerate(BLANK_RULES)}
