"""The ingest stage's entry point, and the local engine: one process, a few threads.

How a run keeps the dataset consistent (see :mod:`eta_cli.lake` for the layout):

1. *Stream*: sources are read in chunks (``pyarrow.csv.open_csv`` / Parquet row
   batches), every chunk is checked with vectorised Arrow/NumPy code
   (:mod:`eta_cli.ingest.chunks`), accepted rows go to one Arrow IPC stream per order
   date in the staging area, rejected rows to a staged quarantine stream. Nothing
   visible changes; any failure or Ctrl-C removes the staging area.
2. *Prepare*: per touched date, :func:`eta_cli.ingest.merge.merge_day` de-duplicates and
   merges the day into a complete new partition file inside the staging area.
3. *Publish*: the journaled, atomic publish of :mod:`eta_cli.lake.publish`.

Quarantine rows keep the raw values as text, the ``reason`` (the first rule of
:data:`~eta_cli.ingest.rules.RULES` that matched), the ``source`` and ``row`` (1-based
record number in that source; malformed CSV lines are kept whole in ``raw_line`` and
do not count in later row numbers). Duplicates are spotted after parsing, so their
values are the normalised spelling.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import pyarrow as pa

from eta_cli.config import Settings
from eta_cli.dask_engine import check_engine, engine_client
from eta_cli.errors import EtaError, first_line
from eta_cli.ingest.chunks import Checked, apply_checked, check_chunk, quarantine_malformed
from eta_cli.ingest.merge import check_lake_version, count_merged, merge_day, newest_order_time
from eta_cli.ingest.result import IngestResult
from eta_cli.ingest.sources import Source, plan_sources, read_batches, synthetic_batches
from eta_cli.lake import (
    IngestError,
    Lake,
    RunStage,
    new_run_id,
    prepare_and_publish,
    publish,
    recover,
    stage_quarantine_file,
    storage_errors,
)
from eta_cli.progress import Progress, ProgressCallback


def ingest(
    settings: Settings,
    sources: Sequence[str] | str = (),
    *,
    synthetic: int | None = None,
    seed: int = 0,
    drift: bool = False,
    output: str | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    progress: ProgressCallback | None = None,
) -> IngestResult:
    """Validate, clean and publish orders from files/URIs and/or synthetic generation.

    All sources are checked (existence, format, columns) before anything is written;
    a whole-source problem raises :class:`IngestError` and leaves the lake untouched.
    ``engine="dask"`` runs one task per source file on a Dask cluster (``scheduler``,
    or a local cluster), with the same checks, rules, accounting and atomic publish.
    """
    started = time.monotonic()
    if isinstance(sources, str):  # one path, not a sequence of one-letter paths
        sources = [sources]
    if output:
        settings = settings.replace(data_uri=output)
    _check_request(sources, synthetic)
    check_engine(engine, scheduler)
    plan = plan_sources(sources, settings)  # a bad source is refused before any work
    labels = [p.uri for p in plan]
    lake = Lake(settings.effective_data_uri, settings)
    lake.check_writable()
    result = IngestResult(run_id=new_run_id(), output=lake.uri_of(lake.orders), files=labels)
    with (
        engine_client(engine, scheduler, progress, settings=settings) as client,
        lake.locked(result.run_id),
        storage_errors(lake),
    ):
        result.recovered = recover(lake)
        check_lake_version(lake)
        generate = _synthetic_plan(lake, synthetic, seed, drift, labels)
        if client is None:
            _run_locally(lake, plan, generate, settings, result, progress)
        else:
            from eta_cli.ingest.dask import run_on_cluster

            run_on_cluster(client, lake, plan, generate, result, progress)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _synthetic_plan(
    lake: Lake, n: int | None, seed: int, drift: bool, labels: list[str]
) -> tuple[int | None, int, bool, str | None]:
    """What to generate: ``(n, seed, drift, start)``, and its source label in ``labels``.

    A drifted batch is a population that *arrives later*: it starts the day after the
    newest order already in the lake (read under the lake lock), so the newest orders
    are the shifted ones, as they would be in production. An undrifted batch keeps the
    generator's fixed dates, so re-running it adds nothing (ingest is idempotent).
    """
    start = synthetic_start(lake) if n and drift else None
    if n:
        label = f"synthetic:n={n},seed={seed}{',drift' if drift else ''}"
        labels.append(label + (f",start={start}" if start else ""))
    return n, seed, drift, start


def synthetic_start(lake: Lake) -> str | None:
    """The first day of orders that arrive later: the day after the lake's newest order.

    ISO date, or None for an empty lake (the generator's own start). ``eta ingest
    --synthetic --drift`` and ``eta synthetic --drift`` both place their orders here.
    """
    newest = newest_order_time(lake)
    return None if newest is None else str(newest.date() + timedelta(days=1))


def _check_request(sources: Sequence[str], synthetic: int | None) -> None:
    """Refuse a run with nothing to ingest before any source is opened."""
    if not sources and not synthetic:
        raise IngestError(
            "nothing to ingest: give at least one SOURCE (file, glob, directory "
            "or s3:// URI) or --synthetic N"
        )
    if synthetic is not None and synthetic < 0:
        raise IngestError(f"--synthetic must be a positive number of orders, got {synthetic}")


def _run_locally(
    lake: Lake,
    plan: list[Source],
    synthetic: tuple[int | None, int, bool, str | None],
    settings: Settings,
    result: IngestResult,
    progress: ProgressCallback | None,
) -> None:
    """Stream, prepare and publish in this process (the lake is locked by the caller)."""
    stage = RunStage(lake, result.run_id)

    def prepare() -> list[tuple[str, str]]:
        _stream(plan, synthetic, settings, stage, result, progress)
        moves = _prepare_publish(lake, stage, result, progress)
        result.check_balanced()
        return moves

    prepare_and_publish(lake, stage, prepare)


class _InOrder:
    """Chunks checked on a small thread pool (Arrow and NumPy release the GIL) while the
    reader parses ahead, applied to the stage strictly in input order, so the first of
    two identical orders is the one kept; at most ``workers`` chunks wait in memory."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        workers: int,
        stage: RunStage,
        result: IngestResult,
        progress: ProgressCallback | None,
        total_bytes: int | None,
    ) -> None:
        self.pool = pool
        self.workers = workers
        self.stage = stage
        self.result = result
        self.progress = progress
        self.total_bytes = total_bytes
        self.pending: deque[tuple[Future[Checked], int, int | None]] = deque()

    def submit(self, batch: pa.RecordBatch, *check: object, done: int, total: int | None) -> None:
        """Check one chunk (``check``: source index, label, row offset, settings)."""
        self.pending.append((self.pool.submit(check_chunk, batch, *check), done, total))
        self.drain(self.workers)

    def drain(self, limit: int = 0) -> None:
        """Apply checked chunks, oldest first, until at most ``limit`` are pending."""
        while len(self.pending) > limit:
            future, done, total = self.pending.popleft()
            apply_checked(future.result(), self.stage, self.result)
            if self.progress:
                self.progress(
                    Progress(
                        "reading",
                        done,
                        total,
                        unit="bytes" if total == self.total_bytes else "rows",
                        note=f"{self.result.rows_read:,} rows",
                    )
                )
            publish.checkpoint("chunk", rows=self.result.rows_read)

    def cancel(self) -> None:
        for future, *_ in self.pending:
            future.cancel()


def _stream(
    plan: list[Source],
    synthetic: tuple[int | None, int, bool, str | None],
    settings: Settings,
    stage: RunStage,
    result: IngestResult,
    progress: ProgressCallback | None,
) -> None:
    """Read every source chunk by chunk into the staging area, checking on threads."""
    total_bytes = sum(p.size or 0 for p in plan) or None
    workers = max(1, min(os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eta-ingest") as pool:
        queue = _InOrder(pool, workers, stage, result, progress, total_bytes)
        try:
            done_bytes = 0
            for index, src in enumerate(plan):
                _stream_file(queue, index, src, settings, done_bytes)
                done_bytes += src.size or 0
            n, seed, drift, start = synthetic
            if n:
                label = result.files[-1]
                rows = 0
                chunk = settings.ingest_chunk_rows
                for batch in synthetic_batches(n, seed, drift, chunk, start):
                    offset, rows = rows, rows + batch.num_rows
                    queue.submit(batch, len(plan), label, offset, settings, done=rows, total=n)
                queue.drain()
        finally:
            queue.cancel()


def _stream_file(
    queue: _InOrder, index: int, src: Source, settings: Settings, done_bytes: int
) -> None:
    """One source file into the queue; lines the CSV reader cannot parse are quarantined
    as soon as they are seen (after the chunks before them, so row numbers stay right)."""
    malformed: list[tuple[int | None, str]] = []
    rows = 0
    try:
        for batch, position in read_batches(src, settings, malformed):
            queue.submit(
                batch,
                index,
                src.uri,
                rows,
                settings,
                done=done_bytes + position,
                total=queue.total_bytes,
            )
            rows += batch.num_rows
            if malformed:
                queue.drain()
                quarantine_malformed(malformed, src.uri, queue.stage, queue.result)
        queue.drain()
    except (EtaError, KeyboardInterrupt):
        raise
    except (OSError, pa.ArrowException, EOFError, UnicodeDecodeError) as exc:
        raise IngestError(f"{src.uri}: unreadable file: {first_line(exc)}") from exc
    if malformed:
        quarantine_malformed(malformed, src.uri, queue.stage, queue.result)


def _prepare_publish(
    lake: Lake, stage: RunStage, result: IngestResult, progress: ProgressCallback | None
) -> list[tuple[str, str]]:
    """Build every new partition file and the quarantine file inside the staging area."""
    stage.close_rows()  # the quarantine stream stays open for duplicates found below
    days = sorted(stage.segments)
    moves: list[tuple[str, str]] = []
    workers = max(1, min(len(days), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        merged_days = pool.map(lambda day: merge_day(lake, stage, day, result.files), days)
        for done, merged in enumerate(merged_days, start=1):
            count_merged(result, merged)
            if merged.duplicates is not None:
                stage.write_quarantine(merged.duplicates)
            if merged.move is not None:
                moves.append(merged.move)
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
        staged, final = stage_quarantine_file(lake, stage.run_id, stage.quarantine_batches())
        moves.append((staged, final))
        result.quarantine = lake.uri_of(final)
    result.sort_totals()
    return moves
