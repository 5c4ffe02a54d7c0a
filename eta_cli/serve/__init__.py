"""The prediction service: a Flask application factory, the model holder, and the waitress runner.

``create_app(settings, model_provider)`` builds the WSGI app; ``run(...)`` serves
it with waitress (``eta serve``). The request path is plain Python + NumPy: parse
and validate the JSON (``eta_cli.validation``), one ``EtaModel.predict_records``
call, one queue append for the prediction log. MLflow is only touched by the
provider's background thread (initial load, alias polling, reload).

Nothing happens at import: no threads, no database, no MLflow.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli.errors import EtaError, first_line
from eta_cli.validation import ApiError, Problem

if TYPE_CHECKING:
    from flask import Flask

    from eta_cli.config import Settings
    from eta_cli.registry import LoadedModel
    from eta_cli.serve.prediction_log import PredictionLog

logger = logging.getLogger("eta.serve")
access_logger = logging.getLogger("eta.serve.access")

ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
# Same length as monitoring.predictions.request_id: a longer one could not be logged.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Until the first model is loaded, retry at least this often.
INITIAL_RETRY_S = 5.0
RELOAD_WAIT_S = 60.0
JSON_MIMETYPE = "application/json"


def _event(event: str, **fields: Any) -> None:
    """One structured (JSON) line for a service event: load, swap, unreachable registry."""
    logger.info(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str))


def version_label(loaded: LoadedModel) -> str:
    """Version for the log table and metric labels ('local' for a model folder)."""
    return loaded.version or "local"


def name_label(loaded: LoadedModel) -> str:
    return loaded.name or "local"


# --- a leaner call into XGBoost for small requests ---------------------------------


class LeanBooster:
    """XGBoost's own in-place prediction C call, without the Python wrapper's per-call work.

    ``Booster.inplace_predict`` spends ~150 µs in Python per call (it builds a
    class, re-derives ctypes types, copies twice) around a C call that takes about
    as long for one order; that Python time holds the GIL and caps throughput. This
    calls the same C function (``XGBoosterPredictFromDense``) with the same
    arguments, so results are bit-identical; :func:`accelerate` checks that on real
    inputs before using it, and falls back to the booster itself otherwise.
    """

    def __init__(self, booster: Any) -> None:
        import ctypes

        from xgboost.core import _LIB, c_bst_ulong, make_jcargs

        self.booster = booster  # keeps the handle alive
        self._ctypes = ctypes
        self._ulong = c_bst_ulong
        self._lib = _LIB
        self._handle = booster.handle
        self._args = make_jcargs(
            type=0,
            training=False,
            iteration_begin=0,
            iteration_end=0,
            missing=float("nan"),
            strict_shape=False,
            cache_id=0,
        )
        self._no_proxy = ctypes.c_void_p()

    def inplace_predict(self, data: Any) -> Any:
        import numpy as np

        ctypes = self._ctypes
        data = np.ascontiguousarray(data, dtype=np.float32)
        interface = json.dumps(data.__array_interface__).encode()
        shape = ctypes.POINTER(self._ulong)()
        dims = self._ulong()
        preds = ctypes.POINTER(ctypes.c_float)()
        status = self._lib.XGBoosterPredictFromDense(
            self._handle,
            interface,
            self._args,
            self._no_proxy,
            ctypes.byref(shape),
            ctypes.byref(dims),
            ctypes.byref(preds),
        )
        if status != 0:
            raise RuntimeError(self._lib.XGBGetLastError().decode())
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        size = 1
        for extent in out_shape:
            size *= extent
        # The buffer belongs to this thread's slot in the booster: copy it now.
        return np.ctypeslib.as_array(preds, shape=(size,)).copy().reshape(out_shape)


def accelerate(loaded: LoadedModel) -> LoadedModel:
    """A copy of ``loaded`` whose model predicts through :class:`LeanBooster`, if identical."""
    import dataclasses

    import numpy as np

    from eta_cli.model import EtaModel

    model = loaded.model
    if not isinstance(model, EtaModel) or isinstance(model.booster, LeanBooster):
        return loaded
    try:
        lean = LeanBooster(model.booster)
        n_features = int(model.booster.num_features())
        probe = np.random.default_rng(0).normal(500.0, 400.0, size=(64, n_features))
        probe[::5, ::3] = np.nan
        probe = probe.astype(np.float32)
        for rows in (probe[:1], probe):
            if not np.array_equal(lean.inplace_predict(rows), model.booster.inplace_predict(rows)):
                raise ValueError("lean prediction differs from Booster.inplace_predict")
        fast = dataclasses.replace(model, booster=lean)
    except Exception as exc:  # an XGBoost we do not know: use its public API
        _event("lean_predict_unavailable", error=first_line(exc))
        return loaded
    return dataclasses.replace(loaded, model=fast)


# --- the model holder ------------------------------------------------------------


@dataclass
class ReloadResult:
    status: str  # loaded | unchanged | failed | in_progress | fixed
    version: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "version": self.version, "message": self.message}


class ModelProvider:
    """Holds the :class:`LoadedModel` being served and replaces it atomically.

    Requests read :attr:`current` once and use that object to the end, so a swap
    (one reference assignment) never mixes two models inside a request and never
    drops one. With a ``models:/<name>@<alias>`` URI a background thread polls the
    alias every ``settings.reload_interval_s`` and loads a new version in the
    background when the alias moves. If the registry cannot be reached, the model
    we have keeps serving and :meth:`status` says so.
    """

    def __init__(
        self,
        settings: Settings,
        model_uri: str | None = None,
        *,
        loader: Callable[[Settings, str], LoadedModel] | None = None,
        resolver: Callable[[Settings, str, str], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.model_uri = model_uri or f"models:/{settings.model_name}@champion"
        match = ALIAS_URI.match(self.model_uri)
        self.alias_target: tuple[str, str] | None = (
            (match["name"], match["alias"]) if match else None
        )
        self._loader = loader
        self._resolver = resolver
        self._fixed = False
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()  # guards the swap and its bookkeeping
        self._reload_lock = threading.Lock()  # one check/load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded_at: str | None = None
        self.last_check: str | None = None
        self.last_error: str | None = None
        self.registry = "not checked yet" if self.alias_target else "not used"
        self.reloads = {"loaded": 0, "failed": 0}

    @classmethod
    def fixed(cls, settings: Settings, loaded: LoadedModel) -> ModelProvider:
        """A provider that serves one given model and never reloads (tests, embedding)."""
        provider = cls(settings, loaded.uri)
        provider._fixed = True
        provider.alias_target = None
        provider.registry = "not used"
        provider.swap(loaded)
        return provider

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def polling(self) -> bool:
        return self.alias_target is not None and not self._fixed

    def swap(self, loaded: LoadedModel) -> LoadedModel | None:
        """Serve ``loaded`` from now on; return the previous model."""
        loaded = accelerate(loaded)  # before taking the lock: requests keep the old one
        with self._lock:
            previous = self._current
            self._current = loaded
            self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        _event(
            "model_loaded",
            name=loaded.name,
            version=loaded.version,
            uri=loaded.uri,
            previous_version=previous.version if previous else None,
        )
        return previous

    def _load(self, uri: str) -> LoadedModel:
        if self._loader is not None:
            return self._loader(self.settings, uri)
        from eta_cli import registry

        return registry.load_model(self.settings, uri)

    def _resolve(self, name: str, alias: str) -> str | None:
        if self._resolver is not None:
            return self._resolver(self.settings, name, alias)
        from eta_cli import registry

        return registry.resolve_version(self.settings, name, alias)

    def check(self) -> ReloadResult:
        """Look at the registry now; load and swap if the alias moved (or nothing is loaded)."""
        if self._fixed:
            return ReloadResult("fixed", self._current.version if self._current else None)
        with self._reload_lock:
            self.last_check = datetime.now(UTC).isoformat(timespec="seconds")
            current = self._current
            if self.alias_target is not None:
                name, alias = self.alias_target
                try:
                    version = self._resolve(name, alias)
                except Exception as exc:
                    message = f"unreachable: {first_line(exc)}"
                    if self.registry != message:
                        _event("registry_unreachable", error=first_line(exc))
                    self.registry = message
                    if current is None:
                        self.last_error = message
                    return ReloadResult("failed", current and current.version, message)
                if self.registry != "ok":
                    _event("registry_reachable")
                self.registry = "ok"
                if version is None:
                    message = f"no version of model {name!r} has alias {alias!r}"
                    self.last_error = message
                    return ReloadResult("failed", current and current.version, message)
                if current is not None and current.version == version:
                    return ReloadResult("unchanged", version)
            # A pinned version or a local folder is loaded at start and on POST /reload only.
            try:
                loaded = self._load(self.model_uri)
            except Exception as exc:
                self.last_error = f"could not load {self.model_uri}: {first_line(exc)}"
                self.reloads["failed"] += 1
                _event("model_load_failed", uri=self.model_uri, error=first_line(exc))
                return ReloadResult("failed", current and current.version, self.last_error)
            self.last_error = None
            self.reloads["loaded"] += 1
            self.swap(loaded)
            return ReloadResult("loaded", loaded.version)

    def reload_now(self, timeout: float = RELOAD_WAIT_S) -> ReloadResult:
        """Run :meth:`check` now (``POST /reload``); give up waiting after ``timeout``."""
        result: list[ReloadResult] = []
        worker = threading.Thread(
            target=lambda: result.append(self.check()), name="eta-reload", daemon=True
        )
        worker.start()
        worker.join(timeout)
        return result[0] if result else ReloadResult("in_progress", message="still loading")

    def start(self) -> ModelProvider:
        """Load the model in the background, then poll the alias (if there is one)."""
        if self._fixed or self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="eta-model-poller", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = max(float(self.settings.reload_interval_s), 0.05)
        self.check()
        while True:
            if self._current is None:
                wait = min(interval, INITIAL_RETRY_S)
            elif self.polling:
                wait = interval
            else:
                return  # loaded from a folder or a pinned version: nothing to poll
            if self._stop.wait(wait):
                return
            self.check()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def status(self) -> dict[str, Any]:
        """What ``/ready`` and ``/model`` report about loading and the registry."""
        return {
            "registry": self.registry,
            "model_uri": self.model_uri,
            "polling": self.polling,
            "reload_interval_s": self.settings.reload_interval_s if self.polling else None,
            "loaded_at": self.loaded_at,
            "last_check": self.last_check,
            "last_error": self.last_error,
        }


# --- metrics -------------------------------------------------------------------

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters and a latency histogram, rendered in the Prometheus text format (0.0.4)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}  # path -> bucket counts + [sum, count]
        self.predictions: dict[tuple[str, str], int] = {}

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, path, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            hist = self.latency.get(path)
            if hist is None:
                hist = self.latency[path] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
                    break
            hist[-2] += seconds
            hist[-1] += 1

    def count_predictions(self, name: str, version: str, n: int) -> None:
        with self._lock:
            key = (name, version)
            self.predictions[key] = self.predictions.get(key, 0) + n

    def render(self, provider: ModelProvider, plog: PredictionLog | None) -> str:
        lines: list[str] = []

        def header(name: str, kind: str, text: str) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            requests = dict(self.requests)
            latency = {k: list(v) for k, v in self.latency.items()}
            predictions = dict(self.predictions)
        header("eta_http_requests_total", "counter", "HTTP requests by method, route and status.")
        for (method, path, status), n in sorted(requests.items()):
            lines.append(
                f'eta_http_requests_total{{method="{_label(method)}",path="{_label(path)}",'
                f'status="{status}"}} {n}'
            )
        header(
            "eta_http_request_duration_seconds",
            "histogram",
            "Time from request start to response, by route.",
        )
        for path, hist in sorted(latency.items()):
            cumulative = 0.0
            for bound, count in zip(LATENCY_BUCKETS, hist, strict=False):
                cumulative += count
                lines.append(
                    f'eta_http_request_duration_seconds_bucket{{path="{_label(path)}",'
                    f'le="{bound}"}} {int(cumulative)}'
                )
            lines.append(
                f'eta_http_request_duration_seconds_bucket{{path="{_label(path)}",le="+Inf"}} '
                f"{int(hist[-1])}"
            )
            lines.append(
                f'eta_http_request_duration_seconds_sum{{path="{_label(path)}"}} {hist[-2]:.6f}'
            )
            lines.append(
                f'eta_http_request_duration_seconds_count{{path="{_label(path)}"}} {int(hist[-1])}'
            )
        header("eta_predictions_total", "counter", "Orders predicted, by model name and version.")
        for (name, version), n in sorted(predictions.items()):
            lines.append(
                f'eta_predictions_total{{model_name="{_label(name)}",'
                f'model_version="{_label(version)}"}} {n}'
            )
        stats = plog.stats() if plog is not None else {"written": 0, "dropped": 0, "errors": 0}
        header(
            "eta_prediction_log_dropped_total",
            "counter",
            "Predictions not logged because the log queue was full.",
        )
        lines.append(f"eta_prediction_log_dropped_total {stats['dropped']}")
        header("eta_prediction_log_written_total", "counter", "Predictions written to the log.")
        lines.append(f"eta_prediction_log_written_total {stats['written']}")
        header(
            "eta_prediction_log_errors_total",
            "counter",
            "Predictions lost to monitoring-database errors.",
        )
        lines.append(f"eta_prediction_log_errors_total {stats['errors']}")
        header("eta_prediction_log_pending", "gauge", "Predictions queued, not yet written.")
        lines.append(f"eta_prediction_log_pending {stats.get('pending', 0)}")
        loaded = provider.current
        header("eta_model_loaded", "gauge", "1 when a model is loaded and predictions are served.")
        lines.append(f"eta_model_loaded {1 if loaded is not None else 0}")
        if loaded is not None:
            header("eta_model_info", "gauge", "The model being served.")
            lines.append(
                f'eta_model_info{{model_name="{_label(name_label(loaded))}",'
                f'model_version="{_label(version_label(loaded))}"}} 1'
            )
        header(
            "eta_registry_reachable",
            "gauge",
            "1 if the last registry check succeeded, 0 if it failed, -1 if not used.",
        )
        reachable = (
            -1
            if provider.registry in ("not used", "not checked yet")
            else int(provider.registry == "ok")
        )
        lines.append(f"eta_registry_reachable {reachable}")
        header("eta_model_reloads_total", "counter", "Model loads by result.")
        for result, n in sorted(provider.reloads.items()):
            lines.append(f'eta_model_reloads_total{{result="{result}"}} {n}')
        return "\n".join(lines) + "\n"


# --- the application -----------------------------------------------------------


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    model = loaded.model
    return {
        "name": loaded.name,
        "version": loaded.version,
        "alias": loaded.alias,
        "run_id": loaded.run_id,
        "uri": loaded.uri,
        "trained_at": loaded.trained_at,
        "metrics": loaded.metrics,
        "quantiles": {
            "low": model.low,
            "median": 0.5,
            "high": model.high,
            "quoted": model.quoted,
        },
    }


def create_app(
    settings: Settings,
    model_provider: ModelProvider,
    prediction_log: PredictionLog | None = None,
) -> Flask:
    """The WSGI application: routes, JSON errors for every failure, metrics and access log.

    ``model_provider`` supplies the model (it may still be loading: ``/ready`` says
    503 until it is); ``prediction_log`` receives every prediction (None: not logged).
    The caller starts and stops both; the app only reads them.
    """
    from flask import Flask, Response, g, request
    from werkzeug.exceptions import HTTPException

    from eta_cli import validation
    from eta_cli.predict import format_predictions
    from eta_cli.serve.openapi import openapi_document
    from eta_cli.serve.prediction_log import LogEntry

    prefix = os.urandom(10).hex()  # unique per app; a counter after it (no syscall per request)
    counter = itertools.count(1)

    def new_request_id() -> str:
        return f"{prefix}{next(counter):012x}"

    app = Flask("eta_cli.serve", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    metrics = Metrics()
    max_batch = settings.max_batch_orders
    provider = model_provider
    app.extensions["eta"] = {"provider": provider, "metrics": metrics, "log": prediction_log}

    def respond(payload: Any, status: int = 200) -> Response:
        body = json.dumps(payload, separators=(",", ":"), default=str)
        return Response(body, status=status, mimetype=JSON_MIMETYPE)

    def error_response(status: int, message: str, details: list[Problem]) -> Response:
        return respond(
            {
                "error": message,
                "details": [d.to_dict() for d in details],
                "request_id": getattr(g, "request_id", None),
            },
            status,
        )

    @app.before_request
    def _start() -> None:
        g.t0 = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else new_request_id()
        g.model_version = None
        g.n_orders = 0

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = getattr(g, "request_id", None) or new_request_id()
        response.headers["X-Request-ID"] = request_id
        elapsed = time.perf_counter() - getattr(g, "t0", time.perf_counter())
        rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.observe(request.method, rule, response.status_code, elapsed)
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                json.dumps(
                    {
                        "ts": round(time.time(), 3),
                        "request_id": request_id,
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "latency_ms": round(elapsed * 1000, 3),
                        "model_version": getattr(g, "model_version", None),
                        "n_orders": getattr(g, "n_orders", 0),
                    }
                )
            )
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        details: list[Problem] = []
        if status == 404:
            details = [Problem("path", f"no route {request.path}", "see /openapi.json")]
        elif status == 405:
            allowed = sorted(getattr(exc, "valid_methods", None) or [])
            details = [Problem("method", f"{request.method} not allowed", ", ".join(allowed))]
        elif status == 413:
            details = [Problem("body", "too large", f"at most {settings.max_body_bytes} bytes")]
        response = error_response(status, (exc.name or "error").lower(), details)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _bug(exc: Exception) -> Response:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error", [])

    @app.post("/predict")
    def predict() -> Response:
        if request.mimetype != JSON_MIMETYPE:
            raise ApiError(
                415,
                "unsupported content type",
                [Problem("Content-Type", f"{request.mimetype or 'none'!r}", JSON_MIMETYPE)],
            )
        body = validation.parse_json(request.get_data(cache=False))
        parsed = validation.parse_predict_request(body, max_batch)
        loaded = provider.current  # read once: a swap cannot mix models in this request
        if loaded is None:
            raise ApiError(
                503,
                "no model loaded yet",
                [Problem("model", provider.last_error or "loading", "retry when /ready is 200")],
            )
        values = loaded.model.predict_records(parsed.records)
        predictions = format_predictions(loaded, parsed.records, parsed.order_ids, values)
        n = len(predictions)
        version = version_label(loaded)
        name = name_label(loaded)
        g.model_version = version
        g.n_orders = n
        metrics.count_predictions(name, version, n)
        if prediction_log is not None:
            prediction_log.submit(
                LogEntry(
                    request_id=g.request_id,
                    predicted_at=time.time(),
                    model_name=name,
                    model_version=version,
                    latency_ms=(time.perf_counter() - g.t0) * 1000.0,
                    records=parsed.records,
                    order_ids=parsed.order_ids,
                    values=values,
                )
            )
        meta = {
            "model_name": loaded.name,
            "model_version": loaded.version,
            "request_id": g.request_id,
        }
        if parsed.batch:
            return respond({"predictions": predictions, **meta})
        return respond({**predictions[0], **meta})

    @app.get("/health")
    def health() -> Response:
        return respond({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response:
        loaded = provider.current
        payload: dict[str, Any] = {"ready": loaded is not None, **provider.status()}
        if loaded is None:
            payload["reason"] = provider.last_error or "model is loading"
            return respond(payload, 503)
        payload["model"] = {"name": loaded.name, "version": loaded.version}
        return respond(payload)

    @app.get("/model")
    def model() -> Response:
        loaded = provider.current
        if loaded is None:
            raise ApiError(
                503,
                "no model loaded yet",
                [Problem("model", provider.last_error or "loading", "retry when /ready is 200")],
            )
        return respond({**model_info(loaded), **provider.status()})

    @app.post("/reload")
    def reload() -> Response:
        result = provider.reload_now()
        status = {"in_progress": 202, "failed": 503}.get(result.status, 200)
        loaded = provider.current
        return respond(
            {
                **result.to_dict(),
                "serving_version": loaded.version if loaded else None,
                **provider.status(),
            },
            status,
        )

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(
            metrics.render(provider, prediction_log),
            mimetype="text/plain",
            content_type="text/plain; version=0.0.4; charset=utf-8",
        )

    @app.get("/openapi.json")
    def openapi() -> Response:
        loaded = provider.current
        low = loaded.model.low if loaded else settings.quantile_low
        high = loaded.model.high if loaded else settings.quantile_high
        return respond(
            openapi_document(
                max_batch=max_batch,
                max_body_bytes=settings.max_body_bytes,
                quantile_low=low,
                quantile_high=high,
            )
        )

    return app


# --- the runner ------------------------------------------------------------------


class JsonLineFormatter(logging.Formatter):
    """Access lines are JSON already; other records become {"level", "logger", "message"}."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{"):
            return message
        payload = {"level": record.levelname.lower(), "logger": record.name, "message": message}
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure_logging(level: int = logging.INFO) -> Callable[[], None]:
    """One JSON line per event on stderr for the eta loggers (12-factor: the platform collects).

    Request threads only enqueue records; one listener thread formats and writes
    them, so a request never waits on the stream's lock or a write. Returns the
    function that stops the listener after writing what is queued.
    """
    import logging.handlers
    import queue
    import sys

    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonLineFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, stream, respect_handler_level=False)
    handler = logging.handlers.QueueHandler(records)
    for name, logger_level in (("eta", level), ("waitress", logging.WARNING)):
        target = logging.getLogger(name)
        target.handlers[:] = [handler]
        target.setLevel(logger_level)
        target.propagate = False
    listener.start()
    return listener.stop


def check_model_uri(uri: str | None) -> None:
    """Refuse a local model path that is not there now, instead of retrying forever."""
    if uri and "://" not in uri and ":/" not in uri:
        path = Path(uri).expanduser()
        if not path.is_dir():
            raise EtaError(f"--model {uri}: no such model folder")


def run(
    settings: Settings,
    *,
    model_uri: str | None = None,
    host: str | None = None,
    port: int | None = None,
    threads: int | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests and flush the prediction log."""
    import signal

    from waitress import create_server

    from eta_cli.serve.prediction_log import PredictionLog

    check_model_uri(model_uri)
    host = host or settings.serve_host
    port = settings.serve_port if port is None else port
    threads = threads or settings.serve_threads
    provider = ModelProvider(settings, model_uri)
    plog = PredictionLog(settings.effective_database_url, settings.prediction_log_queue)
    app = create_app(settings, provider, plog)
    try:
        server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="eta",
            # Flask answers oversized bodies with a JSON 413; waitress only guards memory.
            max_request_body_size=max(settings.max_body_bytes * 4, 1 << 20),
            channel_timeout=60,
            connection_limit=max(100, threads * 16),
            clear_untrusted_proxy_headers=True,
        )
    except OSError as exc:
        raise EtaError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc

    def _terminate(signum: int, frame: Any) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the flush short
        raise SystemExit(0)  # waitress's loop turns this into an orderly shutdown

    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    plog.start()
    provider.start()
    bound_port = int(server.effective_port)
    _event(
        "listening",
        url=f"http://{host}:{bound_port}",
        threads=threads,
        model_uri=provider.model_uri,
        polling=provider.polling,
        prediction_log=_redacted(settings.effective_database_url),
    )
    if ready is not None:
        ready(host, bound_port)
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
        provider.stop()
        plog.close()
        _event("stopped", **plog.stats())


def _redacted(url: str) -> str:
    from eta_cli.config import redact_url

    return redact_url(url)
