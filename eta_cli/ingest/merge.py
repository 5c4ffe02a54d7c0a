"""Prepare one order day: de-duplicate the staged rows and merge them with the published day.

Per touched date, staged rows are de-duplicated by ``order_id`` (within the run and
against the published partition: repeats are quarantined as ``duplicate_order``, the
first occurrence kept), values the ``blank`` rules flagged are nulled, and the complete
new ``part-0.parquet`` is written inside the staging area, ready to be published.
Both engines merge through :func:`merge_day` (Dask: one task per day).

An order id belongs with its order time, so repeats are looked for in the order's own
day: an id sent again with another ``created_at`` is a different order day's row and
is not caught (documented in the README). Every partition records the id version it
holds (:data:`eta_cli.order_ids.VERSION_KEY`); :func:`check_lake_version` refuses to mix
versions, since ids derived by another rule would never match and never de-duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eta_cli import schema, storage
from eta_cli.errors import first_line
from eta_cli.ingest.result import IngestResult
from eta_cli.ingest.rules import BLANK_BIT, BLANK_RULES
from eta_cli.lake import QUARANTINE_SCHEMA, IngestError, Lake
from eta_cli.order_ids import ORDER_ID_VERSION, VERSION_KEY
from eta_cli.orders import as_text, constant_text


class StagedDays(Protocol):
    """A run's staging area as merging reads it (local run or Dask run)."""

    run_id: str

    def read_day(self, day: int) -> pa.Table: ...


@dataclass
class Merged:
    """One merged day: the move that publishes it, its counts and its duplicates."""

    order_date: str
    move: tuple[str, str] | None
    written: int
    cleaned_rows: int
    cleaned: dict[str, int]
    duplicates: pa.RecordBatch | None


def merge_day(lake: Lake, stage: StagedDays, day: int, labels: list[str]) -> Merged:
    """New ``part-0.parquet`` for one date: published rows + this run's new orders."""
    order_date = str(np.datetime64(day, "D"))
    staged = stage.read_day(day)
    ids = staged.column("_order_id").combine_chunks()
    duplicate = np.zeros(len(ids), bool)
    encoded = pc.dictionary_encode(ids)
    if len(encoded.dictionary) < len(ids):  # rare: repeats in this run
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        duplicate[:] = True
        duplicate[np.unique(codes, return_index=True)[1]] = False  # first occurrence wins
    final = lake.partition_file(order_date)
    existing = _published(lake, final)
    if existing is not None:
        seen = pc.is_in(ids, value_set=existing.column(schema.ORDER_ID).combine_chunks())
        duplicate |= seen.to_numpy(zero_copy_only=False)

    repeated = np.flatnonzero(duplicate)
    duplicates = _duplicate_rows(staged, ids, repeated, labels) if repeated.size else None
    keep = np.flatnonzero(~duplicate)
    if keep.size == 0:
        return Merged(order_date, None, 0, 0, {}, duplicates)
    kept = staged.take(pa.array(keep)) if repeated.size else staged
    columns, blanked, cleaned = _blank_flagged(kept)
    table = pa.Table.from_arrays(
        [
            ids.take(pa.array(keep)) if repeated.size else ids,
            *columns,
            kept.column(schema.TARGET),
            constant_text(order_date, keep.size),
        ],
        schema=schema.arrow_schema(),
    )
    if existing is not None:
        table = pa.concat_tables([existing, table])
    table = table.replace_schema_metadata({VERSION_KEY: ORDER_ID_VERSION.encode()})
    staged_file = lake.join(
        "_staging", stage.run_id, "publish", f"{schema.ORDER_DATE}={order_date}", "part-0.parquet"
    )
    lake.write_parquet(table, staged_file)
    return Merged(order_date, (staged_file, final), int(keep.size), blanked, cleaned, duplicates)


def count_merged(result: IngestResult, merged: Merged) -> None:
    """Add one merged day to the run's totals (rows written, cleaned, duplicates)."""
    result.rows_written += merged.written
    result.rows_cleaned += merged.cleaned_rows
    for rule, count in merged.cleaned.items():
        result.cleaned[rule] = result.cleaned.get(rule, 0) + count
    if merged.duplicates is not None:
        count = merged.duplicates.num_rows
        result.rows_quarantined += count
        result.reasons["duplicate_order"] = result.reasons.get("duplicate_order", 0) + count
    if merged.move is not None:
        result.partitions.append(merged.order_date)


def _published(lake: Lake, final: str) -> pa.Table | None:
    """The day's published partition in the cleaned-orders schema, or None."""
    existing = lake.read_parquet(final)
    if existing is None:
        return None
    _check_version(lake, final, (existing.schema.metadata or {}).get(VERSION_KEY))
    try:
        return existing.select(list(schema.CLEAN_COLUMNS)).cast(schema.arrow_schema())
    except (KeyError, pa.ArrowException) as exc:
        raise storage.StorageError(
            f"published partition {lake.uri_of(final)} does not have the cleaned-orders "
            f"schema: {first_line(exc)}"
        ) from exc


def _newest_partition(lake: Lake) -> str | None:
    """The file of the newest order day in the lake, or None when it has none."""
    days = [name for name in lake.list_names(lake.orders) if name.startswith(schema.ORDER_DATE)]
    return lake.join("orders", days[-1], "part-0.parquet") if days else None


def newest_order_time(lake: Lake) -> datetime | None:
    """The newest ``created_at`` in the lake (its newest day's file only), or None."""
    import pyarrow.parquet as pq

    newest = _newest_partition(lake)
    if newest is None:
        return None
    table = pq.read_table(newest, columns=[schema.CREATED_AT], filesystem=lake.fs)
    return pc.max(table.column(schema.CREATED_AT)).as_py()


def check_lake_version(lake: Lake) -> None:
    """Refuse, before any work, a lake whose order ids follow another version's rule.

    Reads the footer of the newest partition only (every run writes one version, and a
    mixed lake cannot arise: merging re-checks each partition it rewrites).
    """
    import pyarrow.parquet as pq

    newest = _newest_partition(lake)
    if newest is None:
        return
    try:
        metadata = pq.read_metadata(newest, filesystem=lake.fs).metadata or {}
    except (OSError, pa.ArrowException):
        return  # unreadable or missing: merging that day reports it with its name
    _check_version(lake, newest, metadata.get(VERSION_KEY))


def _check_version(lake: Lake, path: str, found: bytes | None) -> None:
    """The refusal of a partition written with another order id version."""
    version = found.decode(errors="replace") if found else "v1"
    if version == ORDER_ID_VERSION:
        return
    orders = lake.uri_of(lake.orders)
    raise IngestError(
        f"{lake.uri_of(path)} holds order ids of version {version}; this eta writes "
        f"version {ORDER_ID_VERSION} (sources' own order_id kept, otherwise derived from "
        f"order-time fields), and the two cannot be mixed. Re-ingest the sources into a "
        f"new lake: `eta ingest SOURCES --output NEW_LAKE` (then set ETA_DATA_URI to it), "
        f"or move {orders} aside and run `eta ingest SOURCES` again"
    )


def _duplicate_rows(
    staged: pa.Table, ids: pa.Array, repeated: np.ndarray, labels: list[str]
) -> pa.RecordBatch:
    """Repeated orders as quarantine rows (``duplicate_order``, values as normalised)."""
    rows = staged.take(pa.array(repeated))
    source = pa.array(labels, pa.string()).take(rows.column("_src").combine_chunks())
    return pa.RecordBatch.from_arrays(
        [
            constant_text("duplicate_order", repeated.size),
            source,
            rows.column("_row").combine_chunks(),
            ids.take(pa.array(repeated)),
        ]
        + [as_text(rows.column(name)) for name in schema.COLUMN_NAMES]
        + [pa.nulls(repeated.size, pa.string())],
        schema=QUARANTINE_SCHEMA,
    )


def _blank_flagged(kept: pa.Table) -> tuple[list[pa.ChunkedArray], int, dict[str, int]]:
    """The input columns with flagged values nulled, rows with any blanked, and per rule."""
    blank = kept.column("_blank").to_numpy()
    cleaned: dict[str, int] = {}
    columns = []
    for name in schema.COLUMN_NAMES:
        column = kept.column(name)
        bit = BLANK_BIT.get(name)
        if bit is not None:
            hit = (blank >> np.uint32(bit)) & np.uint32(1) == 1
            count = int(hit.sum())
            if count:
                cleaned[BLANK_RULES[bit].reason] = count
                column = column.combine_chunks()
                column = pc.if_else(pa.array(hit), pa.scalar(None, column.type), column)
        columns.append(column)
    return columns, int(np.count_nonzero(blank)), cleaned
