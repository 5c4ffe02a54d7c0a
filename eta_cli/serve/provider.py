"""The model holder of the service: what is served now, and hot reload from the registry.

Requests read :attr:`ModelProvider.current` once; a new model replaces it by one
reference assignment, so a swap never mixes two models inside a request. MLflow is
only touched by the provider's background thread (initial load, alias polling,
reload), never on the request path.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eta_cli.errors import first_line
from eta_cli.progress import report
from eta_cli.redact import redact_url
from eta_cli.serve.events import log_event
from eta_cli.serve.lean import accelerate

if TYPE_CHECKING:
    from flask import Flask

    from eta_cli.config import Settings
    from eta_cli.progress import ProgressCallback
    from eta_cli.registry import LoadedModel

ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
# Until the first model is loaded, retry at least this often.
INITIAL_RETRY_S = 5.0
RELOAD_WAIT_S = 60.0


def _no_version_text(name: str, alias: str) -> str:
    """Why nothing is served, with the commands that fix it for the champion."""
    if alias == "champion":
        return f"no champion for model {name!r} yet: run `eta train` and `eta register`"
    return f"no version of model {name!r} has alias {alias!r}: see `eta register --list`"


def _now() -> str:
    """The time a state began, as answers show it (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def version_label(loaded: LoadedModel) -> str:
    """Version for the log table and metric labels ('local' for a model folder)."""
    return loaded.version or "local"


def name_label(loaded: LoadedModel) -> str:
    """Name for the log table and metric labels ('local' for a model folder)."""
    return loaded.name or "local"


class _Flight:
    """One registry check in progress; every caller that arrives meanwhile waits for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: ReloadResult | None = None


@dataclass
class ReloadResult:
    """What one registry check or ``POST /reload`` did, as the /reload answer shows it."""

    status: str  # loaded | unchanged | failed | in_progress | fixed
    version: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result's part of the /reload answer."""
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
        progress: ProgressCallback | None = None,
    ) -> None:
        self.settings = settings
        self.model_uri = model_uri or f"models:/{settings.model_name}@champion"
        match = ALIAS_URI.match(self.model_uri)
        self.alias_target: tuple[str, str] | None = (
            (match["name"], match["alias"]) if match else None
        )
        self._loader = loader
        self._resolver = resolver
        self._progress = progress  # told once when the alias points at nothing
        self._fixed = False
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()  # guards the swap and its bookkeeping
        self._reload_lock = threading.Lock()  # one check/load at a time
        self._flight: _Flight | None = None  # the check running now (single flight)
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

    def init_app(self, app: Flask) -> None:
        """Serve this provider's model from ``app`` (Flask's extension pattern).

        The app only reads the provider; whoever created it starts and stops it.
        """
        app.extensions.setdefault("eta", {})["provider"] = self

    @property
    def current(self) -> LoadedModel | None:
        """The model serving now (None while the first one loads); read it once per request."""
        return self._current

    @property
    def polling(self) -> bool:
        """Whether the alias is watched: a models:/NAME@ALIAS URI, not a fixed model."""
        return self.alias_target is not None and not self._fixed

    @property
    def immutable(self) -> bool:
        """Whether :attr:`model_uri` names a model that never changes (a pinned registry
        version ``models:/NAME/3`` or a run's ``runs:/``): loading it again would only
        cost time, so once it is loaded a reload is a no-op. A folder may be rewritten."""
        return self.alias_target is None and self.model_uri.startswith(("models:/", "runs:/"))

    def swap(self, loaded: LoadedModel) -> LoadedModel | None:
        """Serve ``loaded`` from now on; return the previous model."""
        loaded = accelerate(loaded)  # before taking the lock: requests keep the old one
        with self._lock:
            previous = self._current
            self._current = loaded
            self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        log_event(
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
                verdict = self._check_alias(*self.alias_target, current)
                if verdict is not None:
                    return verdict
            if current is not None and self.immutable:
                return ReloadResult("unchanged", current.version)
            # A local folder is loaded at start and on POST /reload only.
            return self._load_and_swap(current)

    def _check_alias(
        self, name: str, alias: str, current: LoadedModel | None
    ) -> ReloadResult | None:
        """Resolve the alias; a result when there is nothing to load, None when a load is due.

        An unreachable registry is logged once per change of state, not on every
        poll, and keeps the current model serving. Answers say only the state and
        since when ("unreachable since ..."): the error's text (redacted) goes to the
        service log, never to a public endpoint.
        """
        try:
            version = self._resolve(name, alias)
        except Exception as exc:
            if not self.registry.startswith("unreachable"):
                log_event("registry_unreachable", error=first_line(exc))
                self.registry = f"unreachable since {_now()}"
            message = f"registry {self.registry}"
            if current is None:
                self.last_error = message
            return ReloadResult("failed", current and current.version, message)
        if self.registry != "ok":
            log_event("registry_reachable")
        self.registry = "ok"
        if version is None:
            message = _no_version_text(name, alias)
            if self.last_error != message:  # once, not on every poll
                log_event("no_model_version", name=name, alias=alias)
                report(self._progress, "model", message=message)
            self.last_error = message
            return ReloadResult("failed", current and current.version, message)
        if current is not None and current.version == version:
            return ReloadResult("unchanged", version)
        return None

    def _load_and_swap(self, current: LoadedModel | None) -> ReloadResult:
        """Load :attr:`model_uri` and serve it; on failure the current model keeps serving."""
        try:
            loaded = self._load(self.model_uri)
        except Exception as exc:
            uri = redact_url(self.model_uri)
            self.last_error = f"could not load {uri} at {_now()}; the service log says why"
            self.reloads["failed"] += 1
            log_event("model_load_failed", uri=uri, error=first_line(exc))
            return ReloadResult("failed", current and current.version, self.last_error)
        self.last_error = None
        self.reloads["loaded"] += 1
        self.swap(loaded)
        return ReloadResult("loaded", loaded.version)

    def _join_or_start(self, in_thread: bool) -> tuple[_Flight, bool]:
        """The check in progress, or a new one; and whether this caller must run it.

        Single flight: however many callers (``POST /reload``, the poller) arrive while
        a check runs, they all wait for that one, so reloads never pile up threads or
        load the same model twice. ``in_thread``: a new check runs in its own thread
        (a request must not die with it), else the caller runs it.
        """
        with self._lock:
            flight = self._flight
            if flight is not None:
                return flight, False
            flight = self._flight = _Flight()
        if in_thread:
            threading.Thread(
                target=self._fly, args=(flight,), name="eta-reload", daemon=True
            ).start()
            return flight, False
        return flight, True

    def _fly(self, flight: _Flight) -> None:
        """Run the check of ``flight`` and hand its result to everyone waiting for it."""
        result = ReloadResult("failed", message="the check stopped unexpectedly")
        try:
            result = self.check()
        finally:
            with self._lock:
                self._flight = None
            flight.result = result
            flight.done.set()

    def check_once(self) -> ReloadResult:
        """:meth:`check`, joined with any check already running (the poller's way)."""
        flight, mine = self._join_or_start(in_thread=False)
        if mine:
            self._fly(flight)
        flight.done.wait()
        return flight.result or ReloadResult("failed")

    def reload_now(self, timeout: float = RELOAD_WAIT_S) -> ReloadResult:
        """Check the registry now (``POST /reload``), joining a check already running;
        ``in_progress`` when it takes longer than ``timeout`` (it goes on in the background)."""
        flight, _ = self._join_or_start(in_thread=True)
        if flight.done.wait(timeout) and flight.result is not None:
            return flight.result
        return ReloadResult("in_progress", message="still loading")

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
        self.check_once()
        while True:
            if self._current is None:
                wait = min(interval, INITIAL_RETRY_S)
            elif self.polling:
                wait = interval
            else:
                return  # loaded from a folder or a pinned version: nothing to poll
            if self._stop.wait(wait):
                return
            self.check_once()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; the model being served stays available."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def status(self) -> dict[str, Any]:
        """What ``/ready`` and ``/model`` report about loading and the registry."""
        return {
            "registry": self.registry,
            "model_uri": redact_url(self.model_uri),
            "polling": self.polling,
            "reload_interval_s": self.settings.reload_interval_s if self.polling else None,
            "loaded_at": self.loaded_at,
            "last_check": self.last_check,
            "last_error": self.last_error,
        }
