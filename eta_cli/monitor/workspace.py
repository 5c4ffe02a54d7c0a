"""The Evidently workspace: drift over time and live quality, on Evidently's own UI.

Every drift report (and every live evaluation of ``eta evaluate``) is also added as a
run of an Evidently project named after the model, in a local workspace folder
(``settings.effective_workspace``: ``ETA_HOME/workspace``, or ``ETA_WORKSPACE``, on the
compose stack the volume the ``evidently-ui`` service shares). ``eta ui`` serves it.
The HTML/JSON files and the monitoring-database rows of a report do not change.

What a run holds, and why:

- a drift run is the report's own Evidently snapshot (so the UI opens the same report),
  stamped with the report's time (the x axis matches Grafana's ``created_at``), tags
  (``drift-report``, ``model-v<version>``, ``current-<source>``, ``drift`` or
  ``no-drift``) and metadata (report id, sources, files). Three figures Evidently does
  not compute are added from a one-row dataset: the orders compared (before sampling),
  the reference's orders and the drift-share threshold, so the dashboard can draw the
  threshold as a line and the orders per report as bars;
- an evaluation run is a small Evidently report over one row per model version (MAE,
  lateness, orders), grouped by version, so each version gets its own line.

No order is stored unless asked (``include_data`` or ``ETA_WORKSPACE_INCLUDE_DATA``):
by default a run holds the figures and Evidently's plots only.

Writes are atomic (a temporary file renamed into place, then touched so a running UI's
file watcher reloads it), and project creation is serialised by a lock file, so two
reports at once never make two projects or leave a half-written run for the UI to
choke on. The dashboard is rebuilt from :func:`dashboard_panels` on every run: our
panels have fixed ids and are replaced in place, panels a user added are kept.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli.errors import EtaError, first_line
from eta_cli.monitor.result import CURRENT_ORDERS, CURRENT_PREDICTIONS, PREDICTION_COLUMN

if TYPE_CHECKING:
    from eta_cli.config import Settings
    from eta_cli.monitor.result import DriftRequest, DriftResult

DRIFT_TAG = "drift-report"
EVALUATION_TAG = "evaluation"
DRIFT_TAB = "Drift"
QUALITY_TAB = "Live quality"
#: The inputs an ETA model leans on most: their drift is drawn one line each.
KEY_FEATURES: tuple[str, ...] = (
    "estimated_store_to_consumer_driving_duration",
    "total_outstanding_orders",
    "total_busy_dashers",
    "total_onshift_dashers",
    "subtotal",
    "total_items",
    "order_hour",
    "market_id",
)
#: Columns of the one-row dataset added to each drift run (figures Evidently lacks).
CURRENT_ORDERS_COLUMN = "current_orders"
REFERENCE_ORDERS_COLUMN = "reference_orders"
THRESHOLD_COLUMN = "drift_share_threshold"
#: Columns of an evaluation run's dataset (one row per model version).
VERSION_COLUMN = "model_version"
MAE_COLUMN = "mae_s"
LATENESS_COLUMN = "lateness_rate"
ORDERS_COLUMN = "orders"
LOCK_FILE = ".eta-workspace.lock"
LOCK_TIMEOUT_S = 30.0
_PANEL_NAMESPACE = uuid.UUID("5d1f6f0e-2b0c-4a53-9a51-7e7a0c3e1f15")


class WorkspaceError(EtaError):
    """The workspace cannot be read or written, or a run's figures are invalid."""


@dataclass(frozen=True)
class RunRef:
    """Where a run went: its project, its id and its page on the UI (path after the host)."""

    project_id: str
    run_id: str
    path: str

    @property
    def url_path(self) -> str:
        return f"/projects/{self.project_id}/reports/{self.run_id}"


@dataclass(frozen=True)
class VersionQuality:
    """Live quality of one model version over the evaluated orders (``eta evaluate``)."""

    model_version: str
    orders: int
    mae_s: float
    lateness_rate: float


# --------------------------------------------------------------------------- public API


def add_drift_run(
    settings: Settings,
    result: DriftResult,
    snapshot: Any,
    request: DriftRequest | None = None,
) -> RunRef:
    """Add a finished drift report as a run of the model's project; the dashboard is kept.

    ``snapshot`` is the report's Evidently run; ``request`` says where the current data
    came from (a tag) and whether to keep the compared orders (``include_data``).
    """
    from evidently.core.report import Snapshot

    model = snapshot.to_snapshot_model()
    extra = _figures_snapshot(
        {
            CURRENT_ORDERS_COLUMN: float(result.current_rows),
            REFERENCE_ORDERS_COLUMN: float(result.reference_rows),
            THRESHOLD_COLUMN: float(result.threshold),
        }
    )
    _merge(model, extra)
    model.timestamp = _naive_utc(result.created_at)
    model.tags = drift_tags(result, request)
    model.metadata = drift_metadata(result)
    model.name = f"drift {result.created_at:%Y-%m-%d %H:%M:%S} UTC"
    include = settings.workspace_include_data
    if request is not None and request.include_data is not None:
        include = request.include_data
    data = snapshot.context._input_data if include else None  # Evidently's own add_run reads it
    return _add_run(settings, result.model_name, Snapshot.load_model(model), data)


def add_evaluation_run(
    settings: Settings,
    figures: Sequence[VersionQuality],
    *,
    model_name: str | None = None,
    created_at: datetime | None = None,
    source: str = "",
) -> RunRef:
    """Add one live evaluation (MAE and lateness per model version) as a run.

    ``figures`` has one :class:`VersionQuality` per version evaluated; ``created_at``
    (default now) is the run's point on the time axis; ``source`` a short description of
    the evaluated orders (kept as metadata). Invalid figures raise :class:`WorkspaceError`
    naming the field. The dashboard's live-quality panels draw one line per version.
    """
    frame = evaluation_frame(figures)
    created = created_at or datetime.now(UTC)
    snapshot = _evaluation_snapshot(frame)
    model = snapshot.to_snapshot_model()
    model.timestamp = _naive_utc(created)
    versions = [str(v) for v in frame[VERSION_COLUMN]]
    model.tags = [EVALUATION_TAG, *(f"model-v{v}" for v in versions)]
    model.metadata = {
        "kind": "evaluation",
        "created_at": _iso(created),
        "model_name": model_name or settings.model_name,
        "model_versions": ",".join(versions),
        "source": _safe(source),
    }
    model.name = f"evaluation {created:%Y-%m-%d %H:%M:%S} UTC"
    from evidently.core.report import Snapshot

    return _add_run(settings, model_name, Snapshot.load_model(model), None)


def evaluation_frame(figures: Sequence[VersionQuality]) -> Any:
    """The evaluation run's dataset, checked: one row per version, finite figures."""
    import pandas as pd

    if not figures:
        raise WorkspaceError("an evaluation run needs the figures of at least one model version")
    rows = []
    seen: set[str] = set()
    for item in figures:
        version = str(item.model_version).strip()
        if not version or version in seen:
            raise WorkspaceError(
                f"model_version {item.model_version!r}: must be a non-empty version, once per run"
            )
        seen.add(version)
        checks = (
            (ORDERS_COLUMN, item.orders, 1, None),
            (MAE_COLUMN, item.mae_s, 0, None),
            (LATENESS_COLUMN, item.lateness_rate, 0, 1),
        )
        for name, value, low, high in checks:
            number = float(value) if isinstance(value, int | float) else math.nan
            if not math.isfinite(number) or number < low or (high is not None and number > high):
                allowed = f"a number >= {low}" + (f" and <= {high}" if high is not None else "")
                raise WorkspaceError(
                    f"{name} of version {version} is {value!r}; allowed: {allowed}"
                )
        rows.append(
            {
                VERSION_COLUMN: version,
                MAE_COLUMN: float(item.mae_s),
                LATENESS_COLUMN: float(item.lateness_rate),
                ORDERS_COLUMN: float(item.orders),
            }
        )
    return pd.DataFrame(rows)


def project_name(settings: Settings, model_name: str | None = None) -> str:
    """The project of a model: named after it (``ETA_MODEL_NAME``)."""
    return model_name or settings.model_name


@dataclass(frozen=True)
class ProjectInfo:
    """What ``eta ui`` shows before it starts: the project and how many runs it has."""

    workspace: Path
    project_id: str
    name: str
    runs: int


def find_project(settings: Settings, model_name: str | None = None) -> ProjectInfo | None:
    """The model's project in the workspace and its run count, or None when there is none.

    Read straight from the folder (no Evidently import), so ``eta ui`` can refuse a
    missing or empty workspace at once.
    """
    root = Path(settings.effective_workspace)
    name = project_name(settings, model_name)
    if not root.is_dir():
        return None
    for metadata in sorted(root.glob("*/metadata.json")):
        try:
            project = json.loads(metadata.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(project, dict) and project.get("name") == name:
            runs = len(run_files(metadata.parent))
            return ProjectInfo(root, str(project.get("id")), name, runs)
    return None


_RUN_FILE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json")


def run_files(project_dir: Path) -> list[Path]:
    """The run files of a project folder, as Evidently lists them (``<uuid>.json`` only:
    a run's dataset links sit beside it as ``<uuid>.links.json``)."""
    folder = project_dir / "snapshots"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _RUN_FILE.fullmatch(p.name))


# --------------------------------------------------------------------------- dashboard


def dashboard_panels() -> list[tuple[str, Any]]:
    """(tab, panel) of every panel eta maintains; ids are fixed by the title.

    Each tab's panels are one literal list, read top to bottom like the page it draws.
    """
    panels = _drift_panels() + _quality_panels()
    for _tab, panel in panels:
        panel.id = uuid.uuid5(_PANEL_NAMESPACE, panel.title)
    return panels


def _drift_panels() -> list[tuple[str, Any]]:
    """The drift tab: drifted share against the threshold, the median prediction's drift,
    drift per key feature and the orders behind each report."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    def drift(metric: str, legend: str, **labels: str) -> Any:
        return PanelMetric(legend=legend, tags=[DRIFT_TAG], metric=metric, metric_labels=labels)

    return [
        (
            DRIFT_TAB,
            line_plot_panel(
                "Share of drifted columns",
                [
                    drift("DriftedColumnsCount", "drifted share", value_type="share"),
                    drift(
                        "MeanValue",
                        "threshold (dataset drift at or above)",
                        column=THRESHOLD_COLUMN,
                    ),
                ],
                "Per report: share of the compared input columns whose drift test failed.",
                size="half",
            ),
        ),
        (
            DRIFT_TAB,
            line_plot_panel(
                "Drift of the median prediction",
                [drift("ValueDrift", "{{column}}: {{method}}", column=PREDICTION_COLUMN)],
                "Drift score of eta_p50_s against the reference (drifted above the "
                "threshold for distances, below it for p-values).",
                size="half",
            ),
        ),
        (
            DRIFT_TAB,
            line_plot_panel(
                "Drift score per key feature",
                [drift("ValueDrift", "{{column}}", column=c) for c in KEY_FEATURES],
                "Evidently's drift score of each key input (the method is in each report).",
            ),
        ),
        (
            DRIFT_TAB,
            bar_plot_panel(
                "Orders per report",
                [drift("MeanValue", "orders compared", column=CURRENT_ORDERS_COLUMN)],
                "Current orders in each report, before sampling.",
            ),
        ),
    ]


def _quality_panels() -> list[tuple[str, Any]]:
    """The live-quality tab: MAE, lateness and orders evaluated, one line per model version."""
    from evidently.metrics import MeanValue
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    def by_version(column: str) -> Any:
        # GroupBy results carry the grouped metric's own parameters as text: match them.
        grouped = str(MeanValue(column=column).dict(exclude_none=True))
        return PanelMetric(
            legend="v{{label}}",
            tags=[EVALUATION_TAG],
            metric="GroupByMetric",
            metric_labels={"metric": grouped, "column_name": VERSION_COLUMN},
        )

    return [
        (
            QUALITY_TAB,
            line_plot_panel(
                "Live MAE per model version (s)",
                [by_version(MAE_COLUMN)],
                "Mean absolute error of the median ETA on delivered orders (eta evaluate); "
                "empty until outcomes are known.",
                size="half",
            ),
        ),
        (
            QUALITY_TAB,
            line_plot_panel(
                "Lateness per model version",
                [by_version(LATENESS_COLUMN)],
                "Share of delivered orders later than the quoted ETA (eta evaluate); "
                "empty until outcomes are known.",
                size="half",
            ),
        ),
        (
            QUALITY_TAB,
            bar_plot_panel(
                "Orders evaluated per model version",
                [by_version(ORDERS_COLUMN)],
                "Delivered orders each version was scored on.",
            ),
        ),
    ]


def desired_dashboard(current: Any) -> Any:
    """``current`` with eta's tabs and panels as :func:`dashboard_panels` says; others kept."""
    from evidently.sdk.models import DashboardModel, DashboardTabModel

    ours = dashboard_panels()
    our_ids = {panel.id for _tab, panel in ours}
    tabs: dict[str, Any] = {}
    for title in (DRIFT_TAB, QUALITY_TAB):
        tab_id = uuid.uuid5(_PANEL_NAMESPACE, f"tab:{title}")
        tabs[title] = DashboardTabModel(id=tab_id, title=title, panels=[])
    for tab, panel in ours:
        tabs[tab].panels.append(panel.id)
    others = [t for t in current.tabs if t.id not in {t.id for t in tabs.values()}]
    for tab in others:
        tab.panels = [p for p in tab.panels if p not in our_ids]
    kept = [p for p in current.panels if p.id not in our_ids]
    return DashboardModel(tabs=[*tabs.values(), *others], panels=[*(p for _t, p in ours), *kept])


# --------------------------------------------------------------------------- internals


def drift_tags(result: DriftResult, request: DriftRequest | None) -> list[str]:
    """Short tags to filter runs by: kind, model version, current data's source, verdict."""
    current = None if request is None else request.current
    if current is None or (isinstance(current, str) and current == CURRENT_ORDERS):
        source = "orders"
    elif isinstance(current, str) and current == CURRENT_PREDICTIONS:
        source = "predictions"
    elif isinstance(current, str):
        source = "file"
    else:
        source = "batch"  # a frame handed over by the caller (eta pipeline's new orders)
    return [
        DRIFT_TAG,
        f"model-v{result.model_version or 'unknown'}",
        f"current-{source}",
        "drift" if result.dataset_drift else "no-drift",
    ]


def drift_metadata(result: DriftResult) -> dict[str, str]:
    """The report's identity and headline figures as text (Evidently's metadata is text)."""
    values = {
        "kind": "drift-report",
        "report_id": "" if result.report_id is None else str(result.report_id),
        "created_at": _iso(result.created_at),
        "model_name": result.model_name or "",
        "model_version": result.model_version or "",
        "current_source": result.current_source,
        "reference_source": result.reference_source,
        "dataset_drift": str(result.dataset_drift).lower(),
        "drift_share": repr(result.drift_share),
        "threshold": repr(result.threshold),
        "html": result.html_uri or result.html_path or "",
    }
    return {key: _safe(value) for key, value in values.items()}


def _safe(value: str) -> str:
    """Text bound for the UI: a URL's password redacted, length bounded."""
    from eta_cli.config import redact_url

    return redact_url(str(value))[:500]


def _iso(moment: datetime) -> str:
    return _naive_utc(moment).isoformat() + "Z"


def _naive_utc(moment: datetime) -> datetime:
    """UTC without tzinfo: Evidently compares run times with naive ones of its own."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _figures_snapshot(values: dict[str, float]) -> Any:
    """An Evidently run over one row of named figures (one MeanValue each)."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    frame = pd.DataFrame([values])
    definition = DataDefinition(numerical_columns=list(values))
    report = Report([MeanValue(column=name) for name in values])
    return report.run(Dataset.from_pandas(frame, data_definition=definition), None)


def _evaluation_snapshot(frame: Any) -> Any:
    """MAE, lateness and orders per version: an Evidently run grouped by version."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue
    from evidently.metrics.group_by import GroupBy

    figures = [MAE_COLUMN, LATENESS_COLUMN, ORDERS_COLUMN]
    definition = DataDefinition(numerical_columns=figures, categorical_columns=[VERSION_COLUMN])
    report = Report([GroupBy(MeanValue(column=c), VERSION_COLUMN) for c in figures])
    return report.run(Dataset.from_pandas(frame, data_definition=definition), None)


def _merge(model: Any, extra: Any) -> None:
    """Append another run's results and widgets to a snapshot model (ids are fingerprints)."""
    more = extra.to_snapshot_model()
    model.metric_results.update(more.metric_results)
    model.top_level_metrics = [*model.top_level_metrics, *more.top_level_metrics]
    model.widgets = [*model.widgets, *more.widgets]


def _add_run(settings: Settings, model_name: str | None, snapshot: Any, data: Any) -> RunRef:
    """Write ``snapshot`` into the project (made and its dashboard kept on the way)."""
    from evidently.legacy.utils import NumpyEncoder

    root = Path(settings.effective_workspace)
    try:
        with _locked(root):
            workspace, project_id = _project(root, project_name(settings, model_name))
            run_id = str(uuid.uuid4())
            path = root / project_id / "snapshots" / f"{run_id}.json"
            text = json.dumps(snapshot.to_snapshot_model().dict(), cls=NumpyEncoder)
            _write_atomic(path, text)
            if data is not None:
                _add_data(workspace, project_id, run_id, snapshot, data)
    except WorkspaceError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise WorkspaceError(f"Evidently workspace {root}: {first_line(exc)}") from exc
    return RunRef(project_id, run_id, str(path))


def _project(root: Path, name: str) -> tuple[Any, str]:
    """The workspace and the id of the project called ``name`` (created once), dashboard kept."""
    from evidently.legacy.utils import NumpyEncoder
    from evidently.sdk.models import ProjectModel
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(root))
    found = [p for p in workspace.list_projects() if p is not None and p.name == name]
    if found:
        project_id = str(sorted(found, key=lambda p: str(p.id))[0].id)
    else:
        model = ProjectModel(name=name, description=f"eta: drift and live quality of {name}")
        project_id = str(model.id)
        (root / project_id / "snapshots").mkdir(parents=True, exist_ok=True)
        _write_atomic(
            root / project_id / "metadata.json",
            json.dumps(model.dict(), cls=NumpyEncoder, indent=2),
        )
    current = workspace.get_dashboard(uuid.UUID(project_id))
    wanted = desired_dashboard(current)
    if json.dumps(wanted.dict(), cls=NumpyEncoder) != json.dumps(current.dict(), cls=NumpyEncoder):
        _write_atomic(
            root / project_id / "dashboard.json", json.dumps(wanted.dict(), cls=NumpyEncoder)
        )
    return workspace, project_id


def _add_data(workspace: Any, project_id: str, run_id: str, snapshot: Any, data: Any) -> None:
    """The compared orders as the run's datasets, linked to it (``include_data``)."""
    from evidently.sdk.models import SnapshotLink

    current, reference = data
    name = snapshot.get_name() or f"run-{run_id}"
    for dataset, subtype, label in (
        (current, "current", name),
        (reference, "reference", f"{name}: reference"),
    ):
        if dataset is None:
            continue
        workspace.add_dataset(
            project_id,
            dataset,
            label,
            None,
            link=SnapshotLink(
                snapshot_id=uuid.UUID(run_id), dataset_type="output", dataset_subtype=subtype
            ),
        )


def _write_atomic(path: Path, text: str) -> None:
    """Write beside, rename into place, touch: never a half-written file, and the UI sees it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from a UI run as another user
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    os.utime(path)  # a rename is not seen by Evidently's watcher; a touch is


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One writer at a time per workspace (waits up to :data:`LOCK_TIMEOUT_S`)."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+", encoding="utf-8") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WorkspaceError(
                        f"Evidently workspace {root} is locked by another eta process for "
                        f"over {LOCK_TIMEOUT_S:.0f} s ({root / LOCK_FILE})"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
