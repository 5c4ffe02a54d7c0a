"""Reading the cleaned orders: where they live, the Arrow dataset, pandas, ``--since``.

Every reader of the lake (train, drift, pipeline, the Dask engines) starts here, so
there is one answer to "where are the orders" and one meaning of ``--since``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from eta_cli import schema, storage
from eta_cli.config import Settings
from eta_cli.errors import EtaError, first_line

if TYPE_CHECKING:
    import pandas as pd

#: A value of ``--since``: a start (ISO date/time, naive = UTC) or a span back in time.
Since = str | date | datetime | timedelta

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SPAN_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class NoOrdersError(EtaError):
    """There is no cleaned dataset yet where one was expected."""


def dataset_uri(settings: Settings) -> str:
    """Where the cleaned orders live; every reader (train, drift, Dask) starts here."""
    return _join(settings.effective_data_uri, "orders")


def quarantine_uri(settings: Settings) -> str:
    """Where each ingest run leaves its rejected rows (one Parquet file per run)."""
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
            _rolled_forward(filesystem, path),
            filesystem=filesystem,
            format="parquet",
            partitioning=partitioning,
            schema=schema.arrow_schema(),
        )
    except (OSError, pa.ArrowException) as exc:
        raise storage.StorageError(f"cannot read the dataset at {uri}: {first_line(exc)}") from exc


def _rolled_forward(filesystem: Any, path: str) -> str | list[str]:
    """The orders folder, or, while a publish is pending, the files a reader should see.

    Readers roll a pending publish forward without writing anything: where a journal
    (``<lake>/_journal/*.json``) lists a staged partition file that is still in staging,
    that file is read instead of the published one it replaces, so a reader sees every
    day of the interrupted run in its new version (never half of a run), and the next
    ``eta ingest`` completes the publish for real. No journal: the folder itself.
    """
    import json

    from pyarrow import fs

    root, _, name = path.rstrip("/").rpartition("/")
    if name != "orders" or not root:
        return path
    selector = fs.FileSelector(f"{root}/_journal", allow_not_found=True)
    journals = [i.path for i in filesystem.get_file_info(selector) if i.path.endswith(".json")]
    if not journals:
        return path
    staged: dict[str, str] = {}
    for journal in journals:
        try:
            with filesystem.open_input_stream(journal) as stream:
                moves = json.loads(stream.read())["moves"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # finished (and deleted) meanwhile, or unreadable: ingest reports it
        staged.update({dst: src for src, dst in moves if dst.startswith(path + "/")})
    listed = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
    files = {
        info.path
        for info in listed
        if info.type == fs.FileType.File and not info.base_name.startswith(("_", "."))
    }
    pending = [src for src in staged.values() if filesystem.get_file_info(src).is_file]
    done = {dst for dst, src in staged.items() if src in pending}
    return sorted((files - done) | set(pending))


def read_orders(
    settings_or_uri: Settings | str,
    columns: Sequence[str] | None = None,
    since: Since | None = None,
    *,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Cleaned orders as pandas with the schema's nullable dtypes.

    ``settings_or_uri`` is Settings (reads ``dataset_uri(settings)``) or the dataset URI
    itself (local path or ``s3://``; pass ``settings`` for the S3 endpoint).
    ``since`` keeps orders created at or after it (see :func:`parse_since`); whole date
    partitions are skipped without being opened.
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
    start = _dataset_start(dataset, since)
    if start is not None:
        expression = ds.field(schema.ORDER_DATE) >= start.strftime("%Y-%m-%d")
        if start != datetime(start.year, start.month, start.day):
            expression &= ds.field(schema.CREATED_AT) >= pa.scalar(start, pa.timestamp("us"))
    try:
        table = dataset.to_table(columns=wanted, filter=expression)
    except (OSError, pa.ArrowException) as exc:
        raise storage.StorageError(f"cannot read orders: {first_line(exc)}") from exc
    return _to_pandas(table)


def parse_since(since: Since | None) -> datetime | timedelta | None:
    """The one reading of a ``--since`` value, for every command that takes one.

    An ISO date or date/time (naive means UTC) is a start, returned as an aware UTC
    datetime; ``24h``/``7d``/``90m``/``2w`` is a span back in time, returned as a
    timedelta (what it is measured back from is the caller's choice); None or blank
    is None.
    """
    if since is None or isinstance(since, timedelta):
        return since
    if isinstance(since, datetime):
        return since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
    if isinstance(since, date):
        return datetime(since.year, since.month, since.day, tzinfo=UTC)
    text = str(since).strip()
    if not text:
        return None
    span = _SPAN.match(text)
    if span:
        amount, unit = float(span.group(1)), span.group(2).lower()
        if amount <= 0:
            raise EtaError(f"--since {since!r} must be a positive duration")
        return timedelta(**{_SPAN_UNITS[unit]: amount})
    try:
        return parse_since(datetime.fromisoformat(text))
    except ValueError:
        raise EtaError(
            f"--since {since!r} is not understood (not a date, a date/time or a duration): "
            "use a duration such as 24h, 7d, 90m, 2w or an ISO date/time such as "
            "2015-02-10 or 2015-02-10T12:00:00"
        ) from None


def since_start(
    since: Since | None, settings_or_uri: Settings | str, *, settings: Settings | None = None
) -> datetime | None:
    """Where a ``--since`` window starts in the lake, as the naive UTC datetime the
    lake's timestamps use; a span is measured back from the newest ingested order
    (data time, not wall time: batches are often replayed)."""
    window = parse_since(since)
    if isinstance(window, timedelta):
        return _dataset_start(open_dataset(settings_or_uri, settings=settings), window)
    return None if window is None else window.replace(tzinfo=None)


def _dataset_start(dataset: Any, since: Since | None) -> datetime | None:
    """:func:`since_start` on an opened dataset (no second listing of the lake)."""
    window = parse_since(since)
    if window is None:
        return None
    if isinstance(window, datetime):
        return window.replace(tzinfo=None)
    newest = _newest_order(dataset)
    return None if newest is None else newest - window


def _newest_order(dataset: Any) -> datetime | None:
    """The newest ``created_at`` of the lake, reading only its newest date partition."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    days = [
        ds.get_partition_keys(fragment.partition_expression).get(schema.ORDER_DATE)
        for fragment in dataset.get_fragments()
    ]
    days = [day for day in days if day]
    if not days:
        return None
    try:
        table = dataset.to_table(
            columns=[schema.CREATED_AT], filter=ds.field(schema.ORDER_DATE) == max(days)
        )
    except (OSError, pa.ArrowException) as exc:
        raise storage.StorageError(f"cannot read orders: {first_line(exc)}") from exc
    return pc.max(table.column(0)).as_py()


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
