"""``eta train --engine dask``: the local engine's statistics, split, quality and MLflow run."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eta_cli import features, ingest, lake, registration, registry, schema
from eta_cli import train as local_train
from eta_cli.cli import main
from eta_cli.config import Settings
from eta_cli.predict import dask as dask_predict
from eta_cli.train import dask as dask_train
from eta_cli.train import metrics as evaluation

pytest_plugins = ("fixtures_dask",)  # the session's two-worker cluster: dask_client

ORDERS = 30_000
ROUNDS = 150


def run_cli(*args: str) -> tuple[int, str, str]:
    """The real entry point in-process (usable from module fixtures, unlike capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ statistics / split


def messy_frame(n: int = 5000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "store_id": rng.integers(1, 300, n),
            "market_id": pd.array(rng.integers(1, 6, n), dtype="Int64"),
            "store_primary_category": pd.array(
                rng.choice(["pizza", "thai", "", "burger", "açaí"], n), dtype="string"
            ),
            schema.TARGET: rng.gamma(9.0, 300.0, n),
        }
    )
    frame.loc[rng.random(n) < 0.05, "market_id"] = pd.NA
    frame.loc[rng.random(n) < 0.05, "store_primary_category"] = pd.NA
    return frame


def assert_same_state(got: features.FeatureState, want: features.FeatureState) -> None:
    assert got.global_mean == pytest.approx(want.global_mean, rel=1e-12)
    np.testing.assert_array_equal(got.store_ids, want.store_ids)
    np.testing.assert_allclose(got.store_means, want.store_means, rtol=1e-12)
    np.testing.assert_array_equal(got.store_counts, want.store_counts)
    assert got.market_means.keys() == want.market_means.keys()
    for key, value in want.market_means.items():
        assert got.market_means[key] == pytest.approx(value, rel=1e-12)
    assert got.category_codes == want.category_codes
    for key, value in want.category_means.items():
        assert got.category_means[key] == pytest.approx(value, rel=1e-12)


def test_feature_state_from_sums_is_fit_feature_state() -> None:
    frame = messy_frame()
    want = features.fit_feature_state(frame, frame[schema.TARGET].to_numpy())
    keys = dask_train._group_keys(frame)
    keys["sum"] = frame[schema.TARGET].to_numpy()
    keys["count"] = 1
    # Partial sums in any grouping (as partitions produce them) give the same state.
    parts = [keys.iloc[i::3] for i in range(3)]
    partial = pd.concat(
        p.groupby(["store", "market", "category"])[["sum", "count"]].sum().reset_index()
        for p in parts
    )
    sums = partial.groupby(["store", "market", "category"])[["sum", "count"]].sum().reset_index()
    assert_same_state(features.state_from_sums(sums), want)


def test_out_of_fold_states_leave_their_fold_out() -> None:
    frame = messy_frame(seed=1)
    frame[schema.ORDER_ID] = [f"o{i}" for i in range(len(frame))]
    fold = dask_train.fold_of(frame[schema.ORDER_ID], seed=42)
    assert set(fold) == set(range(dask_train.FOLDS))
    keys = dask_train._group_keys(frame)
    keys["fold"] = fold
    keys["sum"] = frame[schema.TARGET].to_numpy()
    keys["count"] = 1
    sums = keys.groupby(["fold", "store", "market", "category"])[["sum", "count"]].sum()
    states = dask_train.states_from_fold_sums(sums.reset_index())
    y = frame[schema.TARGET].to_numpy()
    assert_same_state(states.full, features.fit_feature_state(frame, y))
    for k, state in enumerate(states.folds):
        rest = frame[fold != k]
        assert_same_state(state, features.fit_feature_state(rest, y[fold != k]))


def test_time_split_takes_the_newest_orders_for_test() -> None:
    minute = np.arange(1000, dtype=np.int64)
    ns = minute * 60_000_000_000
    counts = np.full(1000, 10, np.int64)
    table = pd.DataFrame(
        {"minute": minute, "count": counts, "lo": 1, "hi": 2, "first": ns, "last": ns + 5}
    )
    split = dask_train.time_split_from_minutes(table.sample(frac=1, random_state=0), 0.15, 0.15)
    assert split.rows == {"train": 7000, "val": 1500, "test": 1500}
    assert split.val_start_ns == 700 * 60_000_000_000
    assert split.test_start_ns == 850 * 60_000_000_000
    assert split.boundaries["test_end"] == str(pd.Timestamp(999 * 60_000_000_000 + 5))
    with pytest.raises(local_train.TrainError, match="too few orders for a time split"):
        dask_train.time_split_from_minutes(table.head(30), 0.15, 0.15)


# --------------------------------------------------------------- training, end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dask_client) -> dict:
    """The same ingested orders trained by both engines, into one MLflow store."""
    root = tmp_path_factory.mktemp("dask-train")
    settings = Settings(home=root / "home")
    ingest.ingest(settings, [], synthetic=ORDERS, seed=5)
    local = local_train.train(settings, max_rounds=ROUNDS)
    code, out, err = run_cli(
        "--home",
        str(root / "home"),
        "train",
        "--engine",
        "dask",
        "--scheduler",
        dask_client.scheduler.address,
        "--max-rounds",
        str(ROUNDS),
        "--json",
    )
    assert code == 0, err
    assert "Traceback" not in err
    return {"settings": settings, "local": local, "dask": json.loads(out), "err": err}


def test_dask_and_local_models_have_comparable_quality(trained) -> None:
    local, dask = trained["local"], trained["dask"]
    local_mae, dask_mae = local.metrics["mae"], dask["metrics"]["mae"]
    print(f"test MAE local {local_mae:.1f} s, dask {dask_mae:.1f} s")
    assert abs(dask_mae - local_mae) / local_mae < 0.03, (dask_mae, local_mae)
    # Same time split, up to the minute on which the boundaries fall.
    for name in ("train", "val", "test"):
        assert abs(dask["rows"][name] - local.rows[name]) <= 0.01 * local.rows[name]
    assert dask["split"]["test_end"] == local.boundaries["test_end"]
    # Both models scored on the very same orders: the local engine's test split.
    settings = trained["settings"]
    orders = local_train.prepare_orders(lake.read_orders(settings), settings)
    test = local_train.time_split(orders, 0.15, 0.15).test
    y = test[schema.TARGET].to_numpy()
    dask_model = registry.load_model(settings, dask["model_uri"]).model
    levels = local_train.output_levels(settings)
    scores = {
        name: evaluation.eta_metrics(y, model.predict_frame(test).to_numpy(), levels)
        for name, model in (("local", local.model), ("dask", dask_model))
    }
    print({name: round(m["mae"], 1) for name, m in scores.items()})
    assert abs(scores["dask"]["mae"] - scores["local"]["mae"]) / scores["local"]["mae"] < 0.03
    assert abs(scores["dask"]["coverage"] - scores["local"]["coverage"]) < 0.03


def test_the_run_is_logged_like_the_local_engine(trained) -> None:
    from mlflow import MlflowClient

    settings = trained["settings"]
    client = MlflowClient(settings.effective_tracking_uri)
    local = client.get_run(trained["local"].run_id)
    dask = client.get_run(trained["dask"]["run_id"])

    def artifacts(run_id: str, path: str = "") -> set[str]:
        found = set()
        for item in client.list_artifacts(run_id, path):
            found |= artifacts(run_id, item.path) if item.is_dir else {item.path}
        return found

    assert artifacts(dask.info.run_id) == artifacts(local.info.run_id)
    assert set(dask.data.params) == set(local.data.params)
    assert set(local.data.metrics) <= set(dask.data.metrics)
    assert {k for k in local.data.tags if k.startswith("eta.")} <= set(dask.data.tags)
    assert dask.data.tags["eta.engine"] == "dask"
    assert dask.data.params["xgb_objective"] == local.data.params["xgb_objective"]
    assert dask.data.params["xgb_quantile_alpha"] == local.data.params["xgb_quantile_alpha"]
    children = client.search_runs(
        [dask.info.experiment_id], f"tags.mlflow.parentRunId = '{dask.info.run_id}'"
    )
    assert {c.data.tags["eta.candidate"] for c in children} == set(local_train.CANDIDATES)


def test_register_and_batch_score_the_dask_model_unchanged(
    trained, dask_client, tmp_path: Path
) -> None:
    settings = trained["settings"]
    result = registration.register(settings, run_id=trained["dask"]["run_id"])
    assert result.action == "champion" and result.version == "1"
    orders = settings.home_path / "data" / "orders"
    summary = dask_predict.predict_dataset(settings, dask_client, str(orders), str(tmp_path))
    assert summary.model_version == "1" and summary.rows > 0.99 * ORDERS
    assert summary.rejected == 0


def test_worker_errors_are_one_line(dask_client, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    frame = lake.read_orders(_tiny_lake(tmp_path))
    frame.to_parquet(folder / "good.parquet", index=False)
    broken = frame.head(100).astype({schema.CREATED_AT: str})
    broken[schema.CREATED_AT] = "yesterday"
    broken.to_parquet(folder / "broken.parquet", index=False)
    code, _, err = run_cli(
        "--home",
        str(tmp_path / "home"),
        "train",
        "--engine",
        "dask",
        "--scheduler",
        dask_client.scheduler.address,
        "--data",
        str(folder),
    )
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert (
        last.startswith("error: ")
        and "broken.parquet: column created_at is not a timestamp" in last
    )
    assert "Traceback" not in err


def _tiny_lake(tmp_path: Path) -> str:
    settings = Settings(home=tmp_path / "home")
    ingest.ingest(settings, [], synthetic=2000, seed=1)
    return lake.dataset_uri(settings)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "3"], "--trials needs --engine local"),
        (["--data", "orders.csv"], "--engine dask reads Parquet"),
        (["--data", "nowhere"], "--data nowhere: no such file, folder or prefix"),
    ],
)
def test_bad_arguments(dask_client, args: list[str], message: str, tmp_path: Path) -> None:
    address = dask_client.scheduler.address
    code, _, err = run_cli(
        "--home", str(tmp_path), "train", "--engine", "dask", "--scheduler", address, *args
    )
    assert code == 2
    assert message in err and "Traceback" not in err
