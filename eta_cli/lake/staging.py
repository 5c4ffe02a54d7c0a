"""The staging area of a run: accepted rows per order day and rejected rows, as Arrow streams.

Nothing staged is visible to readers; a failed run removes its staging area and the
next run removes any a dead run left. The Dask engine's workers stage each source
through :class:`DayStreams` too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from eta_cli import schema
from eta_cli.lake.store import Lake, staging_error

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
    """Accepted rows as staged: typed columns, the duration, and what merge needs
    (order id, blanked-value bits, source index and row number)."""
    clean = schema.arrow_schema()
    fields = [clean.field(name).with_nullable(True) for name in schema.COLUMN_NAMES]
    extra = [
        pa.field(schema.TARGET, pa.float64()),
        pa.field("_order_id", pa.string()),
        pa.field("_blank", pa.uint32()),
        pa.field("_src", pa.int32()),
        pa.field("_row", pa.int64()),
    ]
    return pa.schema([*fields, *extra])


STAGE_SCHEMA = _stage_schema()


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

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write here (a full disk) is named as the staging folder's, not the
        source's or the lake's."""
        try:
            yield
        except (OSError, pa.ArrowException) as exc:
            raise staging_error(self.directory, exc) from exc

    def write_rows(self, batch: pa.RecordBatch, days: np.ndarray) -> None:
        """Append accepted rows to the stream of their order day."""
        with self._writing():
            self._write_rows(batch, days)

    def _write_rows(self, batch: pa.RecordBatch, days: np.ndarray) -> None:
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
        with self._writing():
            if self._quarantine is None:
                self._quarantine = pa.ipc.new_stream(self.quarantine_path, QUARANTINE_SCHEMA)
            self._quarantine.write_batch(batch)

    def close_rows(self) -> None:
        writers, self._open = list(self._open.values()), {}
        with self._writing():
            for writer in writers:
                writer.close()

    def close(self) -> None:
        self.close_rows()
        if self._quarantine is not None:
            quarantine, self._quarantine = self._quarantine, None
            with self._writing():
                quarantine.close()


class RunStage(DayStreams):
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


def stage_quarantine_file(
    lake: Lake, run_id: str, batches: Iterable[pa.RecordBatch]
) -> tuple[str, str]:
    """Write the run's quarantine file inside its staging area; return the move that
    publishes it (staged path, final path), so it appears with the partitions."""
    import pyarrow.parquet as pq

    staged = lake.join("_staging", run_id, "quarantine.parquet")
    if not lake.s3:
        os.makedirs(os.path.dirname(staged), exist_ok=True)
    with pq.ParquetWriter(staged, QUARANTINE_SCHEMA, filesystem=lake.fs) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return staged, lake.join("quarantine", f"{run_id}.parquet")
