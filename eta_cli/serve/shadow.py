"""The shadow challenger: a second model scores live requests without answering them.

When the registered model has a version under ``settings.shadow_alias`` (default
``challenger``), the service loads it beside the champion and scores a share
(``settings.shadow_sample``) of the requests with it, so ``eta evaluate`` can compare
both models on the same live orders once their delivery times are known.

Nothing of this runs on the request path but one sampling decision and one append to a
bounded queue (no lock wait on a slow model, no database, no MLflow). A worker thread
takes what is queued every :data:`POLL_S`, scores all of it in one model call (one
call for many requests costs far less CPU than one per request, and the worker shares
the interpreter with the request threads) and hands the predictions to the prediction
log with ``role='challenger'``. When the queue is full, requests are not shadowed and
are counted as dropped: the shadow never slows or blocks ``/predict``, and the client
only ever gets the champion's answer.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eta_cli.errors import first_line
from eta_cli.serve.events import log_event
from eta_cli.serve.prediction_log import LogEntry
from eta_cli.serve.provider import ModelProvider, name_label, version_label

if TYPE_CHECKING:
    from flask import Flask

    from eta_cli.config import Settings
    from eta_cli.registry import LoadedModel
    from eta_cli.serve.prediction_log import PredictionLog

ROLE = "challenger"
POLL_S = 0.02  # how often the worker looks at the queue (batches requests between looks)
BATCH_ORDERS = 2000  # orders scored per model call at most


class ShadowProvider(ModelProvider):
    """A :class:`ModelProvider` of the shadow alias that also *unloads* when the alias goes.

    The champion's provider keeps serving its model when the alias cannot be resolved
    (a service must answer); a shadow whose alias was removed (promoted, retired) must
    stop scoring instead, or it would keep logging a model nobody calls challenger.
    """

    def __init__(self, settings: Settings, model_uri: str, **kwargs: Any) -> None:
        super().__init__(settings, model_uri, **kwargs)
        self._alias_gone = False

    def _resolve(self, name: str, alias: str) -> str | None:
        version = super()._resolve(name, alias)
        self._alias_gone = version is None
        return version

    def check(self) -> Any:
        """:meth:`ModelProvider.check`, then let go of the model if the alias was removed."""
        self._alias_gone = False
        result = super().check()
        if self._alias_gone:
            with self._lock:
                previous, self._current = self._current, None
            if previous is not None:
                log_event("shadow_unloaded", version=previous.version, uri=self.model_uri)
        return result


@dataclass(frozen=True)
class _Job:
    """One request to shadow: its orders as validated for the champion."""

    request_id: str
    predicted_at: float
    records: Sequence[dict[str, Any]]
    order_ids: Sequence[str | None]


class ShadowScorer:
    """Bounded queue + worker thread scoring a share of requests with the shadow model."""

    def __init__(
        self,
        settings: Settings,
        provider: ModelProvider,
        prediction_log: PredictionLog,
        *,
        capacity: int | None = None,
        sample: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.provider = provider
        self.prediction_log = prediction_log
        self.alias = settings.shadow_alias
        self.sample = settings.shadow_sample if sample is None else float(sample)
        # In orders, as the prediction log's queue: what a burst may hold before drops.
        self.capacity = max(int(settings.prediction_log_queue if capacity is None else capacity), 0)
        self._random = random.Random(seed).random
        self._queue: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()
        self._pending = 0  # orders queued, not yet taken by the worker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scored = 0  # orders scored by the shadow and handed to the log
        self.dropped = 0  # orders not shadowed because the queue was full
        self.errors = 0  # orders the shadow model failed on
        self._last_error_log = 0.0

    def init_app(self, app: Flask) -> None:
        """Shadow ``app``'s requests (Flask's extension pattern); its counters join /metrics."""
        service = app.extensions.setdefault("eta", {})
        service["shadow"] = self
        metrics = service.get("metrics")
        if metrics is not None:
            metrics.registry.register(_ShadowCollector(self))

    # --- request side ---------------------------------------------------------

    def offer(
        self,
        request_id: str,
        records: Sequence[dict[str, Any]],
        order_ids: Sequence[str | None],
        champion: LoadedModel,
    ) -> bool:
        """Queue one answered request for the shadow; False when not shadowed.

        Not shadowed: no shadow model, the shadow is the champion's own version, the
        request fell outside the sample, or the queue is full (counted as dropped).
        """
        loaded = self.provider.current
        if loaded is None or loaded.version == champion.version:
            return False
        if self.sample < 1.0 and self._random() >= self.sample:
            return False
        n = len(records)
        with self._lock:
            if self._stop.is_set() or self._pending + n > self.capacity:
                self.dropped += n
                return False
            self._queue.append(_Job(request_id, time.time(), records, order_ids))
            self._pending += n
        return True

    @property
    def pending(self) -> int:
        """Orders queued for the shadow, not yet scored."""
        return self._pending

    def stats(self) -> dict[str, int]:
        """Counters for /model and /metrics."""
        return {
            "scored": self.scored,
            "dropped": self.dropped,
            "errors": self.errors,
            "pending": self.pending,
        }

    def status(self) -> dict[str, Any]:
        """What /model says about the shadow (the routes add the model's own description)."""
        loaded = self.provider.current
        return {
            "alias": self.alias,
            "sample": self.sample,
            "active": loaded is not None,
            "version": loaded.version if loaded is not None else None,
            **self.provider.status(),
            **self.stats(),
        }

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> ShadowScorer:
        """Start following the shadow alias and the worker thread."""
        self.provider.start()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="eta-shadow", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking requests, score what is queued (bounded by ``timeout``), stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.provider.stop()

    def drain(self) -> int:
        """Score everything queued now, in this thread; the orders scored (tests, shutdown)."""
        done = 0
        while True:
            jobs = self._take()
            if not jobs:
                return done
            done += self._score(jobs)

    # --- worker side --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.drain()
        self.drain()

    def _take(self) -> list[_Job]:
        with self._lock:
            jobs: list[_Job] = []
            orders = 0
            while self._queue and orders < BATCH_ORDERS:
                job = self._queue.popleft()
                jobs.append(job)
                orders += len(job.records)
            self._pending -= orders
            return jobs

    def _score(self, jobs: list[_Job]) -> int:
        """One model call for every order of ``jobs``; one log entry per request."""
        n = sum(len(job.records) for job in jobs)
        loaded = self.provider.current
        if loaded is None:  # the alias went away while these waited: nothing to compare
            return 0
        records = [record for job in jobs for record in job.records]
        started = time.perf_counter()
        try:
            values = loaded.model.predict_records(records)
        except Exception as exc:  # the shadow must never take the service down
            self.errors += n
            self._report(exc, n)
            return 0
        latency_ms = (time.perf_counter() - started) * 1000.0
        name, version = name_label(loaded), version_label(loaded)
        at = 0
        for job in jobs:
            rows = len(job.records)
            self.prediction_log.submit(
                LogEntry(
                    request_id=job.request_id,
                    predicted_at=job.predicted_at,
                    model_name=name,
                    model_version=version,
                    latency_ms=latency_ms,  # the shadow's model call, not the request's
                    records=job.records,
                    order_ids=job.order_ids,
                    values=values[at : at + rows],
                    role=ROLE,
                )
            )
            at += rows
        self.scored += n
        return n

    def _report(self, exc: BaseException, orders: int) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 10.0:
            self._last_error_log = now
            log_event("shadow_failed", orders=orders, error=first_line(exc))


class _ShadowCollector:
    """The shadow's counters, read at scrape time (no metric updates on the request path)."""

    def __init__(self, shadow: ShadowScorer) -> None:
        self.shadow = shadow

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.shadow.stats()
        yield CounterMetricFamily(
            "eta_shadow_scored", "Orders scored by the shadow challenger.", value=stats["scored"]
        )
        yield CounterMetricFamily(
            "eta_shadow_dropped",
            "Orders not shadowed because the shadow queue was full.",
            value=stats["dropped"],
        )
        yield CounterMetricFamily(
            "eta_shadow_errors", "Orders the shadow model failed on.", value=stats["errors"]
        )
        yield GaugeMetricFamily(
            "eta_shadow_pending", "Orders queued for the shadow.", value=stats["pending"]
        )
        loaded = self.shadow.provider.current
        if loaded is not None:
            info = GaugeMetricFamily(
                "eta_shadow_model_info",
                "The shadow challenger being scored.",
                labels=["model_name", "model_version"],
            )
            info.add_metric([name_label(loaded), version_label(loaded)], 1)
            yield info


def shadow_for(
    settings: Settings, provider: ModelProvider, prediction_log: PredictionLog | None
) -> ShadowScorer | None:
    """The shadow of a service following ``models:/NAME@ALIAS``, or None when there is none.

    None when ``shadow_alias`` is empty, nothing is logged (shadow predictions exist only
    to be logged), or the service does not follow a registry alias (a folder or a pinned
    version has no challenger), or it already serves the shadow alias itself.
    """
    if not settings.shadow_alias or prediction_log is None or provider.alias_target is None:
        return None
    name, alias = provider.alias_target
    if alias == settings.shadow_alias:
        return None
    shadow_provider = ShadowProvider(
        settings,
        f"models:/{name}@{settings.shadow_alias}",
        loader=provider._loader,
        resolver=provider._resolver,
    )
    return ShadowScorer(settings, shadow_provider, prediction_log)
