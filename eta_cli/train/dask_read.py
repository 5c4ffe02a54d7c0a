"""``eta train --engine dask`` reads its orders: Parquet on the cluster, cleaned per partition.

A partition is a Parquet file, or a slice of its row groups when the file is large
(up to :data:`PARTITION_ROWS` rows), so a worker never holds more than that. Each
partition is read on a worker with its own S3 credentials and cleaned by
:func:`eta_cli.train.data.clean_orders`, exactly as the local engine cleans its frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from eta_cli import schema, storage
from eta_cli.config import Settings
from eta_cli.errors import EtaError, first_line
from eta_cli.train.data import TrainError, check_columns, clean_orders

if TYPE_CHECKING:
    import pandas as pd

PARTITION_ROWS = 1_000_000  # row groups of one file are grouped up to this many rows
ORDER_COLUMNS: tuple[str, ...] = (schema.ORDER_ID, *schema.INPUT_COLUMNS, schema.TARGET)


@dataclass(frozen=True)
class Part:
    """One partition: a Parquet file (or some of its row groups)."""

    index: int
    uri: str  # for the filesystem (local path or s3://)
    path: str  # inside the filesystem
    row_groups: tuple[int, ...] | None
    rows: int


def _parquet_parts(
    source: str, settings: Settings, since: Any, what: str
) -> tuple[list[Part], list[str]]:
    """Partitions of a Parquet file/folder/prefix and the columns its files share."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from eta_cli.dask_engine import list_files

    files = list_files(source, settings, (".parquet", ".pq", ".parq"), what=what)
    if since is not None:
        day = since.strftime("%Y-%m-%d")
        files = [f for f in files if not _before_day(f.relative, day)]
        if not files:
            raise TrainError(f"no orders in {source} on or after {since:%Y-%m-%d %H:%M:%S}")
    filesystem, _ = storage.filesystem_and_path(source, settings)

    def footer(file: Any) -> Any:
        try:
            with filesystem.open_input_file(file.path) as handle:
                return pq.ParquetFile(handle).metadata
        except Exception as exc:
            raise TrainError(f"cannot read {file.uri}: {first_line(exc)}") from exc

    with ThreadPoolExecutor(max_workers=8) as pool:
        metas = list(pool.map(footer, files))
    names = set(metas[0].schema.to_arrow_schema().names)
    for meta in metas[1:]:
        names &= set(meta.schema.to_arrow_schema().names)
    parts: list[Part] = []
    for file, meta in zip(files, metas, strict=True):
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        if sum(groups) <= PARTITION_ROWS or len(groups) <= 1:
            parts.append(Part(len(parts), file.uri, file.path, None, sum(groups)))
            continue
        chunk: list[int] = []
        rows = 0
        for i, n in enumerate(groups):
            if chunk and rows + n > PARTITION_ROWS:
                parts.append(Part(len(parts), file.uri, file.path, tuple(chunk), rows))
                chunk, rows = [], 0
            chunk.append(i)
            rows += n
        parts.append(Part(len(parts), file.uri, file.path, tuple(chunk), rows))
    return parts, sorted(names)


def _before_day(relative: str, day: str) -> bool:
    """Whether a hive path ``order_date=YYYY-MM-DD/...`` lies before ``day``."""
    for part in relative.split("/"):
        if part.startswith(f"{schema.ORDER_DATE}="):
            return part.split("=", 1)[1] < day
    return False


def _to_pandas(table: Any) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    mapping = {pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype()}
    return table.to_pandas(types_mapper=mapping.get, coerce_temporal_nanoseconds=True)


def _prepare(table: Any, settings: Settings, label: str, since_ns: int | None) -> pd.DataFrame:
    """Arrow rows -> the cleaned order frame both engines train on (fixed columns)."""
    frame = _to_pandas(table)
    out = clean_orders(frame, settings, label)
    if since_ns is not None:
        created = out[schema.CREATED_AT].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        out = out.loc[created >= since_ns]
    return out[list(ORDER_COLUMNS)].reset_index(drop=True)


def _load_part(part: Part, settings: Settings, wanted: list[str], since_ns: int | None) -> Any:
    """Read and clean one partition on a worker (its own S3 credentials)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, _ = storage.filesystem_and_path(part.uri, settings)
    try:
        with filesystem.open_input_file(part.path) as handle:
            parquet = pq.ParquetFile(handle)
            if part.row_groups is None:
                table = parquet.read(columns=wanted)
            else:
                table = parquet.read_row_groups(list(part.row_groups), columns=wanted)
    except (OSError, pa.ArrowException) as exc:
        raise TrainError(f"cannot read {part.uri}: {first_line(exc)}") from exc
    if schema.ORDER_ID not in table.column_names:  # --data without ids: stable, unique ones
        ids = pa.array([f"p{part.index}-{i}" for i in range(table.num_rows)], pa.string())
        table = table.append_column(schema.ORDER_ID, ids)
    return _prepare(table, settings, part.uri, since_ns)


def read_orders(
    settings: Settings, data: str | None = None, since: str | None = None
) -> tuple[Any, str]:
    """The cleaned orders as a Dask DataFrame (one partition per file or row-group slice)."""
    import dask.dataframe as dd
    import pyarrow as pa

    from eta_cli import lake

    if data is not None:
        source = str(data)
        if source.lower().endswith((".csv", ".csv.gz", ".txt")):
            raise TrainError(
                f"--data {data}: --engine dask reads Parquet (a file, folder or s3:// prefix); "
                "ingest CSV files with `eta ingest` first"
            )
        what = "--data"
        since = None  # as the local engine: --since filters the ingested dataset only
    else:
        source = lake.dataset_uri(settings)
        what = "orders"
    since_ts = lake.since_start(since, source, settings=settings) if since is not None else None
    try:
        parts, names = _parquet_parts(source, settings, since_ts, what)
    except EtaError as exc:
        if data is None and "no such file" in str(exc):
            raise TrainError(
                f"no orders at {source}: run `eta ingest` first or pass --data PATH"
            ) from exc
        raise
    check_columns(names, source)
    needed = (*ORDER_COLUMNS, *(() if schema.TARGET in names else (schema.DELIVERED_AT,)))
    wanted = [c for c in needed if c in names]
    since_ns = None
    if since_ts is not None:
        since_ns = int(np.datetime64(since_ts, "ns").astype(np.int64))
    empty = schema.arrow_schema()
    fields = [empty.field(c) if c in empty.names else pa.field(c, pa.float64()) for c in wanted]
    meta = _prepare(pa.schema(fields).empty_table(), settings, source, None)
    frame = dd.from_map(
        _load_part,
        parts,
        args=(settings, wanted, since_ns),
        meta=meta,
        label="read-orders",
        enforce_metadata=False,
    )
    return frame, source
