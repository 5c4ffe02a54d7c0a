"""The Grafana provisioning and every SQL query of the dashboard, against real PostgreSQL.

Each query (panel targets, annotations, template variables) is expanded the way
Grafana's PostgreSQL data source expands its macros and variables, then run on a
fresh database whose schema comes from ``database.ensure_schema`` and whose rows
were written by the real writers: ``drift.drift_report`` and the service's
``PredictionLog``. A renamed column or a broken query fails here, not in Grafana.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import yaml
from helpers_model import fake_loaded, sample_orders

from eta_cli import synthetic
from eta_cli.config import Settings
from eta_cli.monitor import database, drift, evaluate

GRAFANA = Path(__file__).resolve().parent.parent / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "eta.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "postgres.yaml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "eta.yaml"
INTERVAL_S = 60  # what $__interval stands for in these tests

# Columns each query must return (by panel title / annotation name / variable name).
EXPECTED: dict[str, set[str]] = {
    "Latest drift share": {"time", "drift share"},
    "Dataset drift (latest report)": {"time", "dataset drift", "model version"},
    "Reports with dataset drift": {"with drift", "reports"},
    "Predictions served": {"predictions", "requests"},
    "Share of drifted columns over time": {"time", "drift share", "prediction (p50) drift score"},
    "Drift score per column": {"time", "metric", "value"},
    "Newest report: drift per column": {"column", "method", "score", "threshold", "verdict"},
    "Drift reports": {
        "time",
        "model",
        "rows",
        "sampled",
        "drifted",
        "share",
        "dataset drift",
        "MAE (s)",
        "report",
    },
    "Prediction volume": {"time", "metric", "value"},
    "Request latency": {"time", "p50", "p95", "p99", "max"},
    "Predicted ETA": {"time", "p10", "p50", "p90", "quoted"},
    "MAE of the median ETA": {"time", "MAE"},
    "Lateness and interval coverage": {"time", "late vs quoted ETA", "p10-p90 coverage"},
    "Live MAE per model version": {"time", "metric", "value"},
    "Champion vs challenger: live MAE difference": {
        "time",
        "challenger - champion",
        "CI low",
        "CI high",
    },
    "Live evaluations": {
        "time",
        "champion",
        "challenger",
        "joined orders",
        "paired orders",
        "difference (s)",
        "CI low (s)",
        "CI high (s)",
        "winner",
        "promoted",
    },
    "annotation Dataset drift": {"time", "text", "tags"},
    "variable column": {"column_name"},
    "variable model_version": {"model_version"},
}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, SQL, format) of every query: panel targets, annotations, variables."""
    found = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            found.append((panel["title"], target["rawSql"], target.get("format", "time_series")))
    for annotation in dashboard["annotations"]["list"]:
        if annotation.get("builtIn"):
            continue
        target = annotation["target"]
        found.append((f"annotation {annotation['name']}", target["rawSql"], "table"))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            sql = query if isinstance(query, str) else query["rawSql"]
            found.append((f"variable {variable['name']}", sql, "table"))
    return found


def expand(sql: str, start: datetime, end: datetime, variables: dict[str, str]) -> str:
    """Replace Grafana's macros and template variables as its PostgreSQL data source does."""
    frm, to = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (start, end))

    def interval(text: str) -> int:
        text = text.strip()
        if text in ("$__interval", "${__interval}"):
            return INTERVAL_S
        match = re.fullmatch(r"'?(\d+)([smhd])'?", text)
        assert match, f"unsupported interval {text!r}"
        return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]

    def group(match: re.Match[str], alias: bool) -> str:
        column, step = match[1].strip(), interval(match[2])
        expr = f"floor(extract(epoch from {column})/{step})*{step}"
        return f'{expr} AS "time"' if alias else expr

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),([^)]+)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^,]+),([^)]+)\)", lambda m: group(m, False), sql)
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1].strip()} BETWEEN '{frm}' AND '{to}'", sql
    )
    sql = sql.replace("$__timeFrom()", f"'{frm}'").replace("$__timeTo()", f"'{to}'")
    sql = sql.replace("$__interval_ms", str(INTERVAL_S * 1000))
    sql = sql.replace("$__interval", f"{INTERVAL_S}s")
    for name, value in variables.items():
        sql = sql.replace(f"${{{name}}}", value).replace(f"[[{name}]]", value)
        sql = re.sub(rf"\${name}\b", lambda _m, v=value: v, sql)
    leftover = re.findall(r"\$\{?\w+", sql)
    assert not leftover, f"unexpanded Grafana macro/variable {leftover} in:\n{sql}"
    return sql


# ---------------------------------------------------------------- static checks


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    source = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    dashboard = _dashboard()
    uid = {"type": source["type"], "uid": source["uid"]}
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    assert len(panels) >= 10
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == uid and target["rawQuery"] is True
            assert target["format"] in ("time_series", "table")
    names = {name for name, _, _ in queries(dashboard)}
    assert names == set(EXPECTED), "every query has expected columns in this test"
    # What the issue asks the dashboard to show.
    titles = " | ".join(p["title"] for p in panels).lower()
    for needed in ("drifted columns over time", "per column", "volume", "latency", "mae", "late"):
        assert needed in titles


def test_datasource_provisioning_takes_every_value_from_the_environment() -> None:
    text = DATASOURCE.read_text()
    config = yaml.safe_load(text)
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["uid"] == "eta-postgres"
    for key, value in (
        ("url", source["url"]),
        ("user", source["user"]),
        ("database", source["jsonData"]["database"]),
        ("sslmode", source["jsonData"]["sslmode"]),
        ("password", source["secureJsonData"]["password"]),
    ):
        assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", value), f"{key} must come from the environment"
    assert "password" not in source and "database" not in source  # Grafana 12 rejects these
    # Every variable used is documented in the file's header and set by the compose file.
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    used = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    assert used and all(variable in header for variable in used)
    compose = GRAFANA.parent / "compose.yaml"
    if compose.exists():
        grafana = yaml.safe_load(compose.read_text())["services"]["grafana"]
        assert used <= set(grafana["environment"]), "compose must set every variable"


def test_dashboard_provider_points_at_the_mounted_folder() -> None:
    (provider,) = yaml.safe_load(PROVIDER.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert _dashboard()["uid"] == "eta-monitoring"


def test_expand_replaces_macros_like_grafana() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = datetime(2026, 1, 2, tzinfo=UTC)
    sql = expand(
        "SELECT $__timeGroupAlias(t, $__interval), x FROM y WHERE $__timeFilter(t) "
        "AND v IN ($v) AND w IN (${v}) AND $__timeFrom() < $__timeTo()",
        start,
        end,
        {"v": "'a','b'"},
    )
    assert sql == (
        'SELECT floor(extract(epoch from t)/60)*60 AS "time", x FROM y WHERE t BETWEEN '
        "'2026-01-01T00:00:00Z' AND '2026-01-02T00:00:00Z' AND v IN ('a','b') AND "
        "w IN ('a','b') AND '2026-01-01T00:00:00Z' < '2026-01-02T00:00:00Z'"
    )


# ---------------------------------------------------------------- against PostgreSQL


@pytest.fixture
def filled_pg(pg_url: str, settings: Settings) -> dict[str, Any]:
    """Two real drift reports (stable, drifted) and a prediction log of two model versions."""
    from eta_cli.serve.prediction_log import LogEntry, PredictionLog

    pg_settings = settings.replace(database_url=pg_url)
    engine = database.make_engine(pg_url)
    database.ensure_schema(engine)
    engine.dispose()

    tmp = Path(settings.effective_reports_dir).parent
    tmp.mkdir(parents=True, exist_ok=True)
    ref, stable, drifted = tmp / "ref.parquet", tmp / "stable.parquet", tmp / "drifted.parquet"
    synthetic.generate_orders(3000, seed=0).to_parquet(ref)
    synthetic.generate_orders(1500, seed=0, start="2015-02-18", days=7).to_parquet(stable)
    synthetic.generate_orders(1500, seed=0, drift=True).to_parquet(drifted)
    model = fake_loaded()
    reports = [
        drift.drift_report(pg_settings, reference=str(ref), current=str(cur), model=model)
        for cur in (stable, drifted)
    ]

    log = PredictionLog(pg_url, capacity=10_000, flush_interval_s=0.05).start()
    orders = sample_orders(40, with_id=True)
    now = time.time()
    written = 0
    for i in range(8):
        batch = orders[i * 5 : (i + 1) * 5]
        values = np.tile([1500.0, 2400.0, 3600.0, 2900.0], (len(batch), 1)) + i
        log.submit(
            LogEntry(
                request_id=f"req-{i}",
                predicted_at=now - 600 * i,
                model_name="eta",
                model_version="1" if i % 2 else "2",
                latency_ms=5.0 + i,
                records=batch,
                order_ids=[o["order_id"] for o in batch],
                values=values,
            )
        )
        written += len(batch)
    shadow = orders[:5]  # a shadow challenger's predictions: logged, never counted as served
    log.submit(
        LogEntry(
            request_id="req-0",
            predicted_at=now,
            model_name="eta",
            model_version="3",
            latency_ms=900.0,
            records=shadow,
            order_ids=[o["order_id"] for o in shadow],
            values=np.tile([1.0, 2.0, 3.0, 2.5], (len(shadow), 1)),
            role="challenger",
        )
    )
    assert log.flush(30)
    log.close()
    assert log.stats()["written"] == written + len(shadow)
    live = _live_evaluation()
    evaluate.store_evaluation(pg_settings, live)
    return {"url": pg_url, "reports": reports, "predictions": written, "live": live}


def _live_evaluation() -> evaluate.Evaluation:
    """What one `eta evaluate` run stores: two models and their paired comparison."""
    now = datetime.now(UTC)
    result = evaluate.Evaluation("eta", now - timedelta(days=7), now, 80, 40)
    result.models = [
        evaluate.ModelQuality("2", "champion", 40, 420.0, 0.8, 0.25, 30.0),
        evaluate.ModelQuality("3", "challenger", 40, 380.0, 0.82, 0.2, -5.0),
    ]
    result.comparison = evaluate.PairedComparison(
        "challenger", 40, "2", "3", 420.0, 380.0, -40.0, -55.0, -22.0
    )
    return result


def _run(conn: sa.Connection, sql: str) -> tuple[list[str], list[tuple]]:
    result = conn.exec_driver_sql(sql)
    return list(result.keys()), [tuple(r) for r in result.fetchall()]


@pytest.mark.postgres
def test_every_dashboard_query_returns_the_stored_metrics(filled_pg: dict[str, Any]) -> None:
    dashboard = _dashboard()
    now = datetime.now(UTC)
    start, end = now - timedelta(days=7), now + timedelta(minutes=5)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    engine = sa.create_engine(filled_pg["url"])
    results: dict[str, tuple[list[str], list[tuple]]] = {}
    with engine.connect() as conn:
        # Variables first: their values feed the panels, as in Grafana.
        chosen: dict[str, str] = {}
        for name, variable in variables.items():
            columns, rows = _run(conn, expand(variable["query"], start, end, {}))
            assert rows, f"variable {name} has no values"
            results[f"variable {name}"] = (columns, rows)
            chosen[name] = ",".join("'" + str(r[0]).replace("'", "''") + "'" for r in rows)
        all_values = {name: v["allValue"] for name, v in variables.items()}
        for name, sql, fmt in queries(dashboard):
            if name.startswith("variable "):
                continue
            # Once with "All" selected (the default), once with every value picked.
            for values in (all_values, chosen):
                columns, rows = _run(conn, expand(sql, start, end, values))
                assert rows, f"{name}: no rows\n{sql}"
                assert set(columns) == EXPECTED[name], f"{name}: columns {columns}"
                if fmt == "time_series":
                    assert columns[0] == "time", f"{name}: time must come first"
                    assert all(r[0] is not None for r in rows)
            results[name] = (columns, rows)
    engine.dispose()

    stable, drifted = filled_pg["reports"]

    def one(name: str) -> dict[str, Any]:
        columns, rows = results[name]
        return dict(zip(columns, rows[0], strict=True))

    assert one("Reports with dataset drift") == {"with drift": 1, "reports": 2}
    assert one("Latest drift share")["drift share"] == pytest.approx(drifted.drift_share)
    assert one("Dataset drift (latest report)")["dataset drift"] == 1
    assert one("Predictions served") == {"predictions": filled_pg["predictions"], "requests": 8}
    volume = results["Prediction volume"][1]
    assert sum(r[2] for r in volume) == filled_pg["predictions"]
    assert {r[1] for r in volume} == {"v1", "v2"}
    per_column = results["Newest report: drift per column"][1]
    assert len(per_column) == len(drift.DRIFT_COLUMNS) + 1
    assert {r[0] for r in per_column if r[4] == "drifted"} == {
        c.column for c in [*drifted.columns, drifted.prediction] if c.drifted
    }
    scores = results["Drift score per column"][1]
    assert len(scores) == 2 * (len(drift.DRIFT_COLUMNS) + 1)
    mae = [r[1] for r in results["MAE of the median ETA"][1]]
    assert mae == pytest.approx([stable.quality.mae_s, drifted.quality.mae_s])
    assert len(results["annotation Dataset drift"][1]) == 1
    latency = one("Request latency")
    assert 5.0 <= latency["p50"] <= latency["max"] <= 12.0  # the shadow's 900 ms not in it
    live = {r[1]: r[2] for r in results["Live MAE per model version"][1]}
    assert live == {"v2 champion": 420.0, "v3 challenger": 380.0}
    difference = one("Champion vs challenger: live MAE difference")
    assert (difference["CI low"], difference["challenger - champion"]) == (-55.0, -40.0)
    evaluation = one("Live evaluations")
    assert (evaluation["champion"], evaluation["challenger"], evaluation["winner"]) == (
        "v2",
        "v3",
        "challenger",
    )
    assert evaluation["paired orders"] == 40 and evaluation["promoted"] is False
