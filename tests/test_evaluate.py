"""``eta evaluate`` and the pipeline's evaluate step on the real live loop: two registered
models, predictions logged by the real service (champion answers, shadow challenger),
delivered orders in the lake, verdicts, promotion and the monitoring tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from helpers_model import fake_loaded, log_and_register, sample_orders, tiny_model

from eta_cli import pipeline, registration, registry, schema, synthetic
from eta_cli.cli import main
from eta_cli.config import Settings, load_settings
from eta_cli.monitor import database, evaluate, workspace
from eta_cli.serve import ModelProvider, create_app
from eta_cli.serve.prediction_log import PredictionLog
from eta_cli.serve.shadow import ShadowScorer

GOOD, WEAK = 1.0, 1.6  # scale of the tiny model's target: 1.6 promises 60 % too late
ORDERS = 300  # above ETA_LIVE_MIN_ORDERS' default (200)


def write_lake(settings: Settings, orders: list[dict], seed: int) -> None:
    """Delivered orders in the lake's layout (orders/order_date=D/part-0.parquet), ids kept."""
    frame = synthetic.generate_orders(len(orders), seed=seed, messy=False)
    frame.insert(0, schema.ORDER_ID, [o["order_id"] for o in orders])
    frame[schema.TARGET] = (
        frame[schema.DELIVERED_AT] - frame[schema.CREATED_AT]
    ).dt.total_seconds()
    frame[schema.ORDER_DATE] = frame[schema.CREATED_AT].dt.strftime("%Y-%m-%d")
    root = Path(settings.effective_data_uri) / "orders"
    arrow = schema.arrow_schema()
    for day, part in frame.groupby(schema.ORDER_DATE):
        folder = root / f"{schema.ORDER_DATE}={day}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(part[list(schema.CLEAN_COLUMNS)], preserve_index=False)
        pq.write_table(table.cast(arrow).drop([schema.ORDER_DATE]), folder / "part-0.parquet")


def live_loop(settings: Settings, champion_scale: float, challenger_scale: float) -> list[dict]:
    """Register champion v1 and challenger v2, serve ORDERS orders through the real app with
    the shadow, log both, and put their outcomes in the lake. Returns the orders sent."""
    assert log_and_register(settings, tiny_model(scale=champion_scale), "champion") == "1"
    assert log_and_register(settings, tiny_model(scale=challenger_scale), "challenger") == "2"
    champion = registry.load_model(settings, f"models:/{settings.model_name}@champion")
    challenger = registry.load_model(settings, f"models:/{settings.model_name}@challenger")
    plog = PredictionLog(settings.effective_database_url, 10_000).start()
    shadow = ShadowScorer(settings, ModelProvider.fixed(settings, challenger), plog)
    app = create_app(settings, ModelProvider.fixed(settings, champion), plog, shadow)
    orders = sample_orders(ORDERS, seed=31, with_id=True)
    client = app.test_client()
    try:
        for i in range(0, ORDERS, 50):
            assert client.post("/predict", json={"orders": orders[i : i + 50]}).status_code == 200
        assert shadow.drain() == ORDERS
        assert plog.flush()
    finally:
        plog.close()
    write_lake(settings, orders, seed=31)  # the same orders, now delivered
    return orders


def eta(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def stored(settings: Settings) -> tuple[list[dict], list[dict]]:
    engine = database.engine_for(settings)
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.select(database.live_evaluations)).mappings().all()
            models = conn.execute(sa.select(database.live_quality)).mappings().all()
        return [dict(r) for r in runs], [dict(m) for m in models]
    finally:
        engine.dispose()


def test_a_weak_challenger_loses_and_is_not_promoted(settings, capsys) -> None:
    live_loop(settings, GOOD, WEAK)
    code, out, err = eta(capsys, "evaluate", "--promote", "--json")
    assert code == 0, err
    result = json.loads(out)
    by_role = {m["role"]: m for m in result["models"]}
    assert set(by_role) == {"champion", "challenger"}
    for role, version in (("champion", "1"), ("challenger", "2")):
        m = by_role[role]
        assert m["version"] == version and m["orders"] == ORDERS
        assert {"mae", "coverage", "lateness", "bias"} <= set(m)
    assert by_role["challenger"]["mae"] > by_role["champion"]["mae"]
    assert by_role["challenger"]["bias"] > by_role["champion"]["bias"]  # promises too late
    comparison = result["comparison"]
    assert comparison["winner"] == "champion" and comparison["orders"] == ORDERS
    assert 0 < comparison["ci_low"] <= comparison["mae_difference"] <= comparison["ci_high"]
    assert comparison["mae_difference"] == pytest.approx(
        by_role["challenger"]["mae"] - by_role["champion"]["mae"]
    )
    assert result["promoted"] is False and "did not win" in result["promotion"]["reason"]
    assert registry.resolve_version(settings, "eta", "champion") == "1"
    assert registry.resolve_version(settings, "eta", "challenger") == "2"

    runs, models = stored(settings)
    assert [(r["winner"], r["paired_orders"], r["promoted"]) for r in runs] == [
        ("champion", ORDERS, False)
    ]
    assert sorted((m["role"], m["model_version"], m["orders"]) for m in models) == [
        ("challenger", "2", ORDERS),
        ("champion", "1", ORDERS),
    ]

    code, out, _ = eta(capsys, "evaluate")  # the Rich table names both and the verdict
    assert code == 0
    assert "challenger" in out and "v2" in out and "verdict: champion" in out

    # Each evaluation is also a run of the model's workspace project, for eta ui's panels.
    info = workspace.find_project(settings)
    assert info is not None and info.runs == 2
    evaluations = [
        json.loads(path.read_text())
        for path in workspace.run_files(info.workspace / info.project_id)
    ]
    for run in evaluations:
        assert {"model-v1", "model-v2"} <= set(run["tags"])
        assert run["metadata"]["kind"] == "evaluation"


def test_a_better_challenger_wins_and_is_promoted_with_promote(
    settings, capsys, monkeypatch
) -> None:
    live_loop(settings, WEAK, GOOD)
    code, out, err = eta(capsys, "evaluate", "--json")
    assert code == 0, err
    first = json.loads(out)["comparison"]
    assert first["winner"] == "challenger"
    assert first["ci_low"] <= first["mae_difference"] <= first["ci_high"] < 0
    assert registry.resolve_version(settings, "eta", "champion") == "1"  # no --promote
    again = json.loads(eta(capsys, "evaluate", "--json")[1])["comparison"]
    assert (again["ci_low"], again["ci_high"]) == (first["ci_low"], first["ci_high"])  # seeded

    monkeypatch.setenv("ETA_LIVE_MIN_ORDERS", str(ORDERS + 1))  # a win on too few orders
    code, out, _ = eta(capsys, "evaluate", "--promote", "--json")
    assert code == 0
    assert "fewer than the 301 required" in json.loads(out)["promotion"]["reason"]
    assert registry.resolve_version(settings, "eta", "champion") == "1"

    monkeypatch.delenv("ETA_LIVE_MIN_ORDERS")
    code, out, err = eta(capsys, "evaluate", "--promote")
    assert code == 3, err
    assert "promoted: live evaluation: challenger v2 beat champion v1" in out
    assert registry.resolve_version(settings, "eta", "champion") == "2"
    assert registry.resolve_version(settings, "eta", "challenger") is None
    versions = {v["version"]: v for v in registration.list_versions(settings)}
    assert "live evaluation" in versions["2"]["reason"]
    runs, _ = stored(settings)
    assert [r["promoted"] for r in runs] == [False, False, False, True]


def test_nothing_to_join_says_what_is_missing(settings, capsys) -> None:
    code, out, err = eta(capsys, "evaluate")
    assert code == 0
    assert "nothing to evaluate" in err and "no predictions of model 'eta'" in err

    orders = sample_orders(5, with_id=True)
    plog = PredictionLog(settings.effective_database_url, 100).start()
    app = create_app(settings, ModelProvider.fixed(settings, fake_loaded("1")), plog)
    for order in orders:
        app.test_client().post("/predict", json=order)
    plog.close()
    code, out, err = eta(capsys, "evaluate", "--json")
    assert code == 0
    assert "no ingested orders" in json.loads(out)["message"]

    write_lake(settings, [{"order_id": f"other-{i}"} for i in range(5)], seed=3)
    result = evaluate.evaluate(settings, "1d")
    assert "none of the 5 logged orders" in result.message
    assert result.models == [] and result.comparison.winner == "undecided"

    code, _, err = eta(capsys, "evaluate", "--since", "yesterday-ish")
    assert code == 2 and "--since 'yesterday-ish' is not understood" in err


def test_reading_a_fresh_home_creates_no_monitoring_database(settings, capsys) -> None:
    """`eta evaluate`, the pipeline's evaluate step and `eta doctor` only read: on a home
    with no monitoring database they leave none behind (not even an empty file)."""
    db_file = settings.home_path / "monitoring.db"
    assert settings.effective_database_url.endswith(str(db_file))

    def files() -> set[str]:
        home = settings.home_path
        return {str(p) for p in home.rglob("*")} if home.exists() else set()

    before = files()
    code, out, err = eta(capsys, "evaluate", "--json")
    assert code == 0, err
    assert "no predictions of model 'eta'" in json.loads(out)["message"]
    steps: list = []
    result = pipeline.PipelineResult(datetime.now(UTC), "never")
    pipeline._evaluate_step(settings, False, result, lambda step: steps.append(step) or step)
    assert [s.status for s in steps] == ["skipped"], steps
    assert "no predictions" in steps[0].detail
    _, out, err = eta(capsys, "doctor")
    assert "monitoring database" in out + err and "not created yet" in out + err
    assert not db_file.exists()
    assert files() == before
    # Once the service logs a prediction, the database exists and evaluate reads it.
    plog = PredictionLog(settings.effective_database_url, 100).start()
    app = create_app(settings, ModelProvider.fixed(settings, fake_loaded("1")), plog)
    app.test_client().post("/predict", json=sample_orders(1, with_id=True)[0])
    plog.close()
    assert db_file.exists()
    assert evaluate.evaluate(settings).predictions == 1


def test_pipeline_evaluate_step_promotes_with_live_promotion_on(settings) -> None:
    orders = live_loop(settings, WEAK, GOOD)
    # The lake's orders were seen by an earlier run: no new orders, so no drift step work.
    pipeline._remember_orders(settings, [o["order_id"] for o in orders])
    lines: list[str] = []
    off = pipeline.run_pipeline(settings, live_promotion=False, log=lines.append)
    step = off.step("evaluate")
    assert step.status == "ok" and "winner=challenger" in step.detail
    assert "live_promotion=off" in step.detail
    assert off.exit_code == 0 and not off.live_promoted
    assert registry.resolve_version(settings, "eta", "champion") == "1"

    on = pipeline.run_pipeline(settings, live_promotion=True, log=lines.append)
    assert on.live_promoted and on.exit_code == pipeline.EXIT_DRIFT_PROMOTED
    assert on.to_dict()["steps"][1]["data"]["evaluate"]["promoted"] is True
    assert registry.resolve_version(settings, "eta", "champion") == "2"


def test_on_postgresql_the_log_migrates_and_the_evaluation_is_stored(
    pg_url, tmp_path, monkeypatch, capsys
) -> None:
    engine = database.make_engine(pg_url)
    database.ensure_schema(engine)
    with engine.begin() as conn:  # a prediction log of schema v1: no role column
        conn.execute(sa.text("ALTER TABLE predictions DROP COLUMN role"))
        conn.execute(sa.text("UPDATE eta_schema_version SET version = 1"))
    monkeypatch.setenv("ETA_DATABASE_URL", pg_url)
    settings = load_settings()
    live_loop(settings, GOOD, WEAK)  # the writer migrates on first use, then logs roles
    assert database.current_schema_version(engine) == database.SCHEMA_VERSION
    code, out, err = eta(capsys, "evaluate", "--json")
    assert code == 0, err
    assert json.loads(out)["comparison"]["winner"] == "champion"
    with engine.connect() as conn:
        roles = conn.execute(
            sa.text("SELECT role, count(*) FROM predictions GROUP BY role ORDER BY role")
        ).all()
        winner = conn.execute(sa.text("SELECT winner FROM live_evaluations")).scalar_one()
    engine.dispose()
    assert [tuple(r) for r in roles] == [("challenger", ORDERS), ("champion", ORDERS)]
    assert winner == "champion"


def test_bootstrap_interval_is_seeded_and_bounded() -> None:
    import numpy as np

    values = np.random.default_rng(1).normal(-5.0, 50.0, size=5000)
    a = evaluate.bootstrap_ci(values, resamples=500, seed=7)
    assert a == evaluate.bootstrap_ci(values, resamples=500, seed=7)
    assert a[0] < values.mean() < a[1]
    assert a != evaluate.bootstrap_ci(values, resamples=500, seed=8)
    evaluate.BOOTSTRAP_CELLS, cells = 1000, evaluate.BOOTSTRAP_CELLS  # one resample per step
    try:
        assert evaluate.bootstrap_ci(values, resamples=500, seed=7) == a
    finally:
        evaluate.BOOTSTRAP_CELLS = cells
