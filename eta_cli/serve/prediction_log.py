"""Background, batched writer of the prediction log (``monitoring.predictions``).

A request only appends its predictions to an in-memory queue (microseconds); one
writer thread turns them into rows and inserts them in batches (every
``flush_interval_s`` or ``batch_rows`` rows), so the database never slows or
blocks a request. The queue is bounded in rows: when it is full, new predictions
are dropped and counted rather than waiting or growing without limit. Database
errors are counted and logged, never raised to a request; the engine is rebuilt
on the next batch, so the log resumes when the database comes back. A batch the
database refuses for its *data* (a text it cannot store) is written again row by row,
so one bad row costs only itself: it is dropped and counted as ``rejected``, never
the good rows around it. ``close()`` writes what is queued before returning
(graceful shutdown).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger("eta.prediction_log")

# PEP 249 exception names (and SQLAlchemy's wrappers of them) that mean the database
# could not be reached or used at all, as opposed to refusing one row's data.
_UNAVAILABLE = frozenset({"OperationalError", "InterfaceError", "DisconnectionError"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is down or unusable (every row would fail), not
    that it refused this data: then retrying row by row would only repeat the failure."""
    for err in (exc, getattr(exc, "orig", None), exc.__cause__):
        if err is not None and any(c.__name__ in _UNAVAILABLE for c in type(err).__mro__):
            return True
    return False


def split_rows(entries: Sequence[LogEntry]) -> list[LogEntry]:
    """Each row of ``entries`` as its own one-row entry (for the row-by-row retry)."""
    import numpy as np

    single = []
    for e in entries:
        values = np.asarray(e.values)
        for i in range(e.rows):
            single.append(
                dataclasses.replace(
                    e,
                    records=e.records[i : i + 1],
                    order_ids=e.order_ids[i : i + 1],
                    values=values[i : i + 1],
                )
            )
    return single


@dataclass(frozen=True)
class LogEntry:
    """The predictions of one request, as the request thread hands them over (cheap to build)."""

    request_id: str
    predicted_at: float  # time.time()
    model_name: str
    model_version: str
    latency_ms: float
    records: Sequence[dict[str, Any]]
    order_ids: Sequence[str | None]
    values: Any  # ndarray (n, 4): p_low, p50, p_high, quoted seconds
    role: str = "champion"  # champion: the answer served; challenger: the shadow's

    @property
    def rows(self) -> int:
        return len(self.records)


def entry_rows(entry: LogEntry) -> list[dict[str, Any]]:
    """Rows of ``monitoring.predictions`` for one entry (done in the writer thread)."""
    import numpy as np

    shared = {
        "request_id": entry.request_id,
        "predicted_at": datetime.fromtimestamp(entry.predicted_at, UTC),
        "model_name": entry.model_name,
        "model_version": entry.model_version,
        "latency_ms": entry.latency_ms,
        "role": entry.role,
    }
    rows = []
    for record, order_id, (p_low, p50, p_high, quoted) in zip(
        entry.records, entry.order_ids, np.asarray(entry.values).tolist(), strict=True
    ):
        created = record.get("created_at")
        features = dict(record)  # the validated order: only created_at is not JSON-ready
        if isinstance(created, datetime):
            features["created_at"] = created.isoformat()
        else:
            created = None
        row = dict(shared)
        row.update(
            order_id=order_id,
            order_created_at=created,
            eta_p10_s=p_low,
            eta_p50_s=p50,
            eta_p90_s=p_high,
            eta_quoted_s=quoted,
            features=features,
        )
        rows.append(row)
    return rows


# Column order of the driver-level insert (every column of the table but the id).
ROW_COLUMNS: tuple[str, ...] = (
    "request_id",
    "order_id",
    "predicted_at",
    "order_created_at",
    "model_name",
    "model_version",
    "eta_p10_s",
    "eta_p50_s",
    "eta_p90_s",
    "eta_quoted_s",
    "latency_ms",
    "features",
    "role",
)
# How SQLAlchemy's SQLite dialect stores DateTime, so rows written here read back the same.
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode


def entry_tuples(entry: LogEntry, sqlite: bool) -> list[tuple[Any, ...]]:
    """Rows for a driver-level ``executemany`` (:data:`ROW_COLUMNS` order, features as JSON
    text): a third of the Python work of SQLAlchemy's per-row processing, which matters
    because the writer shares the interpreter with the requests."""
    import numpy as np

    predicted_at: Any = datetime.fromtimestamp(entry.predicted_at, UTC)
    if sqlite:
        predicted_at = predicted_at.replace(tzinfo=None).isoformat(" ", "microseconds")
    encode = _COMPACT_JSON
    head = (entry.request_id,)
    model = (entry.model_name, entry.model_version)
    latency = entry.latency_ms
    role = entry.role
    out = []
    for record, order_id, (p_low, p50, p_high, quoted) in zip(
        entry.records, entry.order_ids, np.asarray(entry.values).tolist(), strict=True
    ):
        created = record.get("created_at")
        features = dict(record)  # the validated order: only created_at is not JSON-ready
        if not isinstance(created, datetime):
            created = None
        else:
            features["created_at"] = created.isoformat()
            if sqlite:
                created = created.isoformat(" ", "microseconds")  # == SQLITE_DATETIME, faster
        out.append(
            (
                *head,
                order_id,
                predicted_at,
                created,
                *model,
                p_low,
                p50,
                p_high,
                quoted,
                latency,
                encode(features),
                role,
            )
        )
    return out


class PredictionLog:
    """Bounded queue + writer thread; see the module docstring for the guarantees."""

    def __init__(
        self,
        database_url: str,
        capacity: int,
        *,
        batch_rows: int = 500,
        flush_interval_s: float = 0.5,
        engine_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.database_url = database_url
        self.capacity = max(int(capacity), 0)
        self.batch_rows = max(int(batch_rows), 1)
        self.flush_interval_s = flush_interval_s
        self._engine_factory = engine_factory
        self._engine: Any = None
        self._queue: collections.deque[LogEntry] = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0  # rows queued, not yet taken by the writer
        self._in_flight = 0  # rows taken, being written
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.errors = 0  # rows lost to database errors
        self.rejected = 0  # rows the database refused for their data (the others written)
        self._last_error_log = 0.0

    def init_app(self, app: Flask) -> None:
        """Log ``app``'s predictions here (Flask's extension pattern); the app never starts it."""
        app.extensions.setdefault("eta", {})["log"] = self

    # --- request side ---------------------------------------------------------

    def submit(self, entry: LogEntry) -> bool:
        """Queue one request's predictions; False (and counted) when the queue is full."""
        n = entry.rows
        with self._cond:
            if self._stopping or self._pending + n > self.capacity:
                self.dropped += n
                return False
            self._queue.append(entry)
            self._pending += n
            if self._pending >= self.batch_rows:
                self._cond.notify_all()
        return True

    @property
    def pending(self) -> int:
        return self._pending + self._in_flight

    def stats(self) -> dict[str, int]:
        return {
            "written": self.written,
            "dropped": self.dropped,
            "errors": self.errors,
            "rejected": self.rejected,
            "pending": self.pending,
        }

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> PredictionLog:
        """Start the writer thread (the database is first touched by the first batch)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="eta-prediction-log", daemon=True
            )
            self._thread.start()
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (or failed); True if it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._pending or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(min(remaining, 0.05))
                self._cond.notify_all()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, write what is queued, stop the thread, release the database."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("prediction log: %d rows still unwritten at shutdown", self.pending)
            self._thread = None
        elif self._queue:
            self._drain()  # never started: write synchronously
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # --- writer side --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._stopping and self._pending < self.batch_rows:
                    self._cond.wait(self.flush_interval_s)
                stopping = self._stopping
            self._drain(everything=stopping)
            if stopping:
                with self._cond:
                    if not self._queue:
                        return

    def _take(self) -> list[LogEntry]:
        with self._cond:
            taken: list[LogEntry] = []
            rows = 0
            while self._queue and rows < self.batch_rows:
                entry = self._queue.popleft()
                taken.append(entry)
                rows += entry.rows
            self._pending -= rows
            self._in_flight += rows
            return taken

    def _drain(self, everything: bool = True) -> None:
        """Write one batch of what is queued, then more only while full batches wait.

        Under steady traffic, rows keep arriving while a batch is written; going back
        for them at once would write a handful of rows per transaction, and the fixed
        cost of each (begin, commit) would then dominate the writer's CPU, which the
        request threads share. Partial batches wait for the next wake-up instead
        (``flush_interval_s`` at most). ``everything`` (shutdown) writes all of it.
        """
        first = True
        while True:
            with self._cond:
                if not first and not everything and self._pending < self.batch_rows:
                    return
            first = False
            taken = self._take()
            if not taken:
                return
            n = sum(e.rows for e in taken)
            written, rejected = self._write(taken, n)
            with self._cond:
                self._in_flight -= n
                self.written += written
                self.rejected += rejected
                self.errors += n - written - rejected
                self._cond.notify_all()

    def _write(self, taken: list[LogEntry], n: int) -> tuple[int, int]:
        """Insert one batch; (rows written, rows refused for their data). The rest of
        ``n`` was lost to the database being unavailable.

        When the database refuses the batch for its data, every row is tried on its
        own, so only the offending rows are lost; when it is unavailable, retrying row
        by row would fail the same way, so the batch is counted as lost at once.
        """
        try:
            self._insert(taken)
            return n, 0
        except Exception as exc:  # the log must never take the service down
            if database_unavailable(exc):
                self._report(exc, n)
                return 0, 0
        written = rejected = 0
        for single in split_rows(taken):
            try:
                self._insert([single])
                written += 1
            except Exception as exc:
                if database_unavailable(exc):
                    self._report(exc, n - written - rejected)
                    break
                rejected += 1
                self._report(exc, 1, rejected=True)
        return written, rejected

    def _insert(self, entries: list[LogEntry]) -> None:
        from eta_cli.monitor import database

        if self._engine is None:
            factory = self._engine_factory or database.make_engine
            engine = factory(self.database_url)
            try:
                database.ensure_schema(engine)
            except Exception:
                engine.dispose()
                raise
            self._engine = engine
        backend = self._engine.dialect.name
        try:
            with self._engine.begin() as conn:
                if backend == "sqlite":
                    rows = [r for e in entries for r in entry_tuples(e, sqlite=True)]
                    conn.exec_driver_sql(self._sql("?"), rows)
                elif backend == "postgresql" and self._engine.dialect.driver == "psycopg2":
                    from psycopg2.extras import execute_values

                    rows = [r for e in entries for r in entry_tuples(e, sqlite=False)]
                    cursor = conn.connection.dbapi_connection.cursor()
                    try:
                        execute_values(cursor, self._sql(None), rows, page_size=self.batch_rows)
                    finally:
                        cursor.close()
                else:  # any other database: SQLAlchemy's own conversions
                    rows_dicts = [r for e in entries for r in entry_rows(e)]
                    conn.execute(database.predictions.insert(), rows_dicts)
        except Exception as exc:
            if database_unavailable(exc):
                # Rebuild the engine next time: the database may have moved or restarted.
                self._engine.dispose()
                self._engine = None
            raise

    @staticmethod
    def _sql(placeholder: str | None) -> str:
        """INSERT for the driver: ``?`` placeholders (sqlite3), or one ``%s`` for the whole
        VALUES list (psycopg2's execute_values)."""
        from eta_cli.monitor import database

        columns = ", ".join(ROW_COLUMNS)
        values = "%s" if placeholder is None else f"({', '.join(placeholder for _ in ROW_COLUMNS)})"
        return f"INSERT INTO {database.predictions.name} ({columns}) VALUES {values}"

    def _report(self, exc: BaseException, rows: int, *, rejected: bool = False) -> None:
        """One warning at most every 10 s (the database may be down for a while), with the
        error's first line, redacted (a driver's message can carry the database URL)."""
        from eta_cli.errors import first_line

        now = time.monotonic()
        if now - self._last_error_log >= 10.0:  # do not flood the log while the DB is down
            self._last_error_log = now
            what = "refused by the database" if rejected else "not written"
            logger.warning(
                "prediction log: %d rows %s (%s: %s); %d lost so far",
                rows,
                what,
                type(exc).__name__,
                first_line(exc),
                self.errors + self.rejected + rows,
            )
