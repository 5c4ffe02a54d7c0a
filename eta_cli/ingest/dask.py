"""``eta ingest --engine dask``: many large files validated in parallel on a Dask cluster.

The local ingest's steps, spread out (see :mod:`eta_cli.lake` for the layout). The
stage's entry point :func:`eta_cli.ingest.ingest` runs this with ``engine="dask"``:

1. *Plan* (driver): the same source expansion and pre-checks (missing files,
   formats, columns) as the local path; a bad source stops the run before any work.
2. *Stage* (one task per source file): the worker streams its file with the local
   reader and validates every chunk with :func:`eta_cli.ingest.chunks.check_chunk`, the
   local rules; accepted rows go to Arrow IPC files per order day and rejected
   rows to a quarantine stream, under ``_staging/<run_id>/src-NNNNN/`` of the data
   lake (written locally then uploaded when the lake is on S3).
3. *Merge* (one task per order day): :func:`eta_cli.ingest.merge.merge_day` de-duplicates
   the day's staged rows (in source order, so the first of two identical orders
   is kept, as locally) against each other and the published partition, and
   writes the new ``part-0.parquet`` inside the staging area.
4. *Publish* (driver): the quarantine file is assembled, the row accounting is
   checked (``rows_read == rows_written + rows_quarantined``) and the local
   journaled, atomic publish (:mod:`eta_cli.lake.publish`) renames everything
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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from eta_cli import storage
from eta_cli.config import Settings
from eta_cli.dask_engine import Tracker
from eta_cli.errors import EtaError, first_line
from eta_cli.ingest.chunks import apply_checked, check_chunk, quarantine_malformed
from eta_cli.ingest.merge import Merged, count_merged
from eta_cli.ingest.merge import merge_day as merge_staged_day
from eta_cli.ingest.result import IngestResult
from eta_cli.ingest.sources import Source, read_batches, synthetic_batches
from eta_cli.lake import (
    DayStreams,
    IngestError,
    Lake,
    prepare_and_publish,
    stage_quarantine_file,
)
from eta_cli.progress import Progress, ProgressCallback

if TYPE_CHECKING:
    from distributed import Client


@dataclass(frozen=True)
class _Job:
    """One source for one worker: a file (its plan entry) or the synthetic orders."""

    index: int
    label: str
    source: Source | None = None  # a planned source without its filesystem (rebuilt on the worker)
    synthetic: tuple[int, int, bool, str | None] | None = None  # n, seed, drift, start


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

    def __init__(self, lake: Lake, run_id: str, segments: dict[int, list[str]] | None = None):
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


def _open(lake: Lake, path: str) -> Any:
    # Plain reads, not memory maps (as ingest): mapped pages count as resident memory.
    return pa.OSFile(path) if not lake.s3 else lake.fs.open_input_stream(path)


def _read_stream(lake: Lake, path: str) -> pa.Table:
    with _open(lake, path) as source:
        return pa.ipc.open_stream(source).read_all()


def _iter_stream(lake: Lake, path: str) -> Iterator[pa.RecordBatch]:
    with _open(lake, path) as source:
        yield from pa.ipc.open_stream(source)


# ------------------------------------------------------------------------ worker tasks


def stage_source(job: _Job, settings: Settings, lake_uri: str, run_id: str) -> Staged:
    """Validate one source with the local rules and stage its rows (runs on a worker)."""
    lake = Lake(lake_uri, settings)
    name = f"src-{job.index:05d}"
    remote = lake.join("_staging", run_id, name)
    directory = tempfile.mkdtemp(prefix=f"eta-ingest-{run_id}-") if lake.s3 else remote
    stage = DayStreams(directory)
    totals = IngestResult(run_id=run_id)
    malformed: list[tuple[int | None, str]] = []
    try:
        try:
            if job.synthetic is not None:
                n, seed, drift, start = job.synthetic
                chunk = settings.ingest_chunk_rows
                batches = synthetic_batches(n, seed, drift, chunk, start)
            else:
                filesystem, _ = storage.filesystem_and_path(job.source.uri, settings)
                source = dataclasses.replace(job.source, filesystem=filesystem)
                batches = (batch for batch, _ in read_batches(source, settings, malformed))
            rows = 0
            for batch in batches:
                checked = check_chunk(batch, job.index, job.label, rows, settings)
                rows += batch.num_rows
                apply_checked(checked, stage, totals)
                if malformed:
                    quarantine_malformed(malformed, job.label, stage, totals)
            if malformed:
                quarantine_malformed(malformed, job.label, stage, totals)
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
    lake: Lake, directory: str, remote: str, segments: dict[int, list[str]], quarantine: str | None
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
) -> Merged:
    """The new partition of one order day, inside the staging area (runs on a worker)."""
    lake = Lake(lake_uri, settings)
    stage = _SharedStage(lake, run_id, {day: segments})
    return merge_staged_day(lake, stage, day, labels)


# ------------------------------------------------------------------------------ driver


def run_on_cluster(
    client: Client,
    lake: Lake,
    plan: list[Source],
    synthetic: tuple[int | None, int, bool, str | None],
    result: IngestResult,
    progress: ProgressCallback | None,
) -> None:
    """Stage, merge and publish with one Dask task per source file and per order day.

    Called by :func:`eta_cli.ingest.ingest` with the sources planned, the lake locked
    and ``result`` started; same checks, rules, quarantine, accounting and atomic
    publish as the local engine, so the result has the same meaning.
    """
    settings = lake.settings
    labels = result.files
    jobs = [
        _Job(i, src.uri, source=dataclasses.replace(src, filesystem=None))
        for i, src in enumerate(plan)
    ]
    n, seed, drift, start = synthetic
    if n:
        jobs.append(_Job(len(plan), labels[-1], synthetic=(n, seed, drift, start)))
    tracker = Tracker(progress)
    lake_uri = lake.uri_of(lake.root)
    stage = _SharedStage(lake, result.run_id)

    def prepare() -> list[tuple[str, str]]:
        staged = _stage_all(client, tracker, jobs, settings, lake_uri, result, progress)
        merged = _merge(client, tracker, lake_uri, settings, stage, staged, labels)
        moves = _assemble(lake, stage, staged, result, merged, progress)
        result.check_balanced()
        return moves

    prepare_and_publish(lake, stage, prepare)


def _stage_all(
    client: Client,
    tracker: Tracker,
    jobs: list[_Job],
    settings: Settings,
    lake_uri: str,
    result: IngestResult,
    progress: ProgressCallback | None,
) -> list[Staged]:
    """One staging task per source; rows read are counted as each one finishes."""
    token = uuid.uuid4().hex[:8]
    futures = [
        client.submit(
            stage_source, job, settings, lake_uri, result.run_id, key=f"eta-stage-{token}-{i}"
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

    return tracker.wait(futures, "validating", unit="files", on_done=read)


def _merge(
    client: Client,
    tracker: Tracker,
    lake_uri: str,
    settings: Settings,
    stage: _SharedStage,
    staged: list[Staged],
    labels: list[str],
) -> list[Merged]:
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
    lake: Lake,
    stage: _SharedStage,
    staged: list[Staged],
    result: IngestResult,
    merged: list[Merged],
    progress: ProgressCallback | None,
) -> list[tuple[str, str]]:
    """Totals, the quarantine file and the list of moves, as the local prepare step."""
    moves: list[tuple[str, str]] = []
    for item in staged:
        result.rows_quarantined += item.rows_quarantined
        for reason, count in item.reasons.items():
            result.reasons[reason] = result.reasons.get(reason, 0) + count
    for done, day in enumerate(merged, start=1):
        count_merged(result, day)
        if day.move is not None:
            moves.append(day.move)
        if progress:
            progress(
                Progress(
                    "publishing", done, len(merged), unit="days", note=f"{result.rows_read:,} rows"
                )
            )
    if result.rows_quarantined:
        batches = _quarantine_batches(lake, staged, merged)
        staged_file, final = stage_quarantine_file(lake, stage.run_id, batches)
        moves.append((staged_file, final))
        result.quarantine = lake.uri_of(final)
    result.sort_totals()
    return moves


def _quarantine_batches(
    lake: Lake, staged: list[Staged], merged: list[Merged]
) -> Iterator[pa.RecordBatch]:
    """Rejected rows in source order, then the duplicates found by the merge tasks."""
    for item in sorted(staged, key=lambda s: s.index):
        if item.quarantine:
            yield from _iter_stream(lake, item.quarantine)
    for day in merged:
        if day.duplicates is not None:
            yield day.duplicates
