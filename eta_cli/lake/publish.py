"""Publishing a run atomically: a journal of moves, then renames; recovery rolls forward.

1. *Prepare* (the caller): every new partition file and the quarantine file are
   written inside the run's staging area. Any failure or Ctrl-C removes the area.
2. *Publish*: a journal listing the moves is written, then each staged file is
   renamed into place (``os.replace`` locally; on S3 a copy, each object PUT being
   atomic). SIGINT/SIGTERM are deferred meanwhile; if the process dies anyway, the
   next run finds the journal and rolls the publish forward (:func:`recover`).

:func:`checkpoint` names the points of a run; tests replace it to crash at those points.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from eta_cli import storage
from eta_cli.errors import first_line
from eta_cli.lake.store import Lake


class StagedRun(Protocol):
    """A run's staging area as publishing needs it (local run or Dask run)."""

    run_id: str
    remote: str  # the staging folder in the lake, recorded in the journal

    def discard(self) -> None: ...


def checkpoint(stage: str, **info: Any) -> None:
    """A named point in a run; tests replace this to inject crashes at precise moments."""


def new_run_id() -> str:
    """A sortable, unique id for one ingest run (names its staging area and journal)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def prepare_and_publish(
    lake: Lake, stage: StagedRun, prepare: Callable[[], Sequence[Sequence[str]]]
) -> None:
    """Run ``prepare`` (it returns the moves), then publish them.

    Until the journal is written a failure (or Ctrl-C) discards the staging area and
    leaves the lake untouched; after it, the publish is completed now or by the next run.
    """
    try:
        moves = prepare()
    except BaseException:
        stage.discard()
        raise
    checkpoint("prepared", run_id=stage.run_id)
    publish_staged(lake, stage, moves)


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


def publish_staged(lake: Lake, stage: StagedRun, moves: Sequence[Sequence[str]]) -> None:
    """Journal the moves, then rename staged files into place: a crash rolls forward."""
    if not moves:
        stage.discard()
        return
    journal = lake.join("_journal", f"{stage.run_id}.json")
    plan = {
        "run_id": stage.run_id,
        "staging": stage.remote,
        "moves": [list(move) for move in moves],
    }
    with _signals_deferred():
        try:
            # Staged files reach the disk before the journal promises them (a power cut
            # must not publish empty files); an S3 run whose lock was taken over stops here.
            lake.sync_files([src for src, _ in moves])
            lake.confirm_lock()
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
    """Rename each staged file into place; a move already done is skipped (roll forward).
    The renames are made durable (their folders synced) before the journal goes."""
    for src, dst in moves:
        if lake.exists(src):  # already moved when rolling forward an interrupted publish
            lake.move(src, dst)
        checkpoint("moved", dst=dst)
    if not lake.s3:
        lake.sync_files(sorted({os.path.dirname(dst) for _, dst in moves}))


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
    else:
        _clean_stale_s3_staging(lake)
    return recovered


def _clean_stale_s3_staging(lake: Lake) -> None:
    """Remove ``_staging/<run>/`` prefixes that dead runs left in the bucket.

    Called under the lake's lock with every pending journal already rolled forward, so no
    live run may publish them. A prefix written to within the last lease is kept anyway:
    it may belong to a stalled run whose lock was taken over (that run stops before
    publishing, and a later run cleans its files).
    """
    bound = timedelta(seconds=lake.settings.lake_lock_lease_s)
    bucket, key = lake.join("_staging").split("/", 1)
    newest: dict[str, datetime] = {}
    now = datetime.now(UTC)
    paginator = lake.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=key + "/"):
        date = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date) if date else now  # the server's clock, as the lock
        for obj in page.get("Contents", []):
            run = obj["Key"][len(key) + 1 :].split("/", 1)[0]
            newest[run] = max(newest.get(run, obj["LastModified"]), obj["LastModified"])
    for run, modified in newest.items():
        if now - modified > bound:
            lake.delete_dir(lake.join("_staging", run))
