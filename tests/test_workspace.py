"""The Evidently workspace and ``eta ui``: runs, dashboard, Grafana parity, a real browser.

One module fixture makes the data every test reads: a real PostgreSQL monitoring
database and two real drift reports into one workspace, on a stable batch and then a
drifted one (small synthetic orders, the fake champion of the other drift tests).
The browser test starts the real ``eta ui`` and loads the project's dashboard in
Debian's headless Chromium; its screenshot is kept under the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import _admin_connection, free_port
from helpers_model import fake_loaded

from eta_cli import synthetic
from eta_cli.config import ConfigError, Settings, load_settings
from eta_cli.monitor import database, drift, workspace

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A stable then a drifted report (the second keeps its orders) in one workspace."""
    tmp = tmp_path_factory.mktemp("workspace")
    name = f"eta_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_connection()
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    try:
        settings = load_settings(
            overrides={"home": str(tmp / "home"), "database_url": url}, environ={}
        )
        ref, stable, drifted = (tmp / f"{n}.parquet" for n in ("ref", "stable", "drifted"))
        synthetic.generate_orders(1500, seed=0).to_parquet(ref)
        synthetic.generate_orders(1200, seed=5).to_parquet(stable)
        synthetic.generate_orders(1200, seed=1, drift=True).to_parquet(drifted)
        model = fake_loaded()
        results = [
            drift.drift_report(settings, reference=str(ref), current=str(stable), model=model),
            drift.drift_report(
                settings, reference=str(ref), current=str(drifted), model=model, include_data=True
            ),
        ]
        yield {"settings": settings, "results": results, "tmp": tmp, "url": url}
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _project_dir(settings: Settings) -> Path:
    info = workspace.find_project(settings)
    assert info is not None
    return info.workspace / info.project_id


def _runs(settings: Settings) -> list[dict[str, Any]]:
    runs = [json.loads(p.read_text()) for p in workspace.run_files(_project_dir(settings))]
    return sorted(runs, key=lambda r: r["timestamp"])


def _values(run: dict[str, Any], metric: str, /, **labels: str) -> list[float]:
    """Every stored value of ``metric`` whose parameters include ``labels`` (as the UI reads)."""
    out = []
    for result in run["metric_results"].values():
        items = [result.get(k) for k in ("count", "share")] if "share" in result else [result]
        for item in items:
            location = item["metric_value_location"]
            params = {k: str(v) for k, v in location["metric"]["params"].items()}
            params.update({k: str(v) for k, v in location["param"].items()})
            if params["type"].endswith(f":{metric}") and labels.items() <= params.items():
                out.append(float(item["value"]))
    return out


# ---------------------------------------------------------------- runs and dashboard


def test_each_report_is_a_tagged_run_and_keeps_orders_only_when_asked(
    reports: dict[str, Any],
) -> None:
    settings, (stable, drifted) = reports["settings"], reports["results"]
    assert not stable.errors and not drifted.errors
    assert not stable.dataset_drift and drifted.dataset_drift
    info = workspace.find_project(settings)
    assert info and info.name == "eta" and info.runs == 2
    runs = _runs(settings)
    for run, result in zip(runs, (stable, drifted), strict=True):
        assert run["tags"] == [
            "drift-report",
            "model-v1",
            "current-file",
            "drift" if result.dataset_drift else "no-drift",
        ]
        meta = run["metadata"]
        assert meta["report_id"] == str(result.report_id)
        assert meta["current_source"] == result.current_source
        assert meta["html"] == result.html_path
        assert run["timestamp"].startswith(result.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
        assert _values(run, "MeanValue", column="current_orders") == [result.current_rows]
        assert _values(run, "MeanValue", column="drift_share_threshold") == [result.threshold]
        summary = json.loads(Path(result.json_path).read_text())
        assert Path(summary["files"]["workspace_run"]).is_file()
    # Orders: none for the default run, both sides for the one that asked.
    datasets = json.dumps(
        [json.loads(p.read_text()) for p in (info.workspace).rglob("*.json") if "dataset" in str(p)]
    )
    assert runs[0]["name"] not in datasets
    assert runs[1]["name"] in datasets and f"{runs[1]['name']}: reference" in datasets
    # Every file is complete JSON (written aside, then renamed) and readable by another user.
    for path in _project_dir(settings).rglob("*.json"):
        json.loads(path.read_text())
        assert path.stat().st_mode & 0o044 == 0o044, path
    assert not list(_project_dir(settings).rglob("*.part"))


def test_dashboard_is_maintained_idempotently_and_keeps_a_users_panel(
    reports: dict[str, Any],
) -> None:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel
    from evidently.ui.workspace import Workspace

    settings = reports["settings"]
    info = workspace.find_project(settings)
    assert info is not None
    board = json.loads((_project_dir(settings) / "dashboard.json").read_text())
    titles = [p["title"] for p in board["panels"]]
    assert titles == [p.title for _tab, p in workspace.dashboard_panels()]
    assert [t["title"] for t in board["tabs"]] == ["Drift", "Live quality"]
    ours = {p["id"] for p in board["panels"]}

    ws = Workspace(str(info.workspace))
    mine = line_plot_panel("my panel", [PanelMetric(metric="RowCount")])
    ws.get_project(info.project_id).dashboard.add_panel(mine, tab="Mine")
    workspace.add_evaluation_run(
        settings, [workspace.VersionQuality("1", 120, 410.0, 0.2)], source="test"
    )
    after = json.loads((_project_dir(settings) / "dashboard.json").read_text())
    assert {p["id"] for p in after["panels"]} == ours | {str(mine.id)}
    assert [t["title"] for t in after["tabs"]] == ["Drift", "Live quality", "Mine"]
    assert len(after["panels"]) == len(board["panels"]) + 1  # nothing duplicated
    # The evaluation run is one more run, not a second project.
    assert [p.name for p in ws.list_projects()] == ["eta"]
    # Remove the evaluation again: the browser test expects the two drift runs only.
    evaluation = [r for r in _runs(settings) if "evaluation" in r["tags"]]
    assert len(evaluation) == 1
    for path in workspace.run_files(_project_dir(settings)):
        if "evaluation" in json.loads(path.read_text())["tags"]:
            path.unlink()
    ws.get_project(info.project_id).dashboard.delete_tab("Mine")


def test_evaluation_runs_hold_mae_and_lateness_per_version(tmp_path: Path) -> None:
    settings = load_settings(overrides={"home": str(tmp_path / "home")})
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    ref = workspace.add_evaluation_run(
        settings,
        [
            workspace.VersionQuality("3", 400, 512.5, 0.31),
            workspace.VersionQuality("4", 100, 480.0, 0.22),
        ],
        created_at=when,
        source="orders delivered 2026-02-28",
    )
    run = json.loads(Path(ref.path).read_text())
    assert run["tags"] == ["evaluation", "model-v3", "model-v4"]
    assert run["timestamp"].startswith("2026-03-01T12:00:00")
    # As the dashboard's panels select them: grouped metric and version label.
    for panel_title, expected in (
        ("Live MAE per model version (s)", {"3": 512.5, "4": 480.0}),
        ("Lateness per model version", {"3": 0.31, "4": 0.22}),
        ("Orders evaluated per model version", {"3": 400.0, "4": 100.0}),
    ):
        (panel,) = [p for _t, p in workspace.dashboard_panels() if p.title == panel_title]
        (wanted,) = panel.values
        got = {
            version: _values(run, "GroupByMetric", **wanted.metric_labels, label=version)
            for version in expected
        }
        assert got == {v: [x] for v, x in expected.items()}, panel_title
    for bad, field in (
        (workspace.VersionQuality("3", 0, 500.0, 0.2), "orders"),
        (workspace.VersionQuality("3", 10, float("nan"), 0.2), "mae_s"),
        (workspace.VersionQuality("3", 10, 500.0, 1.5), "lateness_rate"),
        (workspace.VersionQuality("", 10, 500.0, 0.5), "model_version"),
    ):
        with pytest.raises(workspace.WorkspaceError, match=field):
            workspace.add_evaluation_run(settings, [bad])
    with pytest.raises(workspace.WorkspaceError, match="at least one"):
        workspace.add_evaluation_run(settings, [])


def test_a_workspace_uri_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a folder path"):
        load_settings(environ={"ETA_WORKSPACE": "s3://bucket/ws"})


def test_a_workspace_that_cannot_be_written_is_a_delivery_error(
    settings: Settings, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    broken = settings.replace(workspace=str(blocker / "ws"))
    ref, cur = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    synthetic.generate_orders(400, seed=0).to_parquet(ref)
    synthetic.generate_orders(300, seed=1).to_parquet(cur)
    result = drift.drift_report(broken, reference=str(ref), current=str(cur), model=fake_loaded())
    assert result.exit_code == drift.EXIT_DELIVERY
    assert any("workspace" in e.lower() and str(blocker) in e for e in result.errors)
    assert Path(result.html_path).is_file() and Path(result.json_path).is_file()


# ---------------------------------------------------------------- Grafana parity


@pytest.mark.postgres
def test_grafana_and_evidently_show_the_same_drift_share(reports: dict[str, Any]) -> None:
    """The Grafana panel's own SQL on the monitoring database = the workspace runs' share."""
    from test_grafana import _dashboard, expand, queries

    settings = reports["settings"]
    (sql,) = [
        s for name, s, _ in queries(_dashboard()) if name == "Share of drifted columns over time"
    ]
    now = datetime.now(UTC)
    engine = database.make_engine(reports["url"])
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(expand(sql, now - timedelta(days=1), now, {})).fetchall()
    finally:
        engine.dispose()
    grafana = [(row[0].astimezone(UTC).replace(tzinfo=None), float(row[1])) for row in rows]
    evidently = [
        (
            datetime.fromisoformat(run["timestamp"]),
            *_values(run, "DriftedColumnsCount", value_type="share"),
        )
        for run in _runs(settings)
        if "drift-report" in run["tags"]
    ]
    assert len(grafana) == len(evidently) == 2
    for (g_time, g_share), (e_time, e_share) in zip(grafana, evidently, strict=True):
        assert g_time == e_time
        assert g_share == pytest.approx(e_share, abs=1e-12)
    assert evidently[0][1] < settings.drift_share_threshold <= evidently[1][1]


# ---------------------------------------------------------------- eta ui


def test_eta_ui_refuses_an_empty_workspace(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))}
    env["ETA_HOME"] = str(tmp_path / "empty")
    done = subprocess.run(
        [sys.executable, "-m", "eta_cli", "ui", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "eta drift-report" in done.stderr and "Traceback" not in done.stderr
    assert str(tmp_path / "empty" / "workspace") in done.stderr


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make system-deps`)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Network off but for the UI on loopback: no name resolves, any proxied request dies.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=20000",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=180, check=False
    )


def _panel(dom: str, title: str, following: str | None) -> str:
    start = dom.index(f">{title}<")
    return dom[start : dom.index(f">{following}<", start)] if following else dom[start:]


def _marks(panel: str, series: int) -> list[tuple[float, float]]:
    """(x, y) of the data points the chart drew for one series."""
    found = re.findall(
        r'<circle[^>]*cx="([\d.]+)"[^>]*cy="([\d.]+)"[^>]*MuiMarkElement-series-auto-generated-id-'
        + str(series)
        + r'"?[\s">]',
        panel,
    )
    return [(float(x), float(y)) for x, y in found]


@pytest.mark.slow
@pytest.mark.postgres
def test_eta_ui_dashboard_renders_both_reports_in_chromium(reports: dict[str, Any]) -> None:
    settings, tmp = reports["settings"], reports["tmp"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))}
    env.update(ETA_HOME=str(settings.home_path), ETA_DATABASE_URL=reports["url"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "eta_cli", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"Evidently UI: (http://127\.0\.0\.1:\d+/projects/[0-9a-f-]+)", line)
        assert match, f"no address printed: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        url = match.group(1)
        assert "mlflow ui --backend-store-uri" in (proc.stdout.readline() if proc.stdout else "")

        dom = _chromium(tmp / "chromium", "--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        page = dom.stdout
        titles = [p.title for _t, p in workspace.dashboard_panels()]
        for title in titles:
            assert f">{title}<" in page, title
        # Both runs are points on the time axis, at the reports' own times.
        stable, drifted = reports["results"]
        for result in (stable, drifted):
            assert result.created_at.strftime("%Y-%m-%d %H:%M:%S") in page
        share = _panel(page, titles[0], titles[1])
        points, threshold = _marks(share, 0), _marks(share, 1)
        assert len(points) == 2 and len(threshold) == 2, share[:3000]
        # SVG y grows downwards: stable below the threshold line, drifted above it.
        assert points[0][0] < points[1][0]
        assert points[0][1] > threshold[0][1] == threshold[1][1] > points[1][1]
        features = _panel(page, "Drift score per key feature", "Orders per report")
        for feature in workspace.KEY_FEATURES:
            assert f">{feature}<" in features
        assert len(_marks(features, 0)) == 2
        orders = _panel(page, "Orders per report", titles[4])
        assert "orders compared" in orders and orders.count("<rect") >= 2

        png = tmp / "eta-ui-dashboard.png"
        shot = _chromium(tmp / "chromium", f"--screenshot={png}", "--window-size=1400,1600", url)
        assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
        print(f"\nscreenshot of the dashboard: {png}")
        from PIL import Image

        with Image.open(png) as image:
            low, high = image.convert("L").getextrema()
        assert high - low > 100  # not a blank page
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
    assert "stopped" in (proc.stderr.read() if proc.stderr else "")
    time.sleep(0.5)
    import socket

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the UI still listens after Ctrl-C"


def test_eta_ui_refuses_a_busy_port_before_starting_anything(tmp_path: Path) -> None:
    import socket

    settings = load_settings(overrides={"home": str(tmp_path / "home")}, environ={})
    workspace.add_evaluation_run(settings, [workspace.VersionQuality("1", 10, 400.0, 0.1)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))}
    env["ETA_HOME"] = str(tmp_path / "home")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "eta_cli", "ui", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert f"--port {port}" in done.stderr and "Traceback" not in done.stderr
    assert "Evidently UI:" not in done.stdout
