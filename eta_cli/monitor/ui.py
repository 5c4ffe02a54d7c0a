"""``eta ui``: Evidently's UI on the workspace (and optionally MLflow's), as child processes.

The UIs run as children (``python -m evidently.cli ui``, ``python -m mlflow ui`` of this
interpreter) rather than in-process: both are uvicorn/gunicorn servers that install
their own signal handlers and import a great deal, and a child can be stopped
cleanly and completely from here. Each child starts in its own session, so a Ctrl-C
reaches only ``eta ui``, which then stops every child (SIGTERM, then SIGKILL after
:data:`STOP_TIMEOUT_S`) and returns; nothing is left listening.

Evidently's telemetry is switched off in the child (``DO_NOT_TRACK=1``): eta makes no
network call of its own. The MLflow backend store URI reaches its child through the
environment (``MLFLOW_BACKEND_STORE_URI``), not the command line, so a database
password never shows in the process list.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eta_cli import config
from eta_cli.errors import EtaError, first_line

if TYPE_CHECKING:
    from eta_cli.config import Settings

START_TIMEOUT_S = 180.0  # Evidently's UI imports for 10-30 s on a busy two-core machine
STOP_TIMEOUT_S = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UiError(EtaError):
    """The UI cannot start: bad option, busy port, nothing to show, or a child failed."""


@dataclass
class Service:
    """One child server: what it is, its command, environment and where it listens."""

    name: str
    command: list[str]
    host: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def evidently_service(settings: Settings, host: str, port: int) -> Service:
    """Evidently's UI on the settings' workspace folder."""
    command = [sys.executable, "-m", "evidently.cli", "ui", "--host", host, "--port", str(port)]
    command += ["--workspace", settings.effective_workspace]
    return Service("Evidently UI", command, host, port, {"DO_NOT_TRACK": "1"})


def mlflow_service(settings: Settings, port: int) -> Service:
    """MLflow's UI on the configured tracking store, on loopback (one worker)."""
    uri = settings.effective_tracking_uri
    if uri.startswith(("http://", "https://")):
        raise UiError(
            "--mlflow starts MLflow's UI on a tracking *store*, but MLFLOW_TRACKING_URI is "
            "a tracking server already: open it in a browser instead"
        )
    env = {"MLFLOW_BACKEND_STORE_URI": uri}
    artifacts = settings.effective_artifact_location
    if artifacts:
        env["MLFLOW_DEFAULT_ARTIFACT_ROOT"] = artifacts
    command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port)]
    return Service("MLflow UI", [*command, "--workers", "1"], "127.0.0.1", port, env)


def mlflow_hint(settings: Settings, port: int) -> str:
    """How to open MLflow on the configured tracking store (its password redacted)."""
    from eta_cli.config import redact_url

    uri = settings.effective_tracking_uri
    if uri.startswith(("http://", "https://")):
        return f"MLflow: {redact_url(uri)} (the tracking server)"
    return (
        f"MLflow: `eta ui --mlflow` also starts it, or run "
        f"`mlflow ui --backend-store-uri '{redact_url(uri)}' --port {port}`"
    )


def check_port(host: str, port: int, option: str) -> None:
    """Refuse a port something already listens on, before starting anything."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UiError(
                f"{option} {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                f"choose a free port with {option}"
            ) from exc


def run(
    services: Sequence[Service],
    on_ready: Callable[[Service], None],
    stop_after_s: float | None = None,
) -> int:
    """Start every service, call ``on_ready`` as each listens, serve until a signal.

    Returns 0 after SIGINT/SIGTERM (every child stopped) and raises :class:`UiError`
    when a child exits on its own or never listens. ``stop_after_s`` ends the run
    after that many seconds (for benchmarks and scripted screenshots).
    """
    stopping: list[int] = []

    def _stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for service in services:
            _start(service)
        pending = list(services)
        deadline = time.monotonic() + START_TIMEOUT_S
        ends = None if stop_after_s is None else time.monotonic() + stop_after_s
        while not stopping and (ends is None or time.monotonic() < ends):
            for service in services:
                _check_alive(service)
            for service in [s for s in pending if _listening(s)]:
                pending.remove(service)
                on_ready(service)
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.name for s in pending)
                raise UiError(f"{names} did not listen within {START_TIMEOUT_S:.0f} s", 1)
            time.sleep(0.2)
        return 0
    finally:
        for service in services:
            _terminate(service)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start(service: Service) -> None:
    try:
        service.process = subprocess.Popen(
            service.command,
            env=config.child_environment(service.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # request logs; errors still reach stderr
            start_new_session=True,  # Ctrl-C reaches eta ui only; it stops the child
        )
    except OSError as exc:
        raise UiError(f"{service.name} cannot start: {first_line(exc)}") from exc


def _check_alive(service: Service) -> None:
    process = service.process
    if process is not None and process.poll() is not None:
        raise UiError(
            f"{service.name} exited with code {process.returncode} (its messages are above)",
            1,
        )


def _listening(service: Service) -> bool:
    host = "127.0.0.1" if service.host in ("0.0.0.0", "") else service.host
    host = "::1" if host == "::" else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, service.port)) == 0


def _terminate(service: Service) -> None:
    process = service.process
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)
