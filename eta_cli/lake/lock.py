"""One writer per lake: an ``flock`` on a local lake, a leased lock object on S3.

S3 has no file locks, so an ``s3://`` lake is locked by the object ``<root>/_lock.json``,
taken and kept with S3 conditional writes:

- *acquire*: ``PutObject`` with ``If-None-Match: *`` succeeds for one writer only;
- *renew*: a background thread rewrites the object with ``If-Match: <our ETag>`` every
  third of the lease, so the lock stays ours and fresh;
- *break*: a lock whose object was last written more than one lease ago (measured on
  the server's clock: its ``Date`` header against the object's ``LastModified``) belongs
  to a crashed run and is taken over with ``If-Match: <its ETag>``, so two waiting
  writers cannot both take it;
- *confirm*: publishing renews the lease synchronously first; a run that lost its lock
  (taken over while it was stalled) stops before writing its journal, nothing published;
- *release*: ``DeleteObject`` with ``If-Match: <our ETag>`` (never someone else's lock).

A second writer waits up to ``lake_lock_wait_s`` seconds, then stops with a message
naming the holder (host, process, run, since when). The local lock is the same contract
with ``flock`` (which dies with its process); its holder is written into the lock file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from eta_cli.errors import EtaError, IngestError, first_line

if TYPE_CHECKING:
    from eta_cli.lake.store import Lake

LOCK_NAME = "_lock.json"
_POLL_S = 0.5


class LockLostError(EtaError):
    """This run's lease on the lake was taken over; it must not publish."""


def owner_record(run_id: str) -> dict[str, Any]:
    """Who holds the lock, as written into it (and shown to a writer that waits)."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "run_id": run_id,
        "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def describe(holder: dict[str, Any] | None) -> str:
    """``host pid N, run R, since T`` (or what is known of a holder)."""
    if not holder:
        return "an unknown holder"
    return (
        f"{holder.get('host', '?')} pid {holder.get('pid', '?')}, "
        f"run {holder.get('run_id', '?')}, since {holder.get('since', '?')}"
    )


def _busy(lake: Lake, holder: dict[str, Any] | None, waited: float, extra: str = "") -> EtaError:
    return IngestError(
        f"another `eta ingest` is writing to {lake.uri_of(lake.root)}: the lock is held by "
        f"{describe(holder)}{extra}; waited {waited:.0f}s (ETA_LAKE_LOCK_WAIT_S). Run again "
        "when it has finished"
    )


@contextlib.contextmanager
def local_lock(lake: Lake, run_id: str) -> Iterator[None]:
    """``flock`` on ``<root>/_lock`` for the whole run, waiting up to the configured time."""
    import fcntl

    from eta_cli import storage

    try:
        os.makedirs(lake.root, exist_ok=True)
        handle = open(os.path.join(lake.root, "_lock"), "a+")  # noqa: SIM115
    except OSError as exc:
        raise storage.StorageError(
            f"cannot create the data lake at {lake.root}: {exc.strerror or exc}"
        ) from exc
    with handle:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= lake.settings.lake_lock_wait_s:
                    handle.seek(0)
                    try:
                        holder = json.loads(handle.read() or "null")
                    except ValueError:
                        holder = None
                    raise _busy(lake, holder, waited) from None
                time.sleep(min(_POLL_S, lake.settings.lake_lock_wait_s - waited + 0.01))
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(owner_record(run_id)))
            handle.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


class S3Lease:
    """The lock object of an ``s3://`` lake, held by one run (see the module docstring)."""

    def __init__(self, lake: Lake, run_id: str) -> None:
        self.lake = lake
        self.key = lake.join(LOCK_NAME).split("/", 1)[1]
        self.record = owner_record(run_id)
        self.lease_s = float(lake.settings.lake_lock_lease_s)
        self.etag: str | None = None
        self.lost: str | None = None  # why the lock is no longer ours
        self.taken_over: dict[str, Any] | None = None  # a crashed run's lock we broke
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._renewed = time.monotonic()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ S3 calls
    def _put(self, **condition: str) -> str:
        body = json.dumps({**self.record, "lease_s": self.lease_s}).encode("utf-8")
        answer = self.lake.client.put_object(
            Bucket=self.lake.bucket,
            Key=self.key,
            Body=body,
            ContentType="application/json",
            **condition,
        )
        return str(answer["ETag"])

    def _current(self) -> tuple[dict[str, Any] | None, str, float] | None:
        """The lock as it is: (holder, ETag, seconds since written by the server's clock),
        or None when there is no lock object."""
        from botocore.exceptions import ClientError

        try:
            answer = self.lake.client.get_object(Bucket=self.lake.bucket, Key=self.key)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        try:
            holder = json.loads(answer["Body"].read())
        except ValueError:
            holder = None
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        age = (now - answer["LastModified"]).total_seconds()
        return (holder if isinstance(holder, dict) else None), str(answer["ETag"]), age

    # ------------------------------------------------------------------ lifecycle
    def acquire(self) -> None:
        """Take the lock, waiting for a live holder up to ``lake_lock_wait_s``."""
        from botocore.exceptions import ClientError

        wait_s = float(self.lake.settings.lake_lock_wait_s)
        started = time.monotonic()
        while True:
            try:
                self.etag = self._put(IfNoneMatch="*")
                break
            except ClientError as exc:
                if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                    raise
            current = self._current()
            if current is None:
                continue  # released meanwhile: try again at once
            holder, etag, age = current
            if age > self.lease_s:  # not renewed for a whole lease: its run is dead
                try:
                    self.etag = self._put(IfMatch=etag)
                    self.taken_over = holder
                    break
                except ClientError as exc:
                    if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                        raise
                    continue  # another writer broke it first
            waited = time.monotonic() - started
            if waited >= wait_s:
                left = max(0.0, self.lease_s - age)
                raise _busy(
                    self.lake,
                    holder,
                    waited,
                    f" (lease renewed {age:.0f}s ago; "
                    f"taken over if not renewed within {left:.0f}s)",
                )
            time.sleep(min(_POLL_S * (1 + random.random()), wait_s - waited + 0.01))
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._keep, name="eta-lake-lease", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        """Rewrite the lock if it is still ours; record the loss otherwise."""
        from botocore.exceptions import BotoCoreError, ClientError

        with self._guard:
            if self.lost or self.etag is None:
                return
            try:
                self.etag = self._put(IfMatch=self.etag)
                self._renewed = time.monotonic()
            except ClientError as exc:
                if _code(exc) in ("PreconditionFailed", "NoSuchKey", "404"):
                    current = self._current()
                    taker = describe(current[0]) if current else "nobody (it was deleted)"
                    self.lost = f"the lock was taken over by {taker}"
                elif time.monotonic() - self._renewed > self.lease_s:
                    self.lost = f"the lease could not be renewed: {first_line(exc)}"
            except BotoCoreError as exc:
                if time.monotonic() - self._renewed > self.lease_s:
                    self.lost = f"the lease could not be renewed: {first_line(exc)}"

    def _keep(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with contextlib.suppress(Exception):  # a failure is recorded in self.lost
                self.renew()
            if self.lost:
                return

    def confirm(self) -> None:
        """Renew now and raise :class:`LockLostError` unless the lock is still ours (called
        right before a publish, so a stalled run that lost it cannot overwrite anything)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.renew()
        except (BotoCoreError, ClientError) as exc:
            self.lost = self.lost or f"the lease could not be renewed: {first_line(exc)}"
        if self.lost is None and time.monotonic() - self._renewed > self.lease_s / 2:
            self.lost = "the lease could not be renewed in time"
        if self.lost:
            raise LockLostError(
                f"this run ({self.record['run_id']}) no longer holds the lock of "
                f"{self.lake.uri_of(self.lake.root)}: {self.lost}; nothing was published, "
                "run `eta ingest` again"
            )

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours (a dead server: it expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._guard, contextlib.suppress(Exception):
            if self.etag is not None and not self.lost:
                self.lake.client.delete_object(
                    Bucket=self.lake.bucket, Key=self.key, IfMatch=self.etag
                )
            self.etag = None


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
