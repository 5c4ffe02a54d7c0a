"""The Dask engine behind ``--engine dask``: the cluster, progress bars, file listings.

``--scheduler tcp://host:8786`` (or dask's own ``DASK_SCHEDULER_ADDRESS``) connects
to a running cluster; otherwise a :class:`distributed.LocalCluster` sized to this
machine is started for the duration of the command. The local cluster's size comes
from the settings ``dask_workers``, ``dask_threads_per_worker`` and
``dask_memory_limit`` (``ETA_DASK_*``, read by :mod:`eta_cli.config`).

Nothing here imports dask at module import time: ``eta --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eta_cli.config import ENV_VARS, Settings, load_settings
from eta_cli.errors import EtaError, first_line
from eta_cli.progress import ProgressCallback, report

if TYPE_CHECKING:
    from distributed import Client

ENGINES = ("local", "dask")
DEFAULT_CONNECT_TIMEOUT_S = 5.0
_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|ucx|inproc)://)?\[?[A-Za-z0-9_.:\-]+\]?(:\d{1,5})?/?$")


class ClusterError(EtaError):
    """The Dask cluster cannot be reached, has no workers, or lost a worker mid-run."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where to run: a scheduler address, or the shape of a local cluster."""

    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | int | None = None  # per worker: "2GB", bytes, or "auto"
    processes: bool = True
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    silence_logs: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, scheduler: str | None = None) -> ClusterOptions:
        """Options from ``--scheduler`` and the ``dask_*`` settings; the memory limit checked."""
        memory = settings.dask_memory_limit.strip() or None
        if memory is not None:
            (variable,) = ENV_VARS["dask_memory_limit"]
            check_memory_limit(memory, f"${variable}")
        return cls(
            scheduler=scheduler or None,
            n_workers=settings.dask_workers or None,
            threads_per_worker=settings.dask_threads_per_worker or None,
            memory_limit=memory,
        )


def check_memory_limit(value: str | int, where: str = "memory limit") -> int | None:
    """Bytes of a limit such as ``2GB`` (None for ``auto``); a clear error otherwise."""
    if isinstance(value, int):
        return value
    if value.strip().lower() == "auto":
        return None
    from dask.utils import parse_bytes

    try:
        parsed = parse_bytes(value)
    except (ValueError, TypeError):
        parsed = 0
    if parsed < 64 * 2**20:
        raise ClusterError(f"{where}={value!r}: expected a size of at least 64MB such as '2GB'")
    return parsed


def check_engine(engine: str, scheduler: str | None) -> str:
    """Refuse an unknown engine, or a scheduler without the Dask engine."""
    engine = (engine or "local").strip().lower()
    if engine not in ENGINES:
        raise EtaError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    if scheduler and engine != "dask":
        raise EtaError("--scheduler only applies to --engine dask")
    return engine


def local_cluster_shape(options: ClusterOptions) -> tuple[int, int]:
    """(workers, threads per worker) for this machine: one single-threaded worker per
    core on small machines, two threads per worker beyond four cores."""
    cores = os.cpu_count() or 1
    threads = options.threads_per_worker or (1 if cores <= 4 else 2)
    workers = options.n_workers or max(1, cores // threads)
    return workers, threads


def cluster_size(client: Client) -> tuple[int, int, int]:
    """(workers, threads, total memory limit in bytes) of the connected cluster."""
    try:
        info = client.scheduler_info(n_workers=-1)  # recent distributed lists 5 by default
    except TypeError:
        info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
    memory = sum(int(w.get("memory_limit", 0) or 0) for w in workers.values())
    return len(workers), threads, memory


def _connect(address: str, timeout_s: float) -> Client:
    from distributed import Client

    if not _ADDRESS.match(address.strip()):
        raise ClusterError(
            f"--scheduler {address!r} is not a Dask scheduler address "
            "(expected e.g. tcp://scheduler-host:8786)"
        )
    try:
        client = Client(address.strip(), timeout=f"{timeout_s}s")
    except Exception as exc:
        raise ClusterError(
            f"cannot connect to the Dask scheduler at {address}: {first_line(exc)} "
            "(is `dask scheduler` running there and the port reachable?)"
        ) from exc
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except Exception as exc:
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {address} has no workers after {timeout_s:g} s "
            "(start some with `dask worker {address}`)"
        ) from exc
    return client


@contextlib.contextmanager
def dask_client(
    options: ClusterOptions | None = None, progress: ProgressCallback | None = None
) -> Iterator[Client]:
    """A connected ``distributed.Client`` for the block; a local cluster is closed after it.

    Reports the scheduler, the number of workers and the dashboard address as progress
    messages (stderr in the CLI), so a long run can be watched in the browser.
    """
    import logging

    options = options or ClusterOptions()
    scheduler = options.scheduler
    if not scheduler:
        import dask

        scheduler = dask.config.get("scheduler-address", None)
    cluster = None
    if scheduler:
        client = _connect(scheduler, options.connect_timeout_s)
        where = f"Dask scheduler {scheduler}"
        report(
            progress,
            "cluster",
            message="inputs and outputs must be reachable from every worker: "
            "s3:// URIs or a filesystem mounted at the same path",
        )
    else:
        from distributed import Client, LocalCluster

        workers, threads = local_cluster_shape(options)
        memory: Any = options.memory_limit or "auto"
        if isinstance(memory, str):
            memory = check_memory_limit(memory, "memory_limit") or "auto"
        try:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                memory_limit=memory,
                processes=options.processes,
                dashboard_address=":0",
                silence_logs=logging.ERROR if options.silence_logs else logging.WARNING,
            )
            client = Client(cluster)
        except Exception as exc:
            if cluster is not None:
                cluster.close()
            raise ClusterError(f"cannot start a local Dask cluster: {first_line(exc)}") from exc
        where = "local Dask cluster"
    try:
        if progress is not None:
            n, threads, memory_total = cluster_size(client)
            per_worker = (
                f", {memory_total / max(n, 1) / 2**30:.1f} GiB each" if memory_total else ""
            )
            report(
                progress,
                "cluster",
                message=f"{where}: {n} worker(s), {threads} thread(s){per_worker}; "
                f"dashboard {dashboard_text(client, local=cluster is not None)}",
            )
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


def dashboard_text(client: Client, local: bool = True) -> str:
    """The dashboard address, with a hint when this machine cannot serve it."""
    link = client.dashboard_link or "(none)"
    if local:
        try:
            import bokeh  # noqa: F401
        except ImportError:
            return f"{link} (install bokeh>=3.1 to serve it)"
    return link


# --------------------------------------------------------------------------- progress


class Tracker:
    """Progress events over a list of futures (partitions, files or days).

    A no-op when ``progress`` is None, so library calls and ``--json`` stay quiet.
    """

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress

    def wait(
        self,
        futures: Sequence[Any],
        description: str,
        *,
        gather: bool = True,
        on_done: Callable[[int, Any], None] | None = None,
        unit: str = "partitions",
    ) -> list[Any]:
        """Wait for every future with a progress bar; results in input order.

        A failed task cancels the rest and re-raises its error (an ``EtaError`` from
        a worker keeps its message); a lost worker becomes a :class:`ClusterError`.
        """
        from distributed import as_completed

        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        total = len(futures)
        report(self.progress, description, done=0, total=total, unit=unit)
        finished = 0
        try:
            loop = futures[0].client.loop if futures else None
            for future in as_completed(list(futures), loop=loop):
                if future.status == "error":
                    _raise_task_error(future, description)
                i = index[future.key]
                if gather or on_done is not None:
                    value = _result(future, description)
                    if gather:
                        results[i] = value
                    if on_done is not None:
                        on_done(i, value)
                finished += 1
                report(self.progress, description, done=finished, total=total, unit=unit)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return results

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[None]:
        """A spinner for a step without partitions to count (e.g. boosting rounds)."""
        started = time.perf_counter()
        report(self.progress, description, done=0, total=None, unit="", note="...")
        yield
        seconds = time.perf_counter() - started
        report(
            self.progress, description, done=1, total=1, message=f"{description}: {seconds:.1f} s"
        )


def _result(future: Any, description: str) -> Any:
    try:
        return future.result()
    except EtaError:
        raise
    except Exception as exc:
        _translate(exc, description)
        raise


def _raise_task_error(future: Any, description: str) -> None:
    exc = future.exception()
    if isinstance(exc, EtaError):
        raise exc
    _translate(exc, description)
    future.result()  # re-raise with the remote traceback


def _translate(exc: BaseException, description: str) -> None:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        raise ClusterError(
            f"a Dask worker died while {description} (out of memory? raise the worker "
            f"memory limit or use smaller input files): {first_line(exc)}"
        ) from exc
    name = type(exc).__name__
    if name in ("CommClosedError", "FutureCancelledError", "CancelledError"):
        raise ClusterError(
            f"lost the Dask cluster while {description}: {name}: {first_line(exc)}"
        ) from exc


def wait_persisted(tracker: Tracker, collection: Any, description: str) -> None:
    """Progress over the partitions of a persisted collection; errors surface here."""
    from distributed import futures_of

    tracker.wait(futures_of(collection), description, gather=False)


def worker_peak_rss(client: Client) -> dict[str, int]:
    """Peak resident memory (bytes) of every worker process since it started.

    Linux: ``VmHWM`` of the process (``ru_maxrss`` can carry a parent's peak into a
    restarted worker); elsewhere ``ru_maxrss``.
    """

    def peak() -> int:
        import resource
        import sys

        try:
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)

    return client.run(peak)


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class DataFile:
    """One input file: its URI, its path inside the filesystem, and its path relative
    to the folder or prefix that was listed (``""`` when a single file was given)."""

    uri: str
    path: str
    relative: str
    size: int


def list_files(
    uri: str, settings: Any, suffixes: Sequence[str], what: str = "--input"
) -> list[DataFile]:
    """Data files under a folder or ``s3://`` prefix (or the one file named), sorted.

    Hidden (``.x``) and bookkeeping (``_x``: ``_staging``, ``_journal``, ``_SUCCESS``)
    files and folders are skipped, as ingest does.
    """
    from pyarrow import fs as pafs

    from eta_cli import storage

    location = uri if storage.is_s3(uri) else os.path.abspath(os.path.expanduser(uri))
    filesystem, base = storage.filesystem_and_path(location, settings)
    try:
        info = filesystem.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            raise EtaError(f"{what} {uri}: no such file, folder or prefix")
        if info.type == pafs.FileType.File:
            return [DataFile(location, base, "", int(info.size or 0))]
        listing = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    except EtaError:
        raise
    except OSError as exc:
        raise storage.StorageError(f"{what} {uri}: cannot list: {first_line(exc)}") from exc
    prefix = base.rstrip("/") + "/"
    found = []
    for item in listing:
        if item.type != pafs.FileType.File or not item.path.startswith(prefix):
            continue
        relative = item.path[len(prefix) :]
        parts = relative.split("/")
        if any(part.startswith((".", "_")) for part in parts):
            continue
        if not parts[-1].lower().endswith(tuple(suffixes)):
            continue
        shown = f"s3://{item.path}" if storage.is_s3(uri) else item.path
        found.append(DataFile(shown, item.path, relative, int(item.size or 0)))
    found.sort(key=lambda f: f.relative)
    if not found:
        raise EtaError(f"{what} {uri}: no {', '.join(suffixes)} file in this folder or prefix")
    return found


# --------------------------------------------------------------------------- stages


@contextlib.contextmanager
def engine_client(
    engine: str,
    scheduler: str | None,
    progress: ProgressCallback | None = None,
    *,
    settings: Settings | None = None,
) -> Iterator[Client | None]:
    """None for ``--engine local``; a connected Dask client for ``--engine dask``.

    A local cluster is shaped by ``settings`` (the stage's own); without them the
    effective settings are loaded, so the ``dask_*`` settings apply either way.
    """
    if check_engine(engine, scheduler) == "local":
        yield None
        return
    options = ClusterOptions.from_settings(settings or load_settings(), scheduler)
    with dask_client(options, progress=progress) as client:
        yield client
