"""``eta train`` end to end on the embedded default (SQLite + local artifacts in ETA_HOME)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eta_cli import schema, synthetic
from eta_cli.cli import main


def write_orders(path: Path, n: int = 3000, seed: int = 0, messy: bool = False) -> Path:
    """Clean orders as ingest writes them (order_id, clean columns, target, order_date)."""
    raw = synthetic.generate_orders(n, seed=seed, messy=messy)
    raw = raw[raw[schema.DELIVERED_AT].notna()].copy()
    raw.insert(0, schema.ORDER_ID, [f"s{seed}-{i:06d}" for i in range(len(raw))])
    raw[schema.TARGET] = (raw[schema.DELIVERED_AT] - raw[schema.CREATED_AT]).dt.total_seconds()
    raw = raw[raw[schema.TARGET].between(300, 14_400)]
    raw[schema.ORDER_DATE] = raw[schema.CREATED_AT].dt.strftime("%Y-%m-%d")
    raw[list(schema.CLEAN_COLUMNS)].to_parquet(path, index=False)
    return path


def eta(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run the real CLI entry point in-process; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real training run shared by the read-only checks below."""
    root = tmp_path_factory.mktemp("train")
    data = write_orders(root / "orders.parquet", n=3000, seed=1)
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_", "AWS_"))}
    env["ETA_HOME"] = str(home)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eta_cli",
            "train",
            "--data",
            str(data),
            "--max-rounds",
            "60",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return {"result": json.loads(done.stdout), "home": home, "data": data}


def _client(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(uri, uri)


def test_json_output_has_run_metrics_and_model(trained) -> None:
    result = trained["result"]
    assert result["model_uri"] == f"runs:/{result['run_id']}/model"
    assert set(result["candidates"]) == {"median", "upstream_sum", "linear", "xgboost"}
    for cand in result["candidates"].values():
        assert {"mae", "rmse", "r2", "within_10min", "coverage", "lateness_rate", "pinball"} <= set(
            cand["metrics"]
        )
    model = result["candidates"]["xgboost"]["metrics"]
    assert model == result["metrics"]
    # The model must beat the naive baselines by a clear margin even on 3k orders.
    assert model["mae"] < 0.85 * result["candidates"]["median"]["metrics"]["mae"]
    assert model["mae"] < result["candidates"]["upstream_sum"]["metrics"]["mae"]
    assert 0.5 < model["coverage"] < 0.95
    rows = result["rows"]
    assert rows["test"] == pytest.approx(0.15 * sum(rows.values()), abs=2)


def test_split_is_by_time(trained) -> None:
    split = trained["result"]["split"]
    assert split["train_end"] <= split["val_start"] <= split["val_end"] <= split["test_start"]
    assert split["test_end"] == str(pd.read_parquet(trained["data"])["created_at"].max())


def test_run_has_params_tags_metrics_and_nested_candidates(trained) -> None:
    client = _client(trained["home"])
    result = trained["result"]
    run = client.get_run(result["run_id"])
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["eta.run_type"] == "training"
    assert tags["eta.data_fingerprint"] == result["data_fingerprint"]
    assert tags["eta.rows_train"] == str(result["rows"]["train"])
    assert tags["eta.test_start"] == result["split"]["test_start"]
    assert tags["eta.model_id"] == result["model_id"]
    assert params["max_rounds"] == "60"
    assert params["xgb_objective"] == "reg:quantileerror"
    assert metrics["test_mae"] == pytest.approx(result["metrics"]["mae"])
    assert metrics["median_test_mae"] == pytest.approx(
        result["candidates"]["median"]["metrics"]["mae"]
    )
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result['run_id']}'",
    )
    names = {c.data.tags["eta.candidate"]: c for c in children}
    assert set(names) == {"median", "upstream_sum", "linear", "xgboost"}
    assert names["linear"].data.metrics["test_mae"] == pytest.approx(
        result["candidates"]["linear"]["metrics"]["mae"]
    )


def test_run_artifacts_plots_reference_and_test_split(trained) -> None:
    client = _client(trained["home"])
    run_id = trained["result"]["run_id"]
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {
        "plots/predicted_vs_actual.png",
        "plots/residuals_by_hour.png",
        "plots/feature_importance.png",
    }
    local = client.download_artifacts(run_id, "plots/feature_importance.png", str(trained["home"]))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    reference = pd.read_parquet(
        client.download_artifacts(run_id, "reference/orders.parquet", str(trained["home"]))
    )
    assert {schema.ORDER_ID, schema.TARGET, "eta_p50_s", "eta_p90_s", *schema.INPUT_COLUMNS} <= set(
        reference.columns
    )
    assert len(reference) == trained["result"]["rows"]["train"]  # < 20k: the whole split
    assert reference[schema.CREATED_AT].max() <= pd.Timestamp(
        trained["result"]["split"]["train_end"]
    )

    test = pd.read_parquet(
        client.download_artifacts(run_id, "evaluation/test_orders.parquet", str(trained["home"]))
    )
    assert len(test) == trained["result"]["rows"]["test"]
    assert test[schema.CREATED_AT].min() >= pd.Timestamp(trained["result"]["split"]["test_start"])


def test_logged_model_loads_with_pyfunc_and_matches_eta_model(trained) -> None:
    import mlflow

    from eta_cli import tracking
    from eta_cli.config import load_settings
    from eta_cli.registry import load_model

    settings = load_settings(overrides={"home": str(trained["home"])})
    tracking.configure(settings)  # points the fluent API there, without touching os.environ
    assert "MLFLOW_TRACKING_URI" not in os.environ
    pyfunc = mlflow.pyfunc.load_model(trained["result"]["model_uri"])
    orders = pd.read_parquet(trained["data"]).tail(20)
    inputs = orders[list(schema.INPUT_COLUMNS)]
    out = pyfunc.predict(inputs)
    assert list(out.columns) == ["eta_p10_s", "eta_p50_s", "eta_p90_s", "eta_quoted_s"]
    assert pyfunc.metadata.get_input_schema() is not None  # signature logged
    assert pyfunc.metadata.saved_input_example_info is not None

    loaded = load_model(settings, trained["result"]["model_uri"])
    np.testing.assert_allclose(out.to_numpy(), loaded.model.predict_frame(inputs).to_numpy())
    assert loaded.run_id == trained["result"]["run_id"]
    assert loaded.metrics["test_mae"] == pytest.approx(trained["result"]["metrics"]["mae"])
    assert loaded.trained_at == trained["result"]["trained_at"]
    assert loaded.model.metadata["data_fingerprint"] == trained["result"]["data_fingerprint"]


def test_table_output_and_trials(tmp_path, capsys) -> None:
    data = write_orders(tmp_path / "orders.parquet", n=2500, seed=2)
    code, out, err = eta(
        capsys, "train", "--data", str(data), "--trials", "3", "--max-rounds", "30"
    )
    assert code == 0, err
    for name in ("median", "upstream_sum", "linear", "xgboost"):
        assert name in out
    assert "MAE" in out and "run " in out
    client = _client(tmp_path / "eta-home")
    trials = client.search_runs(["1"], filter_string="tags.`eta.run_type` = 'trial'")
    assert len(trials) == 3
    assert all("val_pinball" in t.data.metrics for t in trials)
    parent = client.search_runs(["1"], filter_string="tags.`eta.run_type` = 'training'")[0]
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert parent.data.params["trials"] == "3"


def test_raw_csv_with_messy_rows(tmp_path, capsys) -> None:
    """A raw export (no order_id / target, absurd durations) is usable with --data."""
    raw = synthetic.generate_orders(2500, seed=4, messy=True)
    path = synthetic.write_csv(raw, tmp_path / "historical_data.csv")
    code, out, err = eta(capsys, "train", "--data", str(path), "--max-rounds", "20", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert sum(result["rows"].values()) < 2500  # absurd durations dropped
    assert result["split"]["train_start"] >= "2015-01"  # the 2014 outlier order is gone


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file"),
        ("empty", "empty"),
        ("columns", "lacks column(s)"),
        ("few", "too few orders"),
        ("format", "unknown format"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, setup, message) -> None:
    path = tmp_path / "orders.parquet"
    if setup == "empty":
        write_orders(path, n=100)
        pd.read_parquet(path).head(0).to_parquet(path)
    elif setup == "columns":
        write_orders(path, n=500)
        pd.read_parquet(path).drop(columns=["subtotal", "store_id"]).to_parquet(path)
    elif setup == "few":
        write_orders(path, n=120)
    elif setup == "format":
        path = tmp_path / "orders.xlsx"
        path.write_text("x")
    code, _out, err = eta(capsys, "train", "--data", str(path))
    assert code == 2
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    if setup == "columns":
        assert "store_id" in err and "subtotal" in err
    # Bad input fails before MLflow is touched.
    assert not (tmp_path / "eta-home" / "mlflow.db").exists()


def test_library_api_reads_dataframe(settings) -> None:
    from eta_cli.train import train

    frame = pd.read_parquet(write_orders(Path("orders.parquet"), n=2000, seed=6))
    start = time.perf_counter()
    result = train(settings, data=frame, max_rounds=10)
    assert time.perf_counter() - start < 120
    assert result.data_source == "dataframe"
    assert result.model is not None
    assert result.model.metadata["run_id"] == result.run_id
    assert result.timings["xgb_fit_s"] <= result.timings["total_s"]


def test_default_reads_the_ingested_dataset(tmp_path, capsys) -> None:
    code, _out, err = eta(capsys, "train")
    assert code == 2
    assert "no orders at" in err and "eta ingest" in err
    code, _out, err = eta(capsys, "ingest", "--synthetic", "2500", "--seed", "7", "--json")
    assert code == 0, err
    result = json.loads(
        eta(capsys, "train", "--max-rounds", "20", "--json", "--since", "2015-01-25")[1]
    )
    assert result["data_source"] == str(tmp_path / "eta-home" / "data" / "orders")
    assert result["split"]["train_start"] >= "2015-01-25"
    reference = pd.read_parquet(
        _client(tmp_path / "eta-home").download_artifacts(
            result["run_id"], "reference/orders.parquet", str(tmp_path)
        )
    )
    assert reference[schema.ORDER_ID].notna().all()  # ingest's ids travel with the sample


def test_library_call_reports_progress(settings) -> None:
    """Features, every candidate and each boosting round reach the progress callback."""
    from eta_cli.progress import Progress
    from eta_cli.train import CANDIDATES, train

    frame = pd.read_parquet(write_orders(Path("orders.parquet"), n=2000, seed=8))
    events: list[Progress] = []
    train(settings, data=frame, max_rounds=12, progress=events.append)
    tasks = {event.task for event in events}
    assert {"features", "candidates", "boosting"} <= tasks
    assert any(e.task == "features" and e.finished for e in events)
    assert [e.note for e in events if e.task == "candidates"] == list(CANDIDATES)
    rounds = [e for e in events if e.task == "boosting"]
    assert {e.done for e in rounds} == set(range(1, 13))  # one event per round of 12
    assert all(e.unit == "rounds" and e.total == 12 for e in rounds)
