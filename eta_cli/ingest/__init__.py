"""Ingest raw orders into the cleaned, date-partitioned Parquet data lake.

Layout under the data lake root (``settings.effective_data_uri`` or ``--output``)::

    orders/order_date=YYYY-MM-DD/part-0.parquet   cleaned orders, schema.arrow_schema()
    quarantine/<run_id>.parquet                   rejected rows, raw values and a reason
    _staging/<run_id>/                            work area of a running ingest (invisible)
    _journal/<run_id>.json                        publish plan, present only while publishing

How a run keeps the dataset consistent:

1. *Stream*: sources are read in chunks (``pyarrow.csv.open_csv`` / Parquet row
   batches), every chunk is validated with vectorised Arrow/NumPy code
   (:data:`RULES`), accepted rows go to one Arrow IPC stream per order date in
   the staging area, rejected rows to a staged quarantine stream. Nothing
   visible changes; any failure or Ctrl-C removes the staging area.
2. *Prepare*: per touched date, staged rows are de-duplicated by ``order_id``
   (within the run and against the published partition: repeats are
   quarantined as ``duplicate_order``), merged with the published partition
   and written as a complete new ``part-0.parquet`` inside the staging area.
3. *Publish*: a journal listing the moves is written, then each staged file is
   renamed into place (``os.replace`` locally; on S3 a copy, each object PUT
   being atomic). SIGINT/SIGTERM are deferred meanwhile; if the process dies
   anyway, the next run finds the journal and rolls the publish forward.

For an ``s3://`` lake the IPC streams live in a local temporary folder; the merged
partition files are uploaded to ``_staging/`` in the bucket before the journal.
A local data lake is locked (``flock`` on ``<root>/_lock``) for the whole run;
S3 has no lock, so run one ingest at a time per S3 prefix.

``order_id`` is 16 hex digits of a 64-bit hash of the 16 raw fields *after*
normalisation (integers as integers, timestamps as microseconds, text trimmed,
missing as missing) and before any value is blanked, so ``1.0`` and ``"1"`` give
the same id. It is computed with vectorised NumPy (splitmix64 per field, chained
by xor-multiply), not per row in Python.

Quarantine rows keep the raw values as text, the ``reason`` (the first rule of
:data:`RULES` that matched), the ``source`` and ``row`` (1-based record number in
that source; malformed CSV lines are kept whole in ``raw_line`` and do not count
in later row numbers). Duplicates are spotted after parsing, so their values are
the normalised spelling.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eta_cli import schema, storage
from eta_cli.config import Settings
from eta_cli.errors import EtaError, first_line
from eta_cli.orders import (
    as_text,
    constant_text,
    parse_numbers,
    parse_strings,
    parse_timestamps,
    text_key,
    with_mask,
)
from eta_cli.progress import Progress, ProgressCallback

if TYPE_CHECKING:
    import pandas as pd


class IngestError(EtaError):
    """A source cannot be ingested as a whole; the message names the file and the problem."""


class NoOrdersError(EtaError):
    """There is no cleaned dataset yet where one was expected."""


# --------------------------------------------------------------------------------------
# Cleaning rules: the single place that says what ingest accepts.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One cleaning rule. ``reject`` quarantines the row, ``blank`` nulls one value."""

    reason: str
    action: Literal["reject", "blank"]
    column: str | None
    description: str


def _build_rules() -> tuple[Rule, ...]:
    cols = schema.COLUMNS
    rules = [
        Rule(
            "malformed_row",
            "reject",
            None,
            "a CSV line whose number of fields differs from the header",
        )
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
_CODE = {reason: i + 1 for i, reason in enumerate(REJECT_REASONS)}  # 0 means accepted
_BLANK_BIT = {r.column: i for i, r in enumerate(BLANK_RULES)}

# Spellings of a missing value in both exports of the real file (and common others).
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
CSV_SUFFIXES = (".csv", ".csv.gz", ".gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_US_PER_DAY = 86_400_000_000
_BYTES_PER_ROW = 128  # a real row is ~105 bytes
# The CSV reader parses ~8 blocks ahead and a block grows ~5x once parsed into string
# columns, so blocks are capped: 8 MiB (~75k rows) keeps the read-ahead near 350 MB.
_MAX_BLOCK = 8 << 20

QUARANTINE_SCHEMA = pa.schema(
    [
        ("reason", pa.string()),
        ("source", pa.string()),
        ("row", pa.int64()),
        ("order_id", pa.string()),
    ]
    + [(name, pa.string()) for name in schema.COLUMN_NAMES]
    + [("raw_line", pa.string())]
)


def _stage_schema() -> pa.Schema:
    clean = schema.arrow_schema()
    fields = [clean.field(name).with_nullable(True) for name in schema.COLUMN_NAMES]
    extra = [
        pa.field(schema.TARGET, pa.float64()),
        pa.field("_hash", pa.uint64()),
        pa.field("_blank", pa.uint32()),
        pa.field("_src", pa.int32()),
        pa.field("_row", pa.int64()),
    ]
    return pa.schema([*fields, *extra])


STAGE_SCHEMA = _stage_schema()


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


@dataclass
class IngestResult:
    """What one run did; ``rows_read == rows_written + rows_quarantined`` always holds."""

    run_id: str
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    rows_cleaned: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    cleaned: dict[str, int] = field(default_factory=dict)
    output: str = ""
    quarantine: str | None = None
    files: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_written + self.rows_quarantined

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["balanced"] = self.balanced
        return data


def dataset_uri(settings: Settings) -> str:
    """Where the cleaned orders live; every reader (train, drift, Dask) starts here."""
    return _join(settings.effective_data_uri, "orders")


def quarantine_uri(settings: Settings) -> str:
    return _join(settings.effective_data_uri, "quarantine")


def open_dataset(settings_or_uri: Settings | str, *, settings: Settings | None = None) -> Any:
    """The cleaned orders as a ``pyarrow.dataset.Dataset`` (hive-partitioned on order_date).

    Raises :class:`NoOrdersError` when nothing has been ingested there yet.
    """
    import pyarrow.dataset as ds

    uri, settings = _resolve_dataset(settings_or_uri, settings)
    filesystem, path = storage.filesystem_and_path(uri, settings)
    try:
        info = filesystem.get_file_info(path)
    except OSError as exc:
        raise storage.StorageError(f"cannot read {uri}: {first_line(exc)}") from exc
    if info.type.name == "NotFound":
        raise NoOrdersError(f"no orders at {uri}: run `eta ingest` first")
    partitioning = ds.partitioning(pa.schema([(schema.ORDER_DATE, pa.string())]), flavor="hive")
    try:
        return ds.dataset(
            path,
            filesystem=filesystem,
            format="parquet",
            partitioning=partitioning,
            schema=schema.arrow_schema(),
        )
    except (OSError, pa.ArrowException) as exc:
        raise storage.StorageError(f"cannot read the dataset at {uri}: {first_line(exc)}") from exc


def read_orders(
    settings_or_uri: Settings | str,
    columns: Sequence[str] | None = None,
    since: str | date | datetime | None = None,
    *,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Cleaned orders as pandas with the schema's nullable dtypes.

    ``settings_or_uri`` is Settings (reads ``dataset_uri(settings)``) or the dataset URI
    itself (local path or ``s3://``; pass ``settings`` for the S3 endpoint).
    ``since`` keeps orders created at or after it; whole date partitions are skipped
    without being opened.
    """
    import pyarrow.dataset as ds

    wanted = list(columns) if columns is not None else list(schema.CLEAN_COLUMNS)
    unknown = [c for c in wanted if c not in schema.CLEAN_COLUMNS]
    if unknown:
        raise EtaError(
            f"unknown column(s) {', '.join(unknown)}; allowed: {', '.join(schema.CLEAN_COLUMNS)}"
        )
    dataset = open_dataset(settings_or_uri, settings=settings)
    expression = None
    if since is not None:
        start = parse_since(since)
        expression = ds.field(schema.ORDER_DATE) >= start.strftime("%Y-%m-%d")
        if start != datetime(start.year, start.month, start.day):
            expression &= ds.field(schema.CREATED_AT) >= pa.scalar(start, pa.timestamp("us"))
    try:
        table = dataset.to_table(columns=wanted, filter=expression)
    except (OSError, pa.ArrowException) as exc:
        raise storage.StorageError(f"cannot read orders: {first_line(exc)}") from exc
    return _to_pandas(table)


def ingest(
    sources: Sequence[str],
    settings: Settings,
    *,
    synthetic: int | None = None,
    seed: int = 0,
    drift: bool = False,
    output: str | None = None,
    progress: ProgressCallback | None = None,
) -> IngestResult:
    """Validate, clean and publish orders from files/URIs and/or synthetic generation.

    All sources are checked (existence, format, columns) before anything is written;
    a whole-source problem raises :class:`IngestError` and leaves the lake untouched.
    """
    started = time.monotonic()
    if isinstance(sources, str):  # one path, not a sequence of one-letter paths
        sources = [sources]
    if output:
        settings = settings.replace(data_uri=output)
    if not sources and not synthetic:
        raise IngestError(
            "nothing to ingest: give at least one SOURCE (file, glob, directory "
            "or s3:// URI) or --synthetic N"
        )
    if synthetic is not None and synthetic < 0:
        raise IngestError(f"--synthetic must be a positive number of orders, got {synthetic}")

    plan = plan_sources(sources, settings)
    labels = [p.uri for p in plan]
    if synthetic:
        labels.append(f"synthetic:n={synthetic},seed={seed}{',drift' if drift else ''}")
    lake = Lake(settings.effective_data_uri, settings)
    lake.check_writable()
    run_id = new_run_id()
    result = IngestResult(run_id=run_id, output=lake.uri_of(lake.orders), files=labels)

    with lake.locked(), storage_errors(lake):
        result.recovered = recover(lake)
        stage = _Stage(lake, run_id)
        try:
            _stream(plan, synthetic, seed, drift, settings, stage, result, progress)
            moves = _prepare_publish(lake, stage, result, labels, progress)
            if not result.balanced:  # every row is accounted for before anything is visible
                raise AssertionError(f"row accounting broken: {result.to_dict()}")
        except BaseException:
            stage.discard()
            raise
        checkpoint("prepared", run_id=run_id)
        publish_staged(lake, stage, moves)
    result.seconds = round(time.monotonic() - started, 3)
    return result


@contextlib.contextmanager
def storage_errors(lake: Lake) -> Iterator[None]:
    """Failures writing the lake (disk full, S3 refusing) become one-line errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (OSError, pa.ArrowException, BotoCoreError, ClientError) as exc:
        raise storage.StorageError(
            f"ingest failed writing to {lake.uri_of(lake.root)}: {first_line(exc)}"
        ) from exc


def checkpoint(stage: str, **info: Any) -> None:
    """A named point in a run; tests replace this to inject crashes at precise moments."""


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------


@dataclass
class _Source:
    uri: str  # as shown to the user
    path: str  # inside ``filesystem``
    kind: Literal["csv", "parquet"]
    gzip: bool
    size: int | None
    filesystem: Any
    header: list[str] = field(default_factory=list)


def plan_sources(sources: Sequence[str], settings: Settings) -> list[_Source]:
    """Expand and pre-check every source so a bad one is refused before any work."""
    planned: list[_Source] = []
    seen: set[str] = set()
    for source in sources:
        expanded = _expand_s3(source, settings) if storage.is_s3(source) else _expand_local(source)
        for item in expanded:
            if item.uri not in seen:
                seen.add(item.uri)
                _check_source(item)
                planned.append(item)
    return planned


def _expand_local(source: str) -> list[_Source]:
    from pyarrow import fs

    local = fs.LocalFileSystem()
    if any(ch in source for ch in "*?["):
        matches = sorted(glob.glob(os.path.expanduser(source), recursive=True))
        if not matches:
            raise IngestError(f"{source}: no file matches this pattern")
        paths: list[str] = []
        for match in matches:
            if os.path.isdir(match):
                paths.extend(_files_in_dir(match))
            elif _wanted(os.path.basename(match)):
                paths.append(match)
        if not paths:
            raise IngestError(f"{source}: no CSV or Parquet file matches this pattern")
    else:
        path = os.path.expanduser(source)
        if os.path.isdir(path):
            paths = _files_in_dir(path)
            if not paths:
                raise IngestError(
                    f"{source}: directory has no {', '.join(CSV_SUFFIXES)} "
                    f"or {', '.join(PARQUET_SUFFIXES)} files"
                )
        elif os.path.isfile(path):
            paths = [path]
        else:
            raise IngestError(f"{source}: no such file or directory")
    out = []
    for path in paths:
        absolute = os.path.abspath(path)
        try:
            with open(absolute, "rb") as handle:
                head = handle.read(4096)
            size = os.path.getsize(absolute)
        except OSError as exc:
            raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        kind, gz = _sniff(path, head)
        out.append(_Source(absolute, absolute, kind, gz, size, local))
    return out


def _files_in_dir(directory: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        found.extend(os.path.join(root, name) for name in sorted(files) if _wanted(name))
    return found


def _wanted(name: str) -> bool:
    """Data files in a listing: known suffixes, not hidden (``.x``) or metadata (``_x``)."""
    return not name.startswith((".", "_")) and name.lower().endswith(
        CSV_SUFFIXES + PARQUET_SUFFIXES
    )


def _expand_s3(source: str, settings: Settings) -> list[_Source]:
    import fnmatch

    from botocore.exceptions import BotoCoreError, ClientError

    target = storage.parse_s3(source)
    client = storage.s3_client(settings)
    endpoint = settings.s3_endpoint_url or "AWS"
    try:
        try:
            client.head_bucket(Bucket=target.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise IngestError(
                    f"{source}: bucket {target.bucket!r} does not exist (endpoint {endpoint})"
                ) from exc
            raise IngestError(
                f"{source}: cannot access bucket {target.bucket!r}: {code or exc}"
            ) from exc
        key = target.key
        pattern = None
        if any(ch in key for ch in "*?["):
            pattern = key
            key = re.split(r"[*?\[]", key, maxsplit=1)[0]
            prefix = key
        elif key and not key.endswith("/"):
            try:
                head = client.head_object(Bucket=target.bucket, Key=key)
                return [_s3_source(target.bucket, key, head["ContentLength"], client, settings)]
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in ("404", "NoSuchKey", "NotFound"):
                    raise IngestError(f"{source}: cannot read: {code or exc}") from exc
            prefix = key + "/"
        else:
            prefix = key
        keys = []
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=target.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"]
                base = name.rsplit("/", 1)[-1]
                if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
                    continue
                if _wanted(base):
                    keys.append((name, obj["Size"]))
    except (BotoCoreError, ClientError) as exc:
        raise IngestError(f"{source}: cannot reach S3 ({endpoint}): {first_line(exc)}") from exc
    if not keys:
        what = "no object matches" if pattern else "no such object (and no CSV/Parquet under it)"
        raise IngestError(f"{source}: {what}")
    return [_s3_source(target.bucket, k, size, client, settings) for k, size in sorted(keys)]


def _s3_source(bucket: str, key: str, size: int, client: Any, settings: Settings) -> _Source:
    head = b""
    if size:
        head = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-4095")["Body"].read()
    kind, gz = _sniff(key, head)
    return _Source(
        f"s3://{bucket}/{key}",
        f"{bucket}/{key}",
        kind,
        gz,
        size,
        storage.arrow_s3_filesystem(settings),
    )


def _sniff(name: str, head: bytes) -> tuple[Literal["csv", "parquet"], bool]:
    """Decide the format from the content (magic bytes), the name as a hint."""
    lower = name.lower()
    if head.startswith(b"PAR1"):
        return "parquet", False
    if head.startswith(b"\x1f\x8b"):
        return "csv", True
    if lower.endswith(PARQUET_SUFFIXES):
        raise IngestError(f"{name}: not a valid Parquet file (no PAR1 header)")
    if lower.endswith(".gz"):
        raise IngestError(f"{name}: not a valid gzip file")
    if b"\x00" in head:
        raise IngestError(
            f"{name}: not a CSV or Parquet file (binary content); "
            f"allowed: {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
        )
    return "csv", False


def _open_stream(src: _Source) -> tuple[Any, Any]:
    raw = src.filesystem.open_input_file(src.path)  # random access: tell() reports progress
    return pa.CompressedInputStream(raw, "gzip") if src.gzip else raw, raw


def _check_source(src: _Source) -> None:
    """Read the header (CSV) or schema (Parquet) and name any missing column."""
    arrow_schema = None
    try:
        if src.kind == "parquet":
            import pyarrow.parquet as pq

            with src.filesystem.open_input_file(src.path) as handle:
                arrow_schema = pq.ParquetFile(handle).schema_arrow
            names = arrow_schema.names
        else:
            names = _csv_header(src)
    except IngestError:
        raise
    except (OSError, pa.ArrowException, EOFError, UnicodeDecodeError) as exc:
        what = "Parquet" if src.kind == "parquet" else ("gzip CSV" if src.gzip else "CSV")
        raise IngestError(f"{src.uri}: unreadable {what} file: {first_line(exc)}") from exc
    src.header = names
    missing = [c for c in schema.COLUMN_NAMES if c not in names]
    if len(missing) == len(schema.COLUMN_NAMES):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise IngestError(
            f"{src.uri}: not an orders file: none of the expected columns in its header "
            f"({shown}); expected columns: {', '.join(schema.COLUMN_NAMES)}"
        )
    if missing:
        raise IngestError(
            f"{src.uri}: missing column(s) {', '.join(missing)}; "
            f"expected columns: {', '.join(schema.COLUMN_NAMES)}"
        )
    if arrow_schema is not None:
        for column in schema.COLUMNS:
            kind = arrow_schema.field(column.name).type
            if not _type_fits(column.kind, kind):
                raise IngestError(
                    f"{src.uri}: column {column.name} has type {kind}; expected "
                    f"{schema.describe_column(column.name)} (or text that reads as one)"
                )


def _type_fits(kind: str, dtype: pa.DataType) -> bool:
    """Whether a typed (Parquet) column can hold values of a schema kind at all."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    types = pa.types
    if types.is_null(dtype) or types.is_string(dtype) or types.is_large_string(dtype):
        return True
    if kind in ("int", "float"):
        return types.is_integer(dtype) or types.is_floating(dtype) or types.is_decimal(dtype)
    if kind == "timestamp":
        return types.is_timestamp(dtype) or types.is_date(dtype)
    return types.is_integer(dtype)  # a category spelled as a number is still a label


def _csv_header(src: _Source) -> list[str]:
    stream, raw = _open_stream(src)
    with contextlib.closing(raw):
        data = b""
        while b"\n" not in data and len(data) < (1 << 20):
            more = stream.read(65536)
            if not more:
                break
            data += more
    if not data.strip():
        raise IngestError(f"{src.uri}: the file is empty (expected a CSV header line)")
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{src.uri}: the header is not UTF-8 text") from exc
    return [name.strip() for name in next(csv.reader(io.StringIO(text)))]


# --------------------------------------------------------------------------------------
# Streaming and validation
# --------------------------------------------------------------------------------------


def read_batches(
    src: _Source, settings: Settings, malformed: list[tuple[int | None, str]]
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Record batches of one source and how many of its bytes have been consumed."""
    chunk = settings.ingest_chunk_rows
    if src.kind == "parquet":
        import pyarrow.parquet as pq

        with src.filesystem.open_input_file(src.path) as handle:
            parquet = pq.ParquetFile(handle)
            total = max(parquet.metadata.num_rows, 1)
            seen = 0
            for batch in parquet.iter_batches(batch_size=chunk, columns=list(schema.COLUMN_NAMES)):
                seen += batch.num_rows
                yield batch, int((src.size or 0) * seen / total)
        return
    import pyarrow.csv as pacsv

    def on_invalid(row: Any) -> str:
        malformed.append((row.number, row.text))
        return "skip"

    stream, raw = _open_stream(src)
    with contextlib.closing(raw):
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                block_size=max(16 * 1024, min(chunk * _BYTES_PER_ROW, _MAX_BLOCK)),
                column_names=src.header,
                skip_rows=1,
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in schema.COLUMN_NAMES},
                include_columns=list(schema.COLUMN_NAMES),
                null_values=NULL_VALUES,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        for batch in reader:
            yield batch, raw.tell()


def synthetic_batches(n: int, seed: int, drift: bool, chunk: int) -> Iterator[pa.RecordBatch]:
    """Synthetic orders as record batches, so they take the same path as a file."""
    # The generator draws the whole frame at once (its store world and quirks are
    # drawn for all n together), so generation is not chunked; validation is.
    from eta_cli import synthetic

    frame = synthetic.generate_orders(n, seed, drift=drift)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    del frame
    yield from table.to_batches(max_chunksize=chunk)


def _stream(
    plan: list[_Source],
    synthetic: int | None,
    seed: int,
    drift: bool,
    settings: Settings,
    stage: _Stage,
    result: IngestResult,
    progress: ProgressCallback | None,
) -> None:
    """Read every source chunk by chunk into the staging area.

    Chunks are checked on a small thread pool (Arrow and NumPy release the GIL) while
    the CSV reader parses ahead; results are applied strictly in input order, so the
    first of two identical orders is the one kept.
    """
    total_bytes = sum(p.size or 0 for p in plan) or None
    pending: deque[tuple[Future[_Checked], int, int | None, str]] = deque()
    workers = max(1, min(os.cpu_count() or 1, 4))

    def drain(limit: int) -> None:
        while len(pending) > limit:
            future, done, total, _source = pending.popleft()
            apply_checked(future.result(), stage, result)
            if progress:
                progress(
                    Progress(
                        "reading",
                        done,
                        total,
                        unit="bytes" if total == total_bytes else "rows",
                        note=f"{result.rows_read:,} rows",
                    )
                )
            checkpoint("chunk", rows=result.rows_read)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eta-ingest") as pool:
        try:
            done_bytes = 0
            for index, src in enumerate(plan):
                malformed: list[tuple[int | None, str]] = []
                rows = 0
                try:
                    for batch, position in read_batches(src, settings, malformed):
                        pending.append(
                            (
                                pool.submit(check_chunk, batch, index, src.uri, rows, settings),
                                done_bytes + position,
                                total_bytes,
                                src.uri,
                            )
                        )
                        rows += batch.num_rows
                        drain(workers)
                        if malformed:
                            drain(0)
                            quarantine_malformed(malformed, src.uri, stage, result)
                    drain(0)
                except (EtaError, KeyboardInterrupt):
                    raise
                except (OSError, pa.ArrowException, EOFError, UnicodeDecodeError) as exc:
                    raise IngestError(f"{src.uri}: unreadable file: {first_line(exc)}") from exc
                if malformed:
                    quarantine_malformed(malformed, src.uri, stage, result)
                done_bytes += src.size or 0
            if synthetic:
                label = result.files[-1]
                rows = 0
                for batch in synthetic_batches(synthetic, seed, drift, settings.ingest_chunk_rows):
                    pending.append(
                        (
                            pool.submit(check_chunk, batch, len(plan), label, rows, settings),
                            rows + batch.num_rows,
                            synthetic,
                            label,
                        )
                    )
                    rows += batch.num_rows
                    drain(workers)
                drain(0)
        finally:
            for future, *_ in pending:
                future.cancel()


@dataclass
class _Checked:
    """One validated chunk: accepted rows sorted by order day, and the rejected rows."""

    rows: int
    accepted: pa.RecordBatch | None
    days: np.ndarray
    rejected: pa.RecordBatch | None
    reasons: dict[str, int]


def apply_checked(checked: _Checked, stage: DayStreams, result: IngestResult) -> None:
    """Stage one checked chunk and add its counts, so totals always reconcile."""
    result.rows_read += checked.rows
    if checked.accepted is not None:
        stage.write_rows(checked.accepted, checked.days)
    if checked.rejected is not None:
        stage.write_quarantine(checked.rejected)
        result.rows_quarantined += checked.rejected.num_rows
        for reason, count in checked.reasons.items():
            result.reasons[reason] = result.reasons.get(reason, 0) + count


def check_chunk(
    batch: pa.RecordBatch, src_index: int, label: str, row_offset: int, settings: Settings
) -> _Checked:
    """Apply :data:`RULES` to one chunk, vectorised. Pure: safe to run on a worker thread."""
    n = batch.num_rows
    if n == 0:
        return _Checked(0, None, np.zeros(0, np.int64), None, {})
    masks: dict[str, np.ndarray] = {}
    blank = np.zeros(n, np.uint32)
    hasher = _Hasher(n)
    parsed: list[tuple[Any, np.ndarray | None, pa.DataType | None]] = []
    micros: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for column in schema.COLUMNS:
        arr = batch.column(column.name)
        if column.kind in ("int", "float"):
            values, present, invalid = parse_numbers(arr, integral=column.kind == "int")
            valid = present & ~invalid
            if column.kind == "int":
                typed = np.where(valid, np.clip(values, -(2**62), 2**62), 0).astype(np.int64)
                parsed.append((typed, valid, pa.int64()))
            else:
                typed = np.where(valid, values, 0.0)
                parsed.append((typed, valid, pa.float64()))
            hasher.add(typed.view(np.uint64), valid, column.name)
            if column.minimum is not None:
                out = valid & ((values < column.minimum) | (values > column.maximum))
                if column.out_of_range == "reject":
                    masks[f"{column.name}_out_of_range"] = out
                elif out.any():
                    blank |= out.astype(np.uint32) << np.uint32(_BLANK_BIT[column.name])
            masks[f"invalid_{column.name}"] = invalid
        elif column.kind == "timestamp":
            stamps, present, invalid = parse_timestamps(arr)
            valid = present & ~invalid
            parsed.append((stamps, valid, pa.timestamp("us")))
            micros[column.name] = (stamps, valid)
            hasher.add(stamps.view(np.uint64), valid, column.name)
            masks[f"invalid_{column.name}"] = invalid
        else:
            strings, present, keys = parse_strings(arr)
            parsed.append((strings, None, None))
            hasher.add(keys, present, column.name)
        if not column.nullable:
            masks[f"missing_{column.name}"] = ~present
    hashes = hasher.digest()

    created, created_ok = micros[schema.CREATED_AT]
    delivered, delivered_ok = micros[schema.DELIVERED_AT]
    duration = (delivered - created) / 1e6
    masks["duration_out_of_range"] = (
        created_ok
        & delivered_ok
        & ((duration < settings.min_duration_s) | (duration > settings.max_duration_s))
    )
    code = np.zeros(n, np.uint8)
    for reason in REJECT_REASONS:  # the first matching rule wins, in RULES order
        mask = masks.get(reason)
        if mask is not None and mask.any():
            code[(code == 0) & mask] = _CODE[reason]

    rows = np.arange(row_offset + 1, row_offset + n + 1, dtype=np.int64)
    accepted_mask = code == 0
    everything = bool(accepted_mask.all())
    keep = None if everything else np.flatnonzero(accepted_mask)
    days = created // _US_PER_DAY if everything else created[keep] // _US_PER_DAY
    order = keep
    if days.size and not (days[1:] >= days[:-1]).all():  # group rows by day for staging
        by_day = np.argsort(days, kind="stable")
        order = by_day if keep is None else keep[by_day]
        days = days[by_day]

    def pick(values: np.ndarray) -> np.ndarray:
        return values if order is None else values[order]

    accepted = None
    if days.size:
        take = None if order is None else pa.array(order)
        columns = [
            (values if take is None else values.take(take))
            if valid is None
            else with_mask(pick(values), pick(valid), kind)
            for values, valid, kind in parsed
        ]
        accepted = pa.RecordBatch.from_arrays(
            [
                *columns,
                pa.array(pick(duration)),
                pa.array(pick(hashes)),
                pa.array(pick(blank)),
                pa.array(np.full(days.size, src_index, np.int32)),
                pa.array(pick(rows)),
            ],
            schema=STAGE_SCHEMA,
        )
    if everything:
        return _Checked(n, accepted, days, None, {})

    rejected = np.flatnonzero(~accepted_mask)
    codes = code[rejected]
    counts = np.bincount(codes, minlength=len(REJECT_REASONS) + 1)
    reasons = {r: int(c) for r, c in zip(REJECT_REASONS, counts[1:], strict=True) if c}
    # An order_id only means something when every field could be read.
    unreadable = np.zeros(n, bool)
    for reason, mask in masks.items():
        if reason.startswith("invalid_"):
            unreadable |= mask
    ids = pc.if_else(
        pa.array(unreadable[rejected]), pa.scalar(None, pa.string()), _hex_ids(hashes[rejected])
    )
    take = pa.array(rejected)
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
    return _Checked(n, accepted, days, quarantined, reasons)


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


# --------------------------------------------------------------------------------------
# order_id: a stable 64-bit content hash, vectorised (splitmix64 per field, xor-multiply
# chaining). Inputs are the normalised values (integers, microseconds, trimmed text), so
# the two spellings of the real file give the same id.
# --------------------------------------------------------------------------------------

_SEED = np.uint64(0x6A09E667F3BCC908)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_CHAIN = np.uint64(0x100000001B3)  # odd: multiplication is a bijection
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


_SALT = {
    name: (np.uint64(text_key(name)), np.uint64(text_key(f"{name}:null")))
    for name in schema.COLUMN_NAMES
}


class _Hasher:
    """Row hashes over columns added in order; in place, reusing two scratch buffers."""

    def __init__(self, n: int) -> None:
        self.hashes = np.full(n, _SEED, np.uint64)
        self.value = np.empty(n, np.uint64)
        self.scratch = np.empty(n, np.uint64)

    def add(self, key: np.ndarray, valid: np.ndarray, name: str) -> None:
        salt, null_salt = _SALT[name]
        value = self.value
        np.add(key, salt, out=value)
        if not valid.all():
            value[~valid] = null_salt
        self._mix(value)
        np.bitwise_xor(self.hashes, value, out=self.hashes)
        np.multiply(self.hashes, _CHAIN, out=self.hashes)

    def _mix(self, z: np.ndarray) -> None:
        """splitmix64's finaliser (uint64 arithmetic wraps)."""
        tmp = self.scratch
        for shift, factor in ((_S30, _M1), (_S27, _M2), (_S31, None)):
            np.right_shift(z, shift, out=tmp)
            np.bitwise_xor(z, tmp, out=z)
            if factor is not None:
                np.multiply(z, factor, out=z)

    def digest(self) -> np.ndarray:
        self._mix(self.hashes)
        return self.hashes


def _hex_ids(hashes: np.ndarray) -> pa.Array:
    n = len(hashes)
    raw = hashes.astype(">u8").view(np.uint8).reshape(n, 8)
    text = np.empty((n, 16), np.uint8)
    text[:, 0::2] = _HEX[raw >> 4]
    text[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, 16 * n + 1, 16, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


# --------------------------------------------------------------------------------------
# The data lake (local folder or s3:// prefix) and the staging area of one run
# --------------------------------------------------------------------------------------


class Lake:
    """Paths and the few atomic operations publishing needs, local or on S3."""

    def __init__(self, uri: str, settings: Settings) -> None:
        self.settings = settings
        self.s3 = storage.is_s3(uri)
        if self.s3:
            parsed = storage.parse_s3(uri)
            self.bucket = parsed.bucket
            self.root = f"{parsed.bucket}/{parsed.key}".rstrip("/")
        else:
            self.root = os.path.abspath(os.path.expanduser(uri))
        self._fs: Any = None
        self._client: Any = None
        self.orders = self.join("orders")

    @property
    def fs(self) -> Any:
        if self._fs is None:
            from pyarrow import fs

            self._fs = (
                storage.arrow_s3_filesystem(self.settings) if self.s3 else (fs.LocalFileSystem())
            )
        return self._fs

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.s3 else os.path.join(self.root, *parts)

    def uri_of(self, path: str) -> str:
        return f"s3://{path}" if self.s3 else path

    def partition_file(self, order_date: str) -> str:
        return self.join("orders", f"{schema.ORDER_DATE}={order_date}", "part-0.parquet")

    def check_writable(self) -> None:
        """Refuse early (before reading any order) an output that cannot work."""
        if not self.s3:
            if os.path.exists(self.root) and not os.path.isdir(self.root):
                raise IngestError(f"output {self.root} exists and is not a directory")
            return
        from botocore.exceptions import BotoCoreError, ClientError

        endpoint = self.settings.s3_endpoint_url or "AWS"
        try:
            storage.s3_client(self.settings).head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise IngestError(
                    f"output s3://{self.root}: bucket {self.bucket!r} does not "
                    f"exist (endpoint {endpoint})"
                ) from exc
            raise IngestError(
                f"output s3://{self.root}: cannot access bucket {self.bucket!r}: {code or exc}"
            ) from exc
        except BotoCoreError as exc:
            raise IngestError(
                f"output s3://{self.root}: cannot reach S3 ({endpoint}): {first_line(exc)}"
            ) from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time on a local lake (the lock dies with the process)."""
        if self.s3:
            yield
            return
        import fcntl

        try:
            os.makedirs(self.root, exist_ok=True)
            handle = open(os.path.join(self.root, "_lock"), "a+")  # noqa: SIM115
        except OSError as exc:
            raise storage.StorageError(
                f"cannot create the data lake at {self.root}: {exc.strerror or exc}"
            ) from exc
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise IngestError(
                    f"another `eta ingest` is writing to {self.root}; wait for it to finish"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = storage.s3_client(self.settings)
        return self._client

    def exists(self, path: str) -> bool:
        if not self.s3:
            return os.path.exists(path)
        bucket, key = path.split("/", 1)
        listing = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        found = listing.get("Contents", [])
        return bool(found) and (found[0]["Key"] == key or found[0]["Key"].startswith(key + "/"))

    def move(self, src: str, dst: str) -> None:
        if self.s3:  # a server-side copy (one atomic PUT of the target), then delete
            bucket, key = src.split("/", 1)
            dst_bucket, dst_key = dst.split("/", 1)
            self.client.copy({"Bucket": bucket, "Key": key}, dst_bucket, dst_key)
            self.client.delete_object(Bucket=bucket, Key=key)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(src, dst)

    def read_parquet(self, path: str) -> pa.Table | None:
        import pyarrow.parquet as pq

        if not self.exists(path):
            return None
        try:
            return pq.read_table(path, filesystem=self.fs)
        except (OSError, pa.ArrowException) as exc:
            raise storage.StorageError(
                f"cannot read the published partition {self.uri_of(path)}: {first_line(exc)}"
            ) from exc

    def write_parquet(self, table: pa.Table, path: str) -> None:
        import pyarrow.parquet as pq

        if not self.s3:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        # order_id is unique per row: a dictionary would only cost time.
        dictionary = [name for name in table.column_names if name != schema.ORDER_ID]
        pq.write_table(
            table, path, filesystem=self.fs, compression="snappy", use_dictionary=dictionary
        )

    def write_bytes(self, path: str, data: bytes) -> None:
        """Whole-or-nothing write: a temp file renamed locally, a single PUT on S3."""
        if self.s3:
            bucket, key = path.split("/", 1)
            self.client.put_object(Bucket=bucket, Key=key, Body=data)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
        with open(temp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)

    def read_bytes(self, path: str) -> bytes:
        if self.s3:
            bucket, key = path.split("/", 1)
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        with open(path, "rb") as handle:
            return handle.read()

    def delete_file(self, path: str) -> None:
        if self.s3:
            bucket, key = path.split("/", 1)
            self.client.delete_object(Bucket=bucket, Key=key)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def delete_dir(self, path: str) -> None:
        if not self.s3:
            shutil.rmtree(path, ignore_errors=True)
            return
        bucket, key = path.split("/", 1)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/"):
            objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": objects})

    def list_names(self, path: str) -> list[str]:
        """Names directly inside a folder (local) or prefix (S3)."""
        if not self.s3:
            return sorted(os.listdir(path)) if os.path.isdir(path) else []
        bucket, key = path.split("/", 1)
        prefix = key.rstrip("/") + "/"
        names = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names.update(obj["Key"][len(prefix) :] for obj in page.get("Contents", []))
            names.update(
                p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
            )
        return sorted(name for name in names if name)


class DayStreams:
    """Accepted rows as one Arrow IPC stream per order day, and rejected rows, in a folder.

    What one ingest writes before it merges and publishes; the Dask engine's workers
    stage each source through the same class.
    """

    MAX_OPEN = 128  # beyond this many days in flight, writers are closed and reopened

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(os.path.join(directory, "rows"), exist_ok=True)
        self.segments: dict[int, list[str]] = {}
        self._open: dict[int, Any] = {}
        self._quarantine: Any = None
        self.quarantine_path = os.path.join(directory, "quarantine.arrows")

    def write_rows(self, batch: pa.RecordBatch, days: np.ndarray) -> None:
        """Append accepted rows to the stream of their order day."""
        first = days[0]
        if (days == first).all():
            self._writer(int(first)).write_batch(batch)
            return
        order = np.argsort(days, kind="stable")
        ordered = batch.take(pa.array(order))
        unique, starts = np.unique(days[order], return_index=True)
        ends = [*starts[1:], len(order)]
        for day, start, end in zip(unique, starts, ends, strict=True):
            self._writer(int(day)).write_batch(ordered.slice(start, end - start))

    def _writer(self, day: int) -> Any:
        writer = self._open.get(day)
        if writer is None:
            if len(self._open) >= self.MAX_OPEN:
                self.close_rows()
            segments = self.segments.setdefault(day, [])
            path = os.path.join(self.directory, "rows", f"{day}-{len(segments)}.arrows")
            segments.append(path)
            writer = pa.ipc.new_stream(path, STAGE_SCHEMA)
            self._open[day] = writer
        return writer

    def write_quarantine(self, batch: pa.RecordBatch) -> None:
        if self._quarantine is None:
            self._quarantine = pa.ipc.new_stream(self.quarantine_path, QUARANTINE_SCHEMA)
        self._quarantine.write_batch(batch)

    def close_rows(self) -> None:
        for writer in self._open.values():
            writer.close()
        self._open.clear()

    def close(self) -> None:
        self.close_rows()
        if self._quarantine is not None:
            self._quarantine.close()
            self._quarantine = None


class _Stage(DayStreams):
    """The private work area of one run (under the lake's ``_staging``; a local temporary
    folder when the lake is on S3), and how merge and publish read it back."""

    def __init__(self, lake: Lake, run_id: str) -> None:
        self.lake = lake
        self.run_id = run_id
        self.remote = lake.join("_staging", run_id)
        if lake.s3:
            local = tempfile.mkdtemp(prefix=f"eta-ingest-{run_id}-")
        else:
            local = self.remote
            os.makedirs(os.path.join(local, "rows"))  # a fresh run id: must not exist
        super().__init__(local)

    def read_day(self, day: int) -> pa.Table:
        # Plain reads, not memory maps: mapped pages would count as resident memory.
        tables = []
        for path in self.segments[day]:
            with pa.OSFile(path) as source:
                tables.append(pa.ipc.open_stream(source).read_all())
        return pa.concat_tables(tables)

    def quarantine_batches(self) -> Iterator[pa.RecordBatch]:
        if not os.path.exists(self.quarantine_path):
            return
        with pa.OSFile(self.quarantine_path) as source:
            yield from pa.ipc.open_stream(source)

    def discard(self) -> None:
        """Remove every trace of the run (nothing of it was published)."""
        with contextlib.suppress(Exception):
            self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        if not self.lake.s3:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.directory))  # only if no other run left anything
        else:
            with contextlib.suppress(Exception):
                self.lake.delete_dir(self.remote)


# --------------------------------------------------------------------------------------
# Prepare (merge + dedupe per date, inside staging) and publish (journal + renames)
# --------------------------------------------------------------------------------------


@dataclass
class _Merged:
    order_date: str
    move: tuple[str, str] | None
    written: int
    cleaned_rows: int
    cleaned: dict[str, int]
    duplicates: pa.RecordBatch | None


def _prepare_publish(
    lake: Lake,
    stage: _Stage,
    result: IngestResult,
    labels: list[str],
    progress: ProgressCallback | None,
) -> list[tuple[str, str]]:
    """Build every new partition file and the quarantine file inside the staging area."""
    stage.close_rows()  # the quarantine stream stays open for duplicates found below
    days = sorted(stage.segments)
    moves: list[tuple[str, str]] = []
    workers = max(1, min(len(days), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        merged_days = pool.map(lambda day: merge_day(lake, stage, day, labels), days)
        for done, merged in enumerate(merged_days, start=1):
            result.rows_written += merged.written
            result.rows_cleaned += merged.cleaned_rows
            for rule, count in merged.cleaned.items():
                result.cleaned[rule] = result.cleaned.get(rule, 0) + count
            if merged.duplicates is not None:
                count = merged.duplicates.num_rows
                result.rows_quarantined += count
                result.reasons["duplicate_order"] = result.reasons.get("duplicate_order", 0) + count
                stage.write_quarantine(merged.duplicates)
            if merged.move is not None:
                moves.append(merged.move)
                result.partitions.append(merged.order_date)
            if progress:
                progress(
                    Progress(
                        "publishing",
                        done,
                        len(days),
                        unit="days",
                        note=f"{result.rows_read:,} rows",
                    )
                )
    stage.close()
    if result.rows_quarantined:
        import pyarrow.parquet as pq

        staged = lake.join("_staging", stage.run_id, "quarantine.parquet")
        if not lake.s3:
            os.makedirs(os.path.dirname(staged), exist_ok=True)
        with pq.ParquetWriter(staged, QUARANTINE_SCHEMA, filesystem=lake.fs) as writer:
            for batch in stage.quarantine_batches():
                writer.write_batch(batch)
        final = lake.join("quarantine", f"{stage.run_id}.parquet")
        moves.append((staged, final))
        result.quarantine = lake.uri_of(final)
    result.reasons = dict(sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    result.cleaned = dict(sorted(result.cleaned.items(), key=lambda kv: (-kv[1], kv[0])))
    result.partitions.sort()
    return moves


def merge_day(lake: Lake, stage: _Stage, day: int, labels: list[str]) -> _Merged:
    """New ``part-0.parquet`` for one date: published rows + this run's new orders."""
    order_date = str(np.datetime64(day, "D"))
    staged = stage.read_day(day)
    hashes = staged.column("_hash").to_numpy()
    ids = _hex_ids(hashes)
    duplicate = np.zeros(len(hashes), bool)
    if len(pc.unique(staged.column("_hash"))) < len(hashes):  # rare: repeats in this run
        duplicate[:] = True
        duplicate[np.unique(hashes, return_index=True)[1]] = False  # first occurrence wins
    clean_schema = schema.arrow_schema()
    final = lake.partition_file(order_date)
    existing = lake.read_parquet(final)
    if existing is not None:
        try:
            existing = existing.select(list(schema.CLEAN_COLUMNS)).cast(clean_schema)
        except (KeyError, pa.ArrowException) as exc:
            raise storage.StorageError(
                f"published partition {lake.uri_of(final)} does not have the cleaned-orders "
                f"schema: {first_line(exc)}"
            ) from exc
        seen = pc.is_in(ids, value_set=existing.column(schema.ORDER_ID).combine_chunks())
        duplicate |= seen.to_numpy(zero_copy_only=False)

    duplicates = None
    repeated = np.flatnonzero(duplicate)
    if repeated.size:
        rows = staged.take(pa.array(repeated))
        source = pa.array(labels, pa.string()).take(rows.column("_src").combine_chunks())
        duplicates = pa.RecordBatch.from_arrays(
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

    keep = np.flatnonzero(~duplicate)
    if keep.size == 0:
        return _Merged(order_date, None, 0, 0, {}, duplicates)
    kept = staged.take(pa.array(keep)) if repeated.size else staged
    blank = kept.column("_blank").to_numpy()
    cleaned: dict[str, int] = {}
    columns = []
    for name in schema.COLUMN_NAMES:
        column = kept.column(name)
        bit = _BLANK_BIT.get(name)
        if bit is not None:
            hit = (blank >> np.uint32(bit)) & np.uint32(1) == 1
            count = int(hit.sum())
            if count:
                cleaned[BLANK_RULES[bit].reason] = count
                column = column.combine_chunks()
                column = pc.if_else(pa.array(hit), pa.scalar(None, column.type), column)
        columns.append(column)
    table = pa.Table.from_arrays(
        [
            ids.take(pa.array(keep)) if repeated.size else ids,
            *columns,
            kept.column(schema.TARGET),
            constant_text(order_date, keep.size),
        ],
        schema=clean_schema,
    )
    if existing is not None:
        table = pa.concat_tables([existing, table])
    staged_file = lake.join(
        "_staging", stage.run_id, "publish", f"{schema.ORDER_DATE}={order_date}", "part-0.parquet"
    )
    lake.write_parquet(table, staged_file)
    return _Merged(
        order_date,
        (staged_file, final),
        int(keep.size),
        int(np.count_nonzero(blank)),
        cleaned,
        duplicates,
    )


@contextlib.contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM while publishing: the few renames must not be cut in half."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def hold(signum: int, _frame: Any) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def publish_staged(lake: Lake, stage: _Stage, moves: list[tuple[str, str]]) -> None:
    """Journal the moves, then rename staged files into place: a crash rolls forward."""
    if not moves:
        stage.discard()
        return
    journal = lake.join("_journal", f"{stage.run_id}.json")
    plan = {"run_id": stage.run_id, "staging": stage.remote, "moves": moves}
    with _signals_deferred():
        try:
            lake.write_bytes(journal, json.dumps(plan, indent=1).encode("utf-8"))
        except BaseException:
            stage.discard()
            raise
        checkpoint("journal", run_id=stage.run_id)
        try:
            _apply_moves(lake, moves)
        except Exception as exc:
            raise storage.StorageError(
                f"publishing run {stage.run_id} failed: {first_line(exc)}; the next "
                "`eta ingest` completes it"
            ) from exc
        lake.delete_file(journal)
        stage.discard()


def _apply_moves(lake: Lake, moves: Sequence[Sequence[str]]) -> None:
    for src, dst in moves:
        if lake.exists(src):  # already moved when rolling forward an interrupted publish
            lake.move(src, dst)
        checkpoint("moved", dst=dst)


def recover(lake: Lake) -> list[str]:
    """Roll forward publishes cut short by a crash; drop work areas of dead runs."""
    recovered = []
    journals = lake.join("_journal")
    for name in lake.list_names(journals):
        if not name.endswith(".json"):
            continue
        path = lake.join("_journal", name)
        try:
            plan = json.loads(lake.read_bytes(path))
            moves, staging, run_id = plan["moves"], plan["staging"], plan["run_id"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise storage.StorageError(
                f"cannot read the publish journal {lake.uri_of(path)}: {first_line(exc)}"
            ) from exc
        _apply_moves(lake, moves)
        lake.delete_file(path)
        lake.delete_dir(staging)
        recovered.append(run_id)
    if not lake.s3:  # under the lock no other run is alive, so any staging area is stale
        for name in lake.list_names(lake.join("_staging")):
            shutil.rmtree(lake.join("_staging", name), ignore_errors=True)
    return recovered


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _join(uri: str, part: str) -> str:
    if storage.is_s3(uri):
        return f"{uri.rstrip('/')}/{part}"
    return os.path.join(uri, part)


def _resolve_dataset(
    settings_or_uri: Settings | str, settings: Settings | None
) -> tuple[str, Settings]:
    if isinstance(settings_or_uri, Settings):
        return dataset_uri(settings_or_uri), settings_or_uri
    uri = str(settings_or_uri)
    if settings is None:
        if storage.is_s3(uri):
            from eta_cli.config import load_settings

            settings = load_settings()
        else:
            settings = Settings()
    if not storage.is_s3(uri):
        uri = os.path.abspath(os.path.expanduser(uri))
    return uri, settings


def parse_since(since: str | date | datetime) -> datetime:
    """A --since value (ISO date or datetime, naive = UTC) as a naive UTC datetime."""
    if isinstance(since, datetime):
        if since.tzinfo is not None:
            from datetime import UTC

            since = since.astimezone(UTC).replace(tzinfo=None)
        return since
    if isinstance(since, date):
        return datetime(since.year, since.month, since.day)
    try:
        return parse_since(datetime.fromisoformat(str(since).strip()))
    except ValueError as exc:
        raise EtaError(
            f"since={since!r} is not a date: use YYYY-MM-DD or an ISO timestamp"
        ) from exc


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    import pandas as pd

    # Arrow-backed strings: the "string" dtype of the schema without building millions
    # of Python str objects (several times faster for order_id and the category).
    mapping = {pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype("pyarrow")}
    return table.to_pandas(
        types_mapper=mapping.get,
        coerce_temporal_nanoseconds=True,
        split_blocks=True,
        self_destruct=True,
    )


def new_run_id() -> str:
    """A sortable, unique id for one ingest run (names its staging area and journal)."""
    from datetime import UTC

    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
