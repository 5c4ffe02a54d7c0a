"""``eta pipeline``: the whole lifecycle in one cron-safe run.

Steps, each logged as one line with its timing and summarised at the end:

1. **ingest** new files: the sources given, plus a configured inbox folder. Local
   files are remembered in ``ETA_HOME/pipeline/ingested_files.json`` (path, size,
   mtime), so a nightly run over the same inbox only ingests what is new or
   changed. ``s3://`` sources are passed to ingest every time; ingest
   de-duplicates by ``order_id`` (repeats are quarantined as ``duplicate_order``).
2. **drift**: the orders that are new *to the champion* against its reference
   sample: every order placed after the newest order of the champion's training run
   (its ``eta.test_end`` tag), whatever ran before, so the first run after
   ``eta register`` already compares only what the champion has never seen. For a
   champion whose run lacks that tag, the orders new since the previous pipeline run
   (order ids remembered in ``ETA_HOME/pipeline/known_orders.parquet``).
3. **train** when the policy says so: ``on-drift`` (default) retrains on dataset
   drift, ``always`` every run, ``never`` not at all. With no champion yet, the
   first model is trained (unless ``never``).
4. **register** the new run with the champion/challenger gate.

Before drift, an **evaluate** step (:mod:`eta_cli.monitor.evaluate`) joins the week's
logged predictions with the delivered orders just ingested and compares champion and
shadow challenger live; with ``live_promotion`` it promotes a challenger that won on
enough orders (the policy of ``eta evaluate --promote``). It runs first so the
challenger it measured is still the one under the alias (a retrain may replace it).

A non-blocking ``flock`` on ``ETA_HOME/pipeline.lock`` keeps two runs from
overlapping: the second one exits at once with :data:`EXIT_BUSY`.

Exit codes (:data:`EXIT_CODES`)::

    0   ok: nothing new or no drift (first model / --retrain always included)
    2   bad input or configuration, nothing done
    3   a new champion: drift retrain promoted, or the challenger won live (--live-promotion on)
    4   drift; retrained, but the gate kept the old champion (challenger)
    5   drift; not retrained (--retrain never)
    6   a step failed (see its log line); other steps ran where they could
    75  another pipeline run holds the lock; nothing done (try again later)
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.errors import EtaError, first_line
from eta_cli.redact import redact_text

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.config import Settings

EXIT_OK = 0
EXIT_DRIFT_PROMOTED = 3
EXIT_DRIFT_NOT_PROMOTED = 4
EXIT_DRIFT_NOT_RETRAINED = 5
EXIT_STEP_FAILED = 6
EXIT_BUSY = 75  # EX_TEMPFAIL: cron wrappers treat it as "try again later"

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok: nothing new or no drift (first model / --retrain always included)",
    2: "bad input or configuration, nothing done",
    EXIT_DRIFT_PROMOTED: (
        "a new champion: drift retrain promoted, or the challenger won live (--live-promotion on)"
    ),
    EXIT_DRIFT_NOT_PROMOTED: "drift; retrained, but the gate kept the old champion (challenger)",
    EXIT_DRIFT_NOT_RETRAINED: "drift; not retrained (--retrain never)",
    EXIT_STEP_FAILED: "a step failed (see its log line); other steps ran where they could",
    EXIT_BUSY: "another pipeline run holds the lock; nothing done",
}

RETRAIN_POLICIES = ("on-drift", "always", "never")
LOCK_FILE = "pipeline.lock"
STATE_DIR = "pipeline"
FILES_MANIFEST = "ingested_files.json"
KNOWN_ORDERS = "known_orders.parquet"
RUNS_LOG = "runs.jsonl"


class PipelineError(EtaError):
    """The pipeline cannot start: bad option, unreadable inbox or state."""


class PipelineBusy(EtaError):
    """Another ``eta pipeline`` holds the lock."""

    exit_code = EXIT_BUSY


@dataclass
class Step:
    """One step's outcome, as logged."""

    name: str
    status: str  # ok | skipped | failed
    seconds: float
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"step={self.name} status={self.status} seconds={self.seconds:.2f} {self.detail}"


@dataclass
class PipelineResult:
    """What one run did; ``to_dict`` is ``eta pipeline --json``."""

    started_at: datetime
    retrain_policy: str
    steps: list[Step] = field(default_factory=list)
    new_orders: int = 0
    dataset_drift: bool | None = None
    retrained: bool = False
    promoted: bool | None = None
    live_promoted: bool = False  # the evaluate step promoted the challenger on live evidence
    exit_code: int = EXIT_OK
    seconds: float = 0.0

    @property
    def summary(self) -> str:
        return EXIT_CODES.get(self.exit_code, "unknown")

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "retrain_policy": self.retrain_policy,
            "new_orders": self.new_orders,
            "dataset_drift": self.dataset_drift,
            "retrained": self.retrained,
            "promoted": self.promoted,
            "live_promoted": self.live_promoted,
            "exit_code": self.exit_code,
            "summary": self.summary,
            "seconds": round(self.seconds, 3),
            "steps": [asdict(s) for s in self.steps],
        }


# --------------------------------------------------------------------------- lock


@contextlib.contextmanager
def pipeline_lock(settings: Settings) -> Iterator[Path]:
    """Hold ``ETA_HOME/pipeline.lock`` (flock, non-blocking) for the block.

    The kernel drops the lock when the process dies, so a crashed run never
    blocks the next one; the file keeps the holder's pid for the busy message.
    """
    path = settings.home_path / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the block
    except OSError as exc:
        raise PipelineError(f"cannot open the pipeline lock {path}: {first_line(exc)}") from exc
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise PipelineBusy(
                f"another eta pipeline run holds {path} ({holder}); not starting a second one"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the flock


# --------------------------------------------------------------------------- state


def _state_dir(settings: Settings) -> Path:
    path = settings.home_path / STATE_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_manifest(settings: Settings) -> dict[str, dict[str, Any]]:
    path = _state_dir(settings) / FILES_MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(
            f"{path} is not readable JSON ({first_line(exc)}); delete it to ingest every file again"
        ) from exc


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _remember_files(settings: Settings, files: Sequence[str], run_id: str) -> None:
    manifest = _read_manifest(settings)
    now = datetime.now(UTC).isoformat()
    for name in files:
        stat = os.stat(name)
        manifest[name] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "ingest_run": run_id,
            "at": now,
        }
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    _write_atomic(_state_dir(settings) / FILES_MANIFEST, body)


def _files_of(source: str) -> list[str]:
    """Local files named by a source (file, folder, glob), as ingest expands them."""
    from eta_cli.ingest import CSV_SUFFIXES, PARQUET_SUFFIXES

    def in_dir(directory: str) -> list[str]:
        found = []
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            for name in sorted(files):
                if not name.startswith((".", "_")) and name.lower().endswith(
                    CSV_SUFFIXES + PARQUET_SUFFIXES
                ):
                    found.append(os.path.join(root, name))
        return found

    path = os.path.expanduser(source)
    if any(ch in source for ch in "*?["):
        matches = sorted(glob.glob(path, recursive=True))
        return [f for m in matches for f in (in_dir(m) if os.path.isdir(m) else [m])]
    if os.path.isdir(path):
        return in_dir(path)
    return [path]


def new_files(
    settings: Settings, sources: Sequence[str], inbox: str | None
) -> tuple[list[str], list[str], int]:
    """(new or changed local files, s3:// sources, files skipped as already ingested)."""
    from eta_cli.storage import is_s3

    manifest = _read_manifest(settings)
    if inbox and not os.path.isdir(os.path.expanduser(inbox)):
        raise PipelineError(f"inbox {inbox} is not a folder (--inbox / ETA_PIPELINE_INBOX)")
    local: list[str] = []
    remote: list[str] = []
    for source in [*sources, *([inbox] if inbox else [])]:
        if is_s3(source):
            remote.append(source)
            continue
        for name in _files_of(source):
            absolute = os.path.abspath(name)
            if absolute not in local:
                local.append(absolute)
    fresh, skipped = [], 0
    for name in local:
        seen = manifest.get(name)
        try:
            stat = os.stat(name)
        except OSError:
            fresh.append(name)  # let ingest name the problem
            continue
        if seen and seen.get("size") == stat.st_size and seen.get("mtime_ns") == stat.st_mtime_ns:
            skipped += 1
        else:
            fresh.append(name)
    return fresh, remote, skipped


def _known_orders(settings: Settings) -> Any:
    """Order ids seen by the previous run (a pandas Index), or None on the first run."""
    import pandas as pd

    path = _state_dir(settings) / KNOWN_ORDERS
    if not path.exists():
        return None
    return pd.Index(pd.read_parquet(path)[schema.ORDER_ID].astype(str))


def _remember_orders(settings: Settings, ids: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _state_dir(settings) / KNOWN_ORDERS
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(pa.table({schema.ORDER_ID: pa.array(list(ids), pa.string())}), tmp)
    os.replace(tmp, path)


def new_orders(settings: Settings, after: datetime | None = None) -> tuple[pd.DataFrame, Any]:
    """The new ingested orders, and every order id now present.

    New: placed after ``after`` (the end of the champion's training data) when given,
    else not seen by the previous run. With ``after``, nothing is new when every such
    order was already looked at by the previous run (a champion the gate kept is not
    re-checked night after night on the same orders). Only the id, day and time columns
    are read in full; the new orders' rows come from the partitions (days) they are in.
    """
    from eta_cli import lake

    columns = [schema.ORDER_ID, schema.ORDER_DATE, schema.CREATED_AT]
    ids = lake.read_orders(settings, columns=columns)
    all_ids = ids[schema.ORDER_ID].astype(str)
    known = _known_orders(settings)
    if after is not None:
        fresh = ids[schema.CREATED_AT] > after
        if known is not None and all_ids[fresh].isin(known).all():
            fresh &= False  # nothing has arrived since the previous run looked
    else:
        fresh = ~all_ids.isin(known) if known is not None else all_ids.notna()
    if not fresh.any():
        return ids.iloc[0:0], all_ids
    first_day = str(ids.loc[fresh, schema.ORDER_DATE].min())
    frame = lake.read_orders(settings, since=first_day)
    frame = frame[frame[schema.ORDER_ID].astype(str).isin(set(all_ids[fresh]))]
    return frame.reset_index(drop=True), all_ids


# --------------------------------------------------------------------------- run


def _default_log(line: str) -> None:
    sys.stderr.write(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} eta pipeline {line}\n")
    sys.stderr.flush()


def _log_line(exc: BaseException) -> str:
    """One line for the log; unexpected errors (bugs) keep their type name."""
    line = first_line(exc, limit=500)
    if isinstance(exc, EtaError):
        return line
    return f"internal error {type(exc).__name__}: {line}"


def run_pipeline(
    settings: Settings,
    sources: Sequence[str] = (),
    *,
    inbox: str | None = None,
    retrain: str = "on-drift",
    synthetic: int | None = None,
    seed: int = 0,
    drift: bool = False,
    sample_rows: int | None = None,
    upload_s3: bool = False,
    alert_webhook: str | None = None,
    trials: int = 0,
    max_rounds: int | None = None,
    live_promotion: bool = False,
    log: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Ingest, drift-check against the champion, retrain and register per ``retrain``.

    Holds the pipeline lock for the whole run (:class:`PipelineBusy` if taken). Step
    failures are logged and recorded, later steps run where they still make sense,
    and :attr:`PipelineResult.exit_code` says what happened (see the module doc).
    """
    if retrain not in RETRAIN_POLICIES:
        raise PipelineError(
            f"--retrain {retrain!r} is not a policy; allowed: {', '.join(RETRAIN_POLICIES)}"
        )
    if synthetic is not None and synthetic < 1:
        raise PipelineError(f"--synthetic must be at least 1, got {synthetic}")
    if upload_s3 and not settings.s3_bucket:
        raise PipelineError(
            "--upload-s3 needs a bucket: set ETA_S3_BUCKET (or s3_bucket in the profile)"
        )
    if inbox and not os.path.isdir(os.path.expanduser(inbox)):
        raise PipelineError(f"inbox {inbox} is not a folder (--inbox / ETA_PIPELINE_INBOX)")
    sink = log or _default_log

    def emit(line: str) -> None:
        sink(redact_text(line))  # a step's detail can quote a URL or a driver's error

    started = time.perf_counter()
    result = PipelineResult(started_at=datetime.now(UTC), retrain_policy=retrain)

    with pipeline_lock(settings):
        emit(f"start retrain={retrain} home={settings.home_path}")

        def record(step: Step) -> Step:
            result.steps.append(step)
            emit(step.line())
            return step

        _ingest_step(settings, sources, inbox, synthetic, seed, drift, record)
        _evaluate_step(settings, live_promotion, result, record)
        all_ids = _drift_step(settings, result, sample_rows, upload_s3, alert_webhook, record)
        drift_step = result.step("drift")
        champion_missing = bool(drift_step and drift_step.data.get("no_champion"))
        has_orders = all_ids is not None and len(all_ids) > 0
        should_train, why = _should_train(result, retrain, champion_missing, has_orders)
        run_id = _train_step(settings, should_train, why, trials, max_rounds, record)
        if run_id:
            result.retrained = True
            _register_step(settings, run_id, result, record)
        # The next run compares only what arrives after this one, once this run has
        # looked at these orders (drift report written, or the first model trained).
        looked = bool(drift_step and drift_step.status == "ok")
        if all_ids is not None and (looked or (champion_missing and result.retrained)):
            _remember_orders(settings, all_ids)
        result.exit_code = _exit_code(result)
        result.seconds = time.perf_counter() - started
        emit(f"done exit={result.exit_code} seconds={result.seconds:.2f} {result.summary}")
        _append_run(settings, result)
    return result


def _ingest_step(
    settings: Settings,
    sources: Sequence[str],
    inbox: str | None,
    synthetic: int | None,
    seed: int,
    drift: bool,
    record: Callable[[Step], Step],
) -> None:
    tick = time.perf_counter()
    try:
        files, remote, skipped = new_files(settings, sources, inbox)
    except Exception as exc:  # logged as a failed step
        record(Step("ingest", "failed", time.perf_counter() - tick, _log_line(exc)))
        return
    if not files and not remote and not synthetic:
        detail = (
            f"no new files ({skipped} already ingested)"
            if skipped
            else "no sources (pass files, --inbox or ETA_PIPELINE_INBOX)"
        )
        record(Step("ingest", "skipped", time.perf_counter() - tick, detail))
        return
    from eta_cli import ingest

    try:
        outcome = ingest.ingest(
            settings, [*files, *remote], synthetic=synthetic, seed=seed, drift=drift
        )
    except Exception as exc:  # logged as a failed step
        record(Step("ingest", "failed", time.perf_counter() - tick, _log_line(exc)))
        return
    _remember_files(settings, files, outcome.run_id)
    record(
        Step(
            "ingest",
            "ok",
            time.perf_counter() - tick,
            f"sources={len(files) + len(remote) + (1 if synthetic else 0)} "
            f"skipped_files={skipped} rows_written={outcome.rows_written} "
            f"quarantined={outcome.rows_quarantined}",
            {"ingest": outcome.to_dict()},
        )
    )


def _evaluate_step(
    settings: Settings, promote: bool, result: PipelineResult, record: Callable[[Step], Step]
) -> None:
    """Live evaluation (and, with ``promote``, promotion) of the shadow challenger."""
    from eta_cli.monitor import evaluate

    tick = time.perf_counter()
    try:
        outcome = evaluate.evaluate(settings, promote=promote)
    except Exception as exc:  # logged as a failed step
        record(Step("evaluate", "failed", time.perf_counter() - tick, _log_line(exc)))
        return
    result.live_promoted = outcome.promoted
    status = "skipped" if outcome.message else "failed" if outcome.errors else "ok"
    detail = f"live_promotion={'on' if promote else 'off'} {outcome.summary_line()}"
    data = {"evaluate": outcome.to_dict()}
    record(Step("evaluate", status, time.perf_counter() - tick, detail, data))


def _champion_version(settings: Settings) -> str | None:
    from eta_cli import registry

    return registry.resolve_version(settings, settings.model_name, registry.CHAMPION)


def champion_window_end(settings: Settings, version: str) -> datetime | None:
    """The newest order the champion's training run saw (its ``eta.test_end`` tag):
    orders after it are new to the champion. None when the run does not say."""
    import pandas as pd

    from eta_cli import tracking

    with tracking.fast_http():
        client = tracking.client_for(settings)
        run_id = client.get_model_version(settings.model_name, version).run_id
        end = client.get_run(run_id).data.tags.get("eta.test_end") if run_id else None
    return pd.Timestamp(end).to_pydatetime() if end else None


def _drift_step(
    settings: Settings,
    result: PipelineResult,
    sample_rows: int | None,
    upload_s3: bool,
    alert_webhook: str | None,
    record: Callable[[Step], Step],
) -> Any:
    """Drift report of the new orders; returns every order id present (None on failure)."""
    from eta_cli import lake
    from eta_cli.monitor import drift

    tick = time.perf_counter()
    try:
        champion = _champion_version(settings)
        after = champion_window_end(settings, champion) if champion else None
        frame, all_ids = new_orders(settings, after)
    except lake.NoOrdersError:
        record(Step("drift", "skipped", time.perf_counter() - tick, "no ingested orders yet"))
        return None
    except Exception as exc:  # logged as a failed step
        record(Step("drift", "failed", time.perf_counter() - tick, _log_line(exc)))
        return None
    result.new_orders = len(frame)
    since = f"after champion v{champion}'s data (orders to {after})" if after else None
    if champion is None:
        record(
            Step(
                "drift",
                "skipped",
                time.perf_counter() - tick,
                f"new_orders={len(frame)} no champion model yet",
                {"no_champion": True},
            )
        )
        return all_ids
    if frame.empty:
        detail = "no new orders since last run" + (f" ({since})" if since else "")
        record(Step("drift", "skipped", time.perf_counter() - tick, detail))
        return all_ids
    try:
        report = drift.drift_report(
            settings,
            drift.DriftRequest(
                current=frame,
                current_label=f"{len(frame):,} orders "
                + (since or "new since the previous pipeline run"),
                sample_rows=sample_rows,
                upload_s3=upload_s3,
                alert_webhook=alert_webhook,
            ),
        )
    except Exception as exc:  # logged as a failed step
        record(Step("drift", "failed", time.perf_counter() - tick, _log_line(exc)))
        return None
    result.dataset_drift = report.dataset_drift
    record(
        Step(
            "drift",
            "failed" if report.errors else "ok",
            time.perf_counter() - tick,
            _drift_detail(len(frame), champion, report),
            {"report": report.to_dict()},
        )
    )
    return all_ids


def _drift_detail(new: int, champion: str, report: Any) -> str:
    """The drift step's log line: verdict, where the report is, and what went wrong."""
    problems = list(report.errors)
    if report.alert and not report.alert.get("sent"):
        problems.append(f"alert not delivered: {report.alert.get('error')}")
    detail = (
        f"new_orders={new} champion=v{champion} dataset_drift={report.dataset_drift} "
        f"drifted={report.drifted_columns}/{report.total_columns} "
        f"share={report.drift_share:.2f} report={report.html_uri or report.html_path}"
    )
    if problems:
        detail += " problems=" + "; ".join(problems)
    return detail


def _should_train(
    result: PipelineResult, policy: str, champion_missing: bool, has_orders: bool
) -> tuple[bool, str]:
    if policy == "never":
        return False, "--retrain never"
    if champion_missing:
        if not has_orders:
            return False, "no champion and no orders to train on"
        return True, "no champion yet: training the first model"
    if policy == "always":
        return True, "--retrain always"
    if result.dataset_drift:
        return True, "dataset drift detected"
    drift_step = result.step("drift")
    if drift_step is not None and drift_step.status == "failed":
        return False, "drift report failed: not retraining blind"
    return False, "no dataset drift"


def _train_step(
    settings: Settings,
    should: bool,
    why: str,
    trials: int,
    max_rounds: int | None,
    record: Callable[[Step], Step],
) -> str | None:
    tick = time.perf_counter()
    if not should:
        record(Step("train", "skipped", 0.0, why))
        return None
    from eta_cli import train

    kwargs: dict[str, Any] = {"trials": trials}
    if max_rounds is not None:
        kwargs["max_rounds"] = max_rounds
    try:
        trained = train.train(settings, **kwargs)
    except Exception as exc:  # logged as a failed step
        record(Step("train", "failed", time.perf_counter() - tick, _log_line(exc)))
        return None
    metrics = trained.metrics
    record(
        Step(
            "train",
            "ok",
            time.perf_counter() - tick,
            f"reason={why!r} run_id={trained.run_id} rows={trained.rows.get('train', '?')} "
            f"test_mae={metrics.get('mae', float('nan')):.1f}",
            {"run_id": trained.run_id, "metrics": metrics, "rows": trained.rows},
        )
    )
    return trained.run_id


def _register_step(
    settings: Settings, run_id: str, result: PipelineResult, record: Callable[[Step], Step]
) -> None:
    from eta_cli import registration

    tick = time.perf_counter()
    try:
        registered = registration.register(settings, run_id=run_id)
    except Exception as exc:  # logged as a failed step
        record(Step("register", "failed", time.perf_counter() - tick, _log_line(exc)))
        return
    result.promoted = registered.action in (registration.CHAMPION, "promoted")
    record(
        Step(
            "register",
            "ok",
            time.perf_counter() - tick,
            f"version={registered.version} action={registered.action} reason={registered.reason!r}",
            {"register": registered.to_dict()},
        )
    )


def _exit_code(result: PipelineResult) -> int:
    if any(s.status == "failed" for s in result.steps):
        return EXIT_STEP_FAILED
    if result.live_promoted:  # a new champion, whatever drift did afterwards
        return EXIT_DRIFT_PROMOTED
    if result.dataset_drift:
        if not result.retrained:
            return EXIT_DRIFT_NOT_RETRAINED
        return EXIT_DRIFT_PROMOTED if result.promoted else EXIT_DRIFT_NOT_PROMOTED
    return EXIT_OK


def _append_run(settings: Settings, result: PipelineResult) -> None:
    """One JSON line per run in ETA_HOME/pipeline/runs.jsonl, for later questions."""
    with (
        contextlib.suppress(OSError),
        open(_state_dir(settings) / RUNS_LOG, "a", encoding="utf-8") as handle,
    ):
        handle.write(json.dumps(result.to_dict(), default=str) + "\n")
