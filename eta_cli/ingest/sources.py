"""Sources of orders: planning and pre-checking local and ``s3://`` files, and reading them.

Every source is expanded (globs, folders, prefixes), sniffed (Parquet, CSV, gzip by
content, the name as a hint) and its header checked before any work, so a bad source
is refused with the file and the problem named, and the lake stays untouched.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from eta_cli import schema, storage
from eta_cli.config import Settings
from eta_cli.errors import first_line
from eta_cli.lake import IngestError

# Spellings of a missing value in both exports of the real file (and common others).
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
CSV_SUFFIXES = (".csv", ".csv.gz", ".gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_BYTES_PER_ROW = 128  # a real row is ~105 bytes
# The CSV reader parses ~8 blocks ahead and a block grows ~5x once parsed into string
# columns, so blocks are capped: 8 MiB (~75k rows) keeps the read-ahead near 350 MB.
_MAX_BLOCK = 8 << 20


@dataclass
class Source:
    """One input file, planned and pre-checked; ``filesystem`` is rebuilt on a Dask worker."""

    uri: str  # as shown to the user
    path: str  # inside ``filesystem``
    kind: Literal["csv", "parquet"]
    gzip: bool
    size: int | None
    filesystem: Any
    header: list[str] = field(default_factory=list)


def plan_sources(sources: Sequence[str], settings: Settings) -> list[Source]:
    """Expand and pre-check every source so a bad one is refused before any work."""
    planned: list[Source] = []
    seen: set[str] = set()
    for source in sources:
        expanded = _expand_s3(source, settings) if storage.is_s3(source) else _expand_local(source)
        for item in expanded:
            if item.uri not in seen:
                seen.add(item.uri)
                _check_source(item)
                planned.append(item)
    return planned


def _expand_local(source: str) -> list[Source]:
    """A local file, folder or glob as its data files (an error when it names none)."""
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
        out.append(Source(absolute, absolute, kind, gz, size, local))
    return out


def _files_in_dir(directory: str) -> list[str]:
    """Data files under a folder, recursively, in a stable order."""
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


def _expand_s3(source: str, settings: Settings) -> list[Source]:
    """An ``s3://`` object, prefix or pattern as its data objects, with clear errors."""
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


def _s3_source(bucket: str, key: str, size: int, client: Any, settings: Settings) -> Source:
    """One S3 object, its format sniffed from its first 4 KiB."""
    head = b""
    if size:
        head = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-4095")["Body"].read()
    kind, gz = _sniff(key, head)
    return Source(
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


def _open_stream(src: Source) -> tuple[Any, Any]:
    """The decoded stream and the raw file (whose position is the progress in bytes)."""
    raw = src.filesystem.open_input_file(src.path)  # random access: tell() reports progress
    return pa.CompressedInputStream(raw, "gzip") if src.gzip else raw, raw


def _check_source(src: Source) -> None:
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


def _csv_header(src: Source) -> list[str]:
    """The column names of a CSV file's first line (read without parsing the file)."""
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
    try:
        return [name.strip() for name in next(csv.reader(io.StringIO(text)))]
    except csv.Error as exc:  # e.g. a lone carriage return inside the header line
        raise IngestError(f"{src.uri}: the header line is not valid CSV: {exc}") from exc


def _wanted_columns(src: Source) -> list[str]:
    """The columns read from a source: the order's, and its own ``order_id`` if it has one."""
    names = list(schema.COLUMN_NAMES)
    return [*names, schema.ORDER_ID] if schema.ORDER_ID in src.header else names


def read_batches(
    src: Source, settings: Settings, malformed: list[tuple[int | None, str]]
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Record batches of one source and how many of its bytes have been consumed."""
    chunk = settings.ingest_chunk_rows
    if src.kind == "parquet":
        import pyarrow.parquet as pq

        with src.filesystem.open_input_file(src.path) as handle:
            parquet = pq.ParquetFile(handle)
            total = max(parquet.metadata.num_rows, 1)
            seen = 0
            for batch in parquet.iter_batches(batch_size=chunk, columns=_wanted_columns(src)):
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
                column_types={name: pa.string() for name in _wanted_columns(src)},
                include_columns=_wanted_columns(src),
                null_values=NULL_VALUES,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        for batch in reader:
            yield batch, raw.tell()


def synthetic_batches(
    n: int, seed: int, drift: bool, chunk: int, start: str | None = None
) -> Iterator[pa.RecordBatch]:
    """Synthetic orders as record batches, so they take the same path as a file.

    ``start``: the first order day (ISO date; default the generator's own start).
    """
    # The generator draws the whole frame at once (its store world and quirks are
    # drawn for all n together), so generation is not chunked; validation is.
    from eta_cli import synthetic

    if start is None:
        frame = synthetic.generate_orders(n, seed, drift=drift)
    else:
        frame = synthetic.generate_orders(n, seed, drift=drift, start=start)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    del frame
    yield from table.to_batches(max_chunksize=chunk)
