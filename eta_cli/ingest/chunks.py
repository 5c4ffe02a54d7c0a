"""Checking one chunk of orders against the rules, vectorised, and staging the outcome.

A chunk is parsed column by column (:mod:`eta_cli.orders`), every rule of
:data:`~eta_cli.ingest.rules.RULES` becomes a boolean mask, and the first matching
rule gives each rejected row its reason. Each row gets its ``order_id``
(:mod:`eta_cli.order_ids`): the source's own id when it has one (checked against the
id alphabet; a bad one quarantines the row as ``invalid_order_id``), otherwise the id
derived from its order-time fields after cleaning, as serving derives it. Accepted
rows leave grouped by order day for staging; rejected rows keep their raw values as
text, their source and row number.
Checking is pure (no I/O), so chunks are checked on threads or Dask workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eta_cli import schema
from eta_cli.config import Settings
from eta_cli.ingest.result import IngestResult
from eta_cli.ingest.rules import BLANK_BIT, REJECT_CODE, REJECT_REASONS
from eta_cli.lake import QUARANTINE_SCHEMA, STAGE_SCHEMA, DayStreams
from eta_cli.order_ids import derive_order_ids, given_order_ids
from eta_cli.orders import (
    as_text,
    constant_text,
    parse_numbers,
    parse_strings,
    parse_timestamps,
    with_mask,
)

_US_PER_DAY = 86_400_000_000


@dataclass
class Checked:
    """One validated chunk: accepted rows sorted by order day, and the rejected rows."""

    rows: int
    accepted: pa.RecordBatch | None
    days: np.ndarray
    rejected: pa.RecordBatch | None
    reasons: dict[str, int]


@dataclass
class _Parsed:
    """A chunk's columns parsed and typed, with what the rules and staging need."""

    n: int
    columns: list[tuple[Any, np.ndarray | None, pa.DataType | None]] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # rule reason -> rows it hits
    micros: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    blank: np.ndarray = field(init=False)  # per row, a bit per value to blank
    ids: pa.Array = field(init=False)  # order_id of every row (given or derived)
    given: np.ndarray | None = None  # rows whose id came from the source
    created: np.ndarray = field(init=False)
    duration: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.blank = np.zeros(self.n, np.uint32)


def check_chunk(
    batch: pa.RecordBatch, src_index: int, label: str, row_offset: int, settings: Settings
) -> Checked:
    """Apply the rules to one chunk, vectorised. Pure: safe to run on a worker thread."""
    n = batch.num_rows
    if n == 0:
        return Checked(0, None, np.zeros(0, np.int64), None, {})
    parsed = _parse_chunk(batch, settings)
    code = _reject_codes(parsed.masks, n)
    rows = np.arange(row_offset + 1, row_offset + n + 1, dtype=np.int64)
    accepted_mask = code == 0
    accepted, days = _accepted_rows(parsed, accepted_mask, src_index, rows)
    if accepted_mask.all():
        return Checked(n, accepted, days, None, {})
    rejected, reasons = _rejected_rows(batch, parsed, code, accepted_mask, label, rows)
    return Checked(n, accepted, days, rejected, reasons)


def _parse_chunk(batch: pa.RecordBatch, settings: Settings) -> _Parsed:
    """Every column parsed, the order ids, and the mask of every rule that applies."""
    parsed = _Parsed(batch.num_rows)
    for column in schema.COLUMNS:
        arr = batch.column(column.name)
        if column.kind in ("int", "float"):
            present = _parse_number_column(parsed, column, arr)
        elif column.kind == "timestamp":
            present = _parse_timestamp_column(parsed, column, arr)
        else:
            strings, present, _ = parse_strings(arr)
            parsed.columns.append((strings, None, None))
        if not column.nullable:
            parsed.masks[f"missing_{column.name}"] = ~present
    _order_ids(parsed, batch)

    created, created_ok = parsed.micros[schema.CREATED_AT]
    delivered, delivered_ok = parsed.micros[schema.DELIVERED_AT]
    parsed.created = created
    parsed.duration = (delivered - created) / 1e6
    parsed.masks["duration_out_of_range"] = (
        created_ok
        & delivered_ok
        & (
            (parsed.duration < settings.min_duration_s)
            | (parsed.duration > settings.max_duration_s)
        )
    )
    return parsed


def _parse_number_column(parsed: _Parsed, column: Any, arr: pa.Array) -> np.ndarray:
    """An int/float column: typed values, invalid and range masks."""
    values, present, invalid = parse_numbers(arr, integral=column.kind == "int")
    valid = present & ~invalid
    if column.kind == "int":
        typed = np.where(valid, np.clip(values, -(2**62), 2**62), 0).astype(np.int64)
        parsed.columns.append((typed, valid, pa.int64()))
    else:
        typed = np.where(valid, values, 0.0)
        parsed.columns.append((typed, valid, pa.float64()))
    if column.minimum is not None:
        out = valid & ((values < column.minimum) | (values > column.maximum))
        if column.out_of_range == "reject":
            parsed.masks[f"{column.name}_out_of_range"] = out
        elif out.any():
            parsed.blank |= out.astype(np.uint32) << np.uint32(BLANK_BIT[column.name])
    parsed.masks[f"invalid_{column.name}"] = invalid
    return present


def _parse_timestamp_column(parsed: _Parsed, column: Any, arr: pa.Array) -> np.ndarray:
    """A timestamp column: microseconds and its invalid mask."""
    stamps, present, invalid = parse_timestamps(arr)
    valid = present & ~invalid
    parsed.columns.append((stamps, valid, pa.timestamp("us")))
    parsed.micros[column.name] = (stamps, valid)
    parsed.masks[f"invalid_{column.name}"] = invalid
    return present


def _order_ids(parsed: _Parsed, batch: pa.RecordBatch) -> None:
    """Each row's ``order_id``: the source's own (validated), else derived from the
    order-time values as the lake will hold them (values the ``blank`` rules null count
    as missing), which is what ``eta serve`` derives for the same order."""
    given = None
    if schema.ORDER_ID in batch.schema.names:
        given, invalid = given_order_ids(batch.column(schema.ORDER_ID))
        parsed.masks["invalid_order_id"] = invalid
        parsed.given = given.is_valid().to_numpy(zero_copy_only=False)
        if parsed.given.all():
            parsed.ids = given
            return
    order_time = {}
    for column, (values, valid, kind) in zip(schema.COLUMNS, parsed.columns, strict=True):
        if not column.known_at_order_time:
            continue
        bit = BLANK_BIT.get(column.name)
        if valid is not None and bit is not None and parsed.blank.any():
            valid = valid & ((parsed.blank >> np.uint32(bit)) & np.uint32(1) == 0)
        order_time[column.name] = values if valid is None else with_mask(values, valid, kind)
    derived = derive_order_ids(order_time)
    parsed.ids = derived if given is None else pc.coalesce(given, derived)


def _reject_codes(masks: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Per row, the code of the first reject rule that matches, in RULES order (0: none)."""
    code = np.zeros(n, np.uint8)
    for reason in REJECT_REASONS:
        mask = masks.get(reason)
        if mask is not None and mask.any():
            code[(code == 0) & mask] = REJECT_CODE[reason]
    return code


def _accepted_rows(
    parsed: _Parsed, accepted_mask: np.ndarray, src_index: int, rows: np.ndarray
) -> tuple[pa.RecordBatch | None, np.ndarray]:
    """Accepted rows in the staging schema, grouped by order day, and their days."""
    everything = bool(accepted_mask.all())
    keep = None if everything else np.flatnonzero(accepted_mask)
    created = parsed.created
    days = created // _US_PER_DAY if everything else created[keep] // _US_PER_DAY
    order = keep
    if days.size and not (days[1:] >= days[:-1]).all():  # group rows by day for staging
        by_day = np.argsort(days, kind="stable")
        order = by_day if keep is None else keep[by_day]
        days = days[by_day]
    if not days.size:
        return None, days

    def pick(values: np.ndarray) -> np.ndarray:
        return values if order is None else values[order]

    take = None if order is None else pa.array(order)
    ids = parsed.ids if take is None else parsed.ids.take(take)
    columns = [
        (values if take is None else values.take(take))
        if valid is None
        else with_mask(pick(values), pick(valid), kind)
        for values, valid, kind in parsed.columns
    ]
    accepted = pa.RecordBatch.from_arrays(
        [
            *columns,
            pa.array(pick(parsed.duration)),
            ids,
            pa.array(pick(parsed.blank)),
            pa.array(np.full(days.size, src_index, np.int32)),
            pa.array(pick(rows)),
        ],
        schema=STAGE_SCHEMA,
    )
    return accepted, days


def _rejected_rows(
    batch: pa.RecordBatch,
    parsed: _Parsed,
    code: np.ndarray,
    accepted_mask: np.ndarray,
    label: str,
    rows: np.ndarray,
) -> tuple[pa.RecordBatch, dict[str, int]]:
    """Rejected rows in the quarantine schema (raw values as text) and counts by reason."""
    rejected = np.flatnonzero(~accepted_mask)
    codes = code[rejected]
    counts = np.bincount(codes, minlength=len(REJECT_REASONS) + 1)
    reasons = {r: int(c) for r, c in zip(REJECT_REASONS, counts[1:], strict=True) if c}
    # A derived order_id only means something when every field could be read; a given
    # one (even an invalid one, shown as sent) names the row whatever else is wrong.
    unreadable = np.zeros(parsed.n, bool)
    for reason, mask in parsed.masks.items():
        if reason.startswith("invalid_") and reason != "invalid_order_id":
            unreadable |= mask
    if parsed.given is not None:
        unreadable &= ~parsed.given
    take = pa.array(rejected)
    ids = pc.if_else(
        pa.array(unreadable[rejected]), pa.scalar(None, pa.string()), parsed.ids.take(take)
    )
    quarantined = pa.RecordBatch.from_arrays(
        [
            pa.DictionaryArray.from_arrays(
                pa.array(codes.astype(np.int32) - 1), pa.array(REJECT_REASONS)
            ).cast(pa.string()),
            constant_text(label, rejected.size),
            pa.array(rows[rejected]),
            ids,
            *[as_text(batch.column(name).take(take)) for name in schema.COLUMN_NAMES],
            pa.nulls(rejected.size, pa.string()),
        ],
        schema=QUARANTINE_SCHEMA,
    )
    return quarantined, reasons


def apply_checked(checked: Checked, stage: DayStreams, result: IngestResult) -> None:
    """Stage one checked chunk and add its counts, so totals always reconcile."""
    result.rows_read += checked.rows
    if checked.accepted is not None:
        stage.write_rows(checked.accepted, checked.days)
    if checked.rejected is not None:
        stage.write_quarantine(checked.rejected)
        result.rows_quarantined += checked.rejected.num_rows
        for reason, count in checked.reasons.items():
            result.reasons[reason] = result.reasons.get(reason, 0) + count


def quarantine_malformed(
    malformed: list[tuple[int | None, str]], label: str, stage: DayStreams, result: IngestResult
) -> None:
    """Quarantine lines the CSV reader could not parse, with the reader's reason."""
    items = malformed[: len(malformed)]
    del malformed[: len(items)]
    n = len(items)
    result.rows_read += n
    result.rows_quarantined += n
    result.reasons["malformed_row"] = result.reasons.get("malformed_row", 0) + n
    stage.write_quarantine(
        pa.RecordBatch.from_arrays(
            [
                constant_text("malformed_row", n),
                constant_text(label, n),
                pa.array([number for number, _ in items], pa.int64()),
                pa.nulls(n, pa.string()),
                *[pa.nulls(n, pa.string()) for _ in schema.COLUMN_NAMES],
                pa.array([text for _, text in items], pa.string()),
            ],
            schema=QUARANTINE_SCHEMA,
        )
    )
