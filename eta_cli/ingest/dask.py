"""``eta ingest --engine dask``: many large files validated in parallel on a Dask cluster.

The local ingest's steps, spread out (see :mod:`eta_cli.ingest` for the layout):

1. *Plan* (driver): the same source expansion and pre-checks (missing files,
   formats, columns) as the local path; a bad source stops the run before any work.
2. *Stage* (one task per source file): the worker streams its file with the local
   reader and validates every chunk with :func:`eta_cli.ingest.check_chunk`, the
   local rules; accepted rows go to Arrow IPC files per order day and rejected
   rows to a quarantine stream, under ``_staging/<run_id>/src-NNNNN/`` of the data
   lake (written locally then uploaded when the lake is on S3).
3. *Merge* (one task per order day): :func:`eta_cli.ingest.merge_day` de-duplicates
   the day's staged rows (in source order, so the first of two identical orders
   is kept, as locally) against each other and the published partition, and
   writes the new ``part-0.parquet`` inside the staging area.
4. *Publish* (driver): the quarantine file is assembled, the row accounting is
   checked (``rows_read == rows_written + rows_quarantined``) and the local
   journaled, atomic publish (:func:`eta_cli.ingest.publish_staged`) renames everything
   into place. Re-running the same files publishes nothing new: every order is
   then a ``duplicate_order``.

With a cluster on other machines, the data lake must be on S3 (or a filesystem
every worker mounts at the same path), as must local source files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from eta_cli import ingest, storage
from eta_cli.config import Settings
from eta_cli.dask_engine import Tracker
from eta_cli.errors import EtaError, first_line
from eta_cli.ingest import IngestError, IngestResult
from eta_cli.progress import Progress, ProgressCallback

if TYPE_CHECKING:
    from distributed import Client


@dataclass(frozen=True)
class _Job:
    """One source for one worker: a file (its plan entry) or the synthetic orders."""

    index: int
    label: str
    source: Any = None  # an ingest source without its filesystem (rebuilt on the worker)
    synthetic: tuple[int, int, bool] | None = None


@dataclass
class Staged:
    """What a worker staged for one source."""

    index: int
    rows_read: int
    rows_quarantined: int
    reasons: dict[str, int]
    segments: dict[int, list[str]]  # order day (days since epoch) -> staged files
    quarantine: str | None


class _SharedStage:
    """The run's staging area as the merge and publish steps see it (any worker, or the
    driver): staged files are read through the lake's filesystem, local or S3."""

    def __init__(self, lake: Any, run_id: str, segments: dict[int, list[str]] | None = None):
        self.lake = lake
        self.run_id = run_id
        self.remote = lake.join("_staging", run_id)
        self.segments = segments or {}

    def read_day(self, day: int) -> pa.Table:
        return pa.concat_tables([_read_stream(self.lake, p) for p in self.segments[day]])

    def discard(self) -> None:
        """Remove the staging area (nothing of it was published)."""
        with contextlib.suppress(Exception):
            self.lake.delete_dir(self.remote)
        if not self.lake.s3:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.remote))  # only if no other run left anything


def _open(lake: Any, path: str) -> Any:
    # Plain reads, not memory maps (as ingest): mapped pages count as resident memory.
    return pa.OSFile(path) if not lake.s3 else lake.fs.open_input_stream(path)


def _read_stream(lake: Any, path: str) -> pa.Table:
    with _open(lake, path) as source:
        return pa.ipc.open_stream(source).read_all()


def _iter_stream(lake: Any, path: str) -> Iterator[pa.RecordBatch]:
    with _open(lake, path) as source:
        yield from pa.ipc.open_stream(source)


# ------------------------------------------------------------------------ worker tasks


def stage_source(job: _Job, settings: Settings, lake_uri: str, run_id: str) -> Staged:
    """Validate one source with the local rules and stage its rows (runs on a worker)."""
    lake = ingest.Lake(lake_uri, settings)
    name = f"src-{job.index:05d}"
    remote = lake.join("_staging", run_id, name)
    directory = tempfile.mkdtemp(prefix=f"eta-ingest-{run_id}-") if lake.s3 else remote
    stage = ingest.DayStreams(directory)
    totals = IngestResult(run_id=run_id)
    malformed: list[tuple[int | None, str]] = []
    try:
        try:
            if job.synthetic is not None:
                n, seed, drift = job.synthetic
                chunk = settings.ingest_chunk_rows
                batches = ingest.synthetic_batches(n, seed, drift, chunk)
            else:
                filesystem, _ = storage.filesystem_and_path(job.source.uri, settings)
                source = dataclasses.replace(job.source, filesystem=filesystem)
                batches = (batch for batch, _ in ingest.read_batches(source, settings, malformed))
            rows = 0
            for batch in batches:
                checked = ingest.check_chunk(batch, job.index, job.label, rows, settings)
                rows += batch.num_rows
                ingest.apply_checked(checked, stage, totals)
                if malformed:
                    ingest.quarantine_malformed(malformed, job.label, stage, totals)
            if malformed:
                ingest.quarantine_malformed(malformed, job.label, stage, totals)
        except EtaError:
            raise
        except (OSError, pa.ArrowException, EOFError, UnicodeDecodeError) as exc:
            raise IngestError(f"{job.label}: unreadable file: {first_line(exc)}") from exc
        finally:
            stage.close()
        segments = stage.segments
        quarantine = stage.quarantine_path if os.path.exists(stage.quarantine_path) else None
        if lake.s3:
            segments, quarantine = _upload(lake, directory, remote, segments, quarantine)
    finally:
        if lake.s3:
            shutil.rmtree(directory, ignore_errors=True)
    return Staged(
        job.index,
        totals.rows_read,
        totals.rows_quarantined,
        dict(totals.reasons),
        segments,
        quarantine,
    )


def _upload(
    lake: Any, directory: str, remote: str, segments: dict[int, list[str]], quarantine: str | None
) -> tuple[dict[int, list[str]], str | None]:
    from pyarrow import fs as pafs

    def put(path: str) -> str:
        target = "/".join([remote, os.path.relpath(path, directory).replace(os.sep, "/")])
        pafs.copy_files(path, target, destination_filesystem=lake.fs)
        return target

    moved = {day: [put(p) for p in paths] for day, paths in segments.items()}
    return moved, (put(quarantine) if quarantine else None)


def merge_day(
    lake_uri: str, settings: Settings, run_id: str, day: int, segments: list[str], labels: list[str]
) -> Any:
    """The new partition of one order day, inside the staging area (runs on a worker)."""
    lake = ingest.Lake(lake_uri, settings)
    stage = _SharedStage(lake, run_id, {day: segments})
    return ingest.merge_day(lake, stage, day, labels)


# ------------------------------------------------------------------------------ driver


def ingest_files(
    sources: Sequence[str],
    settings: Settings,
    client: Client,
    *,
    synthetic: int | None = None,
    seed: int = 0,
    drift: bool = False,
    output: str | None = None,
    progress: ProgressCallback | None = None,
) -> IngestResult:
    """Validate, clean and publish orders with one Dask task per source file.

    Same checks, rules, quarantine, accounting and atomic publish as
    :func:`eta_cli.ingest.ingest`; the result has the same meaning.
    """
    started = time.monotonic()
    if output:
        settings = settings.replace(data_uri=output)
    if not sources and not synthetic:
        raise IngestError(
            "nothing to ingest: give at least one SOURCE (file, glob, directory "
            "or s3:// URI) or --synthetic N"
        )
    if synthetic is not None and synthetic < 0:
        raise IngestError(f"--synthetic must be a positive number of orders, got {synthetic}")

    plan = ingest.plan_sources(sources, settings)
    labels = [p.uri for p in plan]
    jobs = [
        _Job(i, src.uri, source=dataclasses.replace(src, filesystem=None))
        for i, src in enumerate(plan)
    ]
    if synthetic:
        labels.append(f"synthetic:n={synthetic},seed={seed}{',drift' if drift else ''}")
        jobs.append(_Job(len(plan), labels[-1], synthetic=(synthetic, seed, drift)))
    lake = ingest.Lake(settings.effective_data_uri, settings)
    lake.check_writable()
    run_id = ingest.new_run_id()
    result = IngestResult(run_id=run_id, output=lake.uri_of(lake.orders), files=labels)
    tracker = Tracker(progress)
    lake_uri = lake.uri_of(lake.root)
    token = uuid.uuid4().hex[:8]

    with lake.locked(), ingest.storage_errors(lake):
        result.recovered = ingest.recover(lake)
        stage = _SharedStage(lake, run_id)
        try:
            futures = [
                client.submit(
                    stage_source, job, settings, lake_uri, run_id, key=f"eta-stage-{token}-{i}"
                )
                for i, job in enumerate(jobs)
            ]
            done = 0

            def read(_: int, item: Staged) -> None:
                nonlocal done
                done += 1
                result.rows_read += item.rows_read
                if progress:
                    progress(
                        Progress(
                            "validating",
                            done,
                            len(jobs),
                            unit="files",
                            note=f"{result.rows_read:,} rows",
                        )
                    )

            staged: list[Staged] = tracker.wait(futures, "validating", unit="files", on_done=read)
            merged = _merge(client, tracker, lake_uri, settings, stage, staged, labels)
            moves = _assemble(lake, stage, staged, result, merged, progress)
            if not result.balanced:  # every row is accounted for before anything is visible
                raise AssertionError(f"row accounting broken: {result.to_dict()}")
        except BaseException:
            stage.discard()
            raise
        ingest.checkpoint("prepared", run_id=run_id)
        ingest.publish_staged(lake, stage, moves)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _merge(
    client: Client,
    tracker: Tracker,
    lake_uri: str,
    settings: Settings,
    stage: _SharedStage,
    staged: list[Staged],
    labels: list[str],
) -> list[Any]:
    """One merge task per order day; the day's segments in source order (first one wins)."""
    days: dict[int, list[str]] = {}
    for item in sorted(staged, key=lambda s: s.index):
        for day, paths in item.segments.items():
            days.setdefault(day, []).extend(paths)
    token = uuid.uuid4().hex[:8]
    ordered = sorted(days)
    futures = [
        client.submit(
            merge_day,
            lake_uri,
            settings,
            stage.run_id,
            day,
            days[day],
            labels,
            key=f"eta-merge-{token}-{day}",
        )
        for day in ordered
    ]
    stage.segments = days
    return tracker.wait(futures, "merging", unit="days")


def _assemble(
    lake: Any,
    stage: _SharedStage,
    staged: list[Staged],
    result: IngestResult,
    merged: list[Any],
    progress: ProgressCallback | None,
) -> list[tuple[str, str]]:
    """Totals, the quarantine file and the list of moves, as ingest's prepare step."""
    import pyarrow.parquet as pq

    moves: list[tuple[str, str]] = []
    for item in staged:
        result.rows_quarantined += item.rows_quarantined
        for reason, count in item.reasons.items():
            result.reasons[reason] = result.reasons.get(reason, 0) + count
    for done, day in enumerate(merged, start=1):
        result.rows_written += day.written
        result.rows_cleaned += day.cleaned_rows
        for rule, count in day.cleaned.items():
            result.cleaned[rule] = result.cleaned.get(rule, 0) + count
        if day.duplicates is not None:
            count = day.duplicates.num_rows
            result.rows_quarantined += count
            result.reasons["duplicate_order"] = result.reasons.get("duplicate_order", 0) + count
        if day.move is not None:
            moves.append(day.move)
            result.partitions.append(day.order_date)
        if progress:
            progress(
                Progress(
                    "publishing", done, len(merged), unit="days", note=f"{result.rows_read:,} rows"
                )
            )
    if result.rows_quarantined:
        target = lake.join("_staging", stage.run_id, "quarantine.parquet")
        if not lake.s3:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        with pq.ParquetWriter(target, ingest.QUARANTINE_SCHEMA, filesystem=lake.fs) as writer:
            for item in sorted(staged, key=lambda s: s.index):
                if item.quarantine:
                    for batch in _iter_stream(lake, item.quarantine):
                        writer.write_batch(batch)
            for day in merged:
                if day.duplicates is not None:
                    writer.write_batch(day.duplicates)
        final = lake.join("quarantine", f"{stage.run_id}.parquet")
        moves.append((target, final))
        result.quarantine = lake.uri_of(final)
    result.reasons = dict(sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    result.cleaned = dict(sorted(result.cleaned.items(), key=lambda kv: (-kv[1], kv[0])))
    result.partitions.sort()
    return moves
