"""``eta predict --engine dask`` gives the local batch path's output, file by file, row by row."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import free_port
from helpers_dask import worker_env
from helpers_model import tiny_model

from eta_cli import ingest, predict, registry, synthetic
from eta_cli.cli import main
from eta_cli.config import Settings
from eta_cli.dask_engine import ClusterError
from eta_cli.predict import dask as dask_predict
from eta_cli.predict.files import predict_files

pytest_plugins = ("fixtures_dask",)  # the session's two-worker cluster: dask_client

PREDICTION_COLUMNS = ["eta_p50_s", "eta_p10_s", "eta_p90_s", "eta_quoted_s"]


def odd_rows_csv(path: Path) -> Path:
    """A CSV in the real file's spelling plus rows the vectorised path must leave to the
    per-order validation (and that it must still answer the same way)."""
    frame = synthetic.generate_orders(3000, seed=7)
    frame.insert(0, "order_id", [f"o-{i}" for i in range(len(frame))])
    synthetic.write_csv(frame, path)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    template = dict(zip(header, lines[1].split(","), strict=True))

    def row(**values: str) -> str:
        return ",".join(str({**template, **values}.get(c, "")) for c in header)

    lines += [
        row(created_at="2015-02-30 10:00:00"),
        row(created_at="2015-01-21T10:00:00"),
        row(created_at="2015-01-21 24:00:00"),
        row(created_at="2015-01-21 10:00"),
        row(created_at="2015-01-21 10:00:00Z"),
        row(created_at="1969-12-31 23:59:59"),
        row(created_at="2015-01-21 10:00:00.5"),
        row(created_at=""),
        row(store_id="1.5"),
        row(store_id=""),
        row(market_id="2000"),
        row(total_items="0"),
        row(subtotal="1e3"),
        row(order_id="x" * 70),
        row(order_id=""),
        row(store_primary_category="y" * 201),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A partitioned dataset (an ingested lake's layout) plus raw CSV batches beside it."""
    root = tmp_path_factory.mktemp("predict")
    lake = root / "lake"
    ingest.ingest(Settings(home=root / "home"), [], synthetic=20_000, seed=3, output=str(lake))
    data = root / "input"
    shutil.copytree(lake / "orders", data / "orders")
    (data / "raw").mkdir()
    odd_rows_csv(data / "raw" / "batch-1.csv")
    frame = synthetic.generate_orders(2000, seed=8)
    synthetic.write_csv(frame, data / "raw" / "batch-2.csv.gz", "reexport", compression="gzip")
    return data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(seed=1, rounds=40).save(tmp_path_factory.mktemp("model") / "model")


def local_output(settings: Settings, model_dir: Path, source: Path, target: Path) -> pd.DataFrame:
    loaded = registry.load_model(settings, str(model_dir))
    predict_files(settings, str(source), str(target), model=predict.LocalPredictor(loaded))
    return pd.read_parquet(target)


def input_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_same_output_as_the_local_batch_path_file_by_file(
    dask_client, inputs: Path, model_dir: Path, tmp_path: Path, settings: Settings
) -> None:
    out = tmp_path / "predictions"
    summary = dask_predict.predict_dataset(
        settings, dask_client, str(inputs), str(out), model_uri=str(model_dir)
    )
    files = input_files(inputs)
    assert summary.files == len(files) == 30  # 28 days + 2 raw batches
    written = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    assert written == sorted(
        Path(str(f.relative_to(inputs)).replace(".csv.gz", ".parquet").replace(".csv", ".parquet"))
        for f in files
    )
    rows = rejected = 0
    for source in files:
        relative = str(source.relative_to(inputs))
        target = out / relative.replace(".csv.gz", ".parquet").replace(".csv", ".parquet")
        expected = local_output(settings, model_dir, source, tmp_path / "local.parquet")
        got = pd.read_parquet(target)
        assert list(got.columns) == list(expected.columns)
        assert np.allclose(
            got[PREDICTION_COLUMNS].to_numpy(dtype=float),
            expected[PREDICTION_COLUMNS].to_numpy(dtype=float),
            rtol=0,
            atol=1e-9,
            equal_nan=True,
        ), relative
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        rows += len(expected)
        rejected += int(expected["error"].notna().sum())
    assert (summary.rows, summary.rejected) == (rows, rejected)
    assert summary.predicted == rows - rejected
    assert rejected >= 10  # the odd rows and the real file's quirks were refused, in place


def test_s3_input_and_output(
    dask_client, inputs: Path, model_dir: Path, s3_bucket: str, s3_env: str, tmp_path: Path
) -> None:
    import boto3

    settings = Settings(home=tmp_path / "home", s3_endpoint_url=s3_env, aws_region="us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    chosen = input_files(inputs)[:3] + input_files(inputs)[-2:]
    for path in chosen:
        s3.upload_file(str(path), s3_bucket, f"in/{path.relative_to(inputs)}")
    with worker_env(
        dask_client,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    ):
        summary = dask_predict.predict_dataset(
            settings,
            dask_client,
            f"s3://{s3_bucket}/in/",
            f"s3://{s3_bucket}/out",
            model_uri=str(model_dir),
        )
    assert summary.files == len(chosen)
    for path in chosen:
        relative = str(path.relative_to(inputs)).replace(".csv.gz", ".parquet")
        key = f"out/{relative.replace('.csv', '.parquet')}"
        s3.download_file(s3_bucket, key, str(tmp_path / "got.parquet"))
        expected = local_output(settings, model_dir, path, tmp_path / "local.parquet")
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "got.parquet"), expected)


def test_cli_json_summary(
    dask_client, inputs: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["predict", "--engine", "dask", "--scheduler", dask_client.scheduler.address]
    args += ["--model", str(model_dir), "-i", str(inputs / "raw"), "-o", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--format", "json"])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    summary = json.loads(out.out)
    assert summary["engine"] == "dask" and summary["files"] == 2
    assert summary["rows"] == summary["predicted"] + summary["rejected"] == 5016
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "batch-1.parquet",
        "batch-2.parquet",
    ]


def test_unreachable_scheduler_is_one_line_within_seconds(
    inputs: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    args = ["predict", "--engine", "dask", "--scheduler", address, "--model", str(model_dir)]
    started = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        main([*args, "-i", str(inputs / "raw"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == ClusterError.exit_code == 2
    assert time.monotonic() - started < 15
    assert err.startswith(f"error: cannot connect to the Dask scheduler at {address}")
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", "x.json"], "--engine dask scores files"),
        (["-i", "nowhere", "-o", "out"], "--input nowhere: no such file, folder or prefix"),
        (["--url", "http://localhost:1", "-i", "a", "-o", "b"], "--engine dask scores files"),
    ],
)
def test_bad_arguments_fail_before_any_cluster(
    args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--engine", "dask", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert message in err and "worker(s)" not in err
