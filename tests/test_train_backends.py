"""``eta train`` / ``eta register`` / ``load_model`` against real MLflow backends.

PostgreSQL backend store + S3 artifacts (moto server over HTTP), a remote
``mlflow server`` subprocess on a loopback port, and unreachable or misconfigured
MLflow, which must fail fast with one clear line naming the (redacted) URI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import free_port, wait_for_port

from eta_cli import registry, schema, synthetic, tracking
from eta_cli.cli import main
from eta_cli.config import load_settings


def write_orders(path: Path, n: int = 2500, seed: int = 0) -> Path:
    """Clean orders as ingest writes them (order_id, clean columns, target, order_date)."""
    raw = synthetic.generate_orders(n, seed=seed, messy=False)
    raw.insert(0, schema.ORDER_ID, [f"s{seed}-{i:06d}" for i in range(len(raw))])
    raw[schema.TARGET] = (raw[schema.DELIVERED_AT] - raw[schema.CREATED_AT]).dt.total_seconds()
    raw[schema.ORDER_DATE] = raw[schema.CREATED_AT].dt.strftime("%Y-%m-%d")
    raw[list(schema.CLEAN_COLUMNS)].to_parquet(path, index=False)
    return path


def eta_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    with pytest.raises(SystemExit) as exc:
        main([*args, "--json"])
    out = capsys.readouterr()
    assert exc.value.code in (0, None), out.err
    return json.loads(out.out)


def train_register_load(tmp_path: Path, capsys: pytest.CaptureFixture) -> dict:
    """The whole flow on whatever backend the environment points at."""
    data = write_orders(tmp_path / "orders.parquet")
    good = eta_json(capsys, "train", "--data", str(data), "--max-rounds", "40")
    first = eta_json(capsys, "register")
    assert first["action"] == "champion" and first["version"] == "1"
    worse = eta_json(capsys, "train", "--data", str(data), "--max-rounds", "1")
    second = eta_json(capsys, "register", "--run-id", worse["run_id"])
    assert second["action"] == "challenger", second["reason"]

    settings = load_settings()
    loaded = registry.load_model(settings)
    assert loaded.version == "1" and loaded.run_id == good["run_id"]
    orders = pd.read_parquet(data).tail(30)
    predictions = loaded.model.predict_frame(orders)
    assert (predictions["eta_p50_s"] > 0).all()
    assert registry.resolve_version(settings, "eta", "challenger") == "2"
    reference = registry.reference_sample(settings)
    assert len(reference) == good["rows"]["train"]

    import mlflow

    pyfunc = mlflow.pyfunc.load_model(good["model_uri"])
    np.testing.assert_allclose(
        pyfunc.predict(orders[list(schema.INPUT_COLUMNS)]).to_numpy(), predictions.to_numpy()
    )
    return {"good": good, "worse": worse}


@pytest.mark.postgres
@pytest.mark.s3
def test_postgres_store_and_s3_artifacts(pg_url, s3_bucket, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)  # restored after the test
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pg_url)
    monkeypatch.setenv("ETA_ARTIFACT_LOCATION", f"s3://{s3_bucket}/mlflow")
    runs = train_register_load(tmp_path, capsys)

    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    run_id = runs["good"]["run_id"]
    assert any(k.endswith(f"{run_id}/artifacts/reference/orders.parquet") for k in keys)
    assert any(k.endswith(f"{run_id}/artifacts/plots/feature_importance.png") for k in keys)
    assert any(k.endswith("artifacts/model_dir/booster.ubj") for k in keys)
    # Nothing went to the embedded default.
    assert not (tmp_path / "eta-home" / "mlflow.db").exists()
    assert not (tmp_path / "eta-home" / "mlartifacts").exists()

    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_url)
    with engine.connect() as conn:
        names = conn.execute(sqlalchemy.text("select name from registered_models")).scalars()
        assert list(names) == ["eta"]
        rows = conn.execute(sqlalchemy.text("select alias, version from registered_model_aliases"))
        aliases = {alias: int(version) for alias, version in rows}
    engine.dispose()
    assert aliases == {"champion": 1, "challenger": 2}


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real ``mlflow server`` proxying artifacts, on a free loopback port."""
    port = free_port()
    venv_bin = Path(sys.executable).parent
    artifacts = tmp_path / "server-artifacts"
    log = (tmp_path / "mlflow-server.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ETA_"))}
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        [
            str(venv_bin / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--serve-artifacts",
            "--artifacts-destination",
            str(artifacts),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=120, proc=proc)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield url, artifacts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.mark.slow
def test_remote_tracking_server(mlflow_server, monkeypatch, tmp_path, capsys) -> None:
    url, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    runs = train_register_load(tmp_path, capsys)
    # Artifacts went through the server's proxy into its destination folder.
    stored = {p.name for p in artifacts.rglob("*") if p.is_file()}
    assert {"orders.parquet", "test_orders.parquet", "booster.ubj", "MLmodel"} <= stored
    assert not (tmp_path / "eta-home" / "mlflow.db").exists()
    assert runs["good"]["model_uri"].startswith("runs:/")


def _run_cli(args: list[str], env_extra: dict[str, str], home: Path) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))}
    env.update({"ETA_HOME": str(home), **env_extra})
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "eta_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stderr, time.perf_counter() - start


@pytest.mark.parametrize(
    ("uri", "expect"),
    [
        ("http://127.0.0.1:{port}", ["cannot connect", "http://127.0.0.1:{port}"]),
        (
            "postgresql+psycopg2://nosuchuser:wrong@127.0.0.1:5432/nodb",
            ["cannot connect", "postgresql+psycopg2://nosuchuser:***@127.0.0.1:5432/nodb"],
        ),
        ("sqlite:///{tmp}/no/such/folder/mlflow.db", ["folder", "does not exist"]),
        ("ftp://example.invalid/mlflow", ["unsupported scheme"]),
    ],
    ids=["refused-http", "wrong-postgres-password", "missing-sqlite-folder", "bad-scheme"],
)
@pytest.mark.parametrize("command", ["train", "register"])
def test_unreachable_mlflow_is_one_line_and_fast(tmp_path, uri, expect, command) -> None:
    port = free_port()  # nothing listens there
    uri = uri.format(port=port, tmp=tmp_path)
    args = ["register", "--list"]
    if command == "train":
        args = ["train", "--data", str(write_orders(tmp_path / "o.parquet", n=600))]
    code, err, seconds = _run_cli(args, {"MLFLOW_TRACKING_URI": uri}, tmp_path / "home")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for text in expect:
        assert text.format(port=port) in lines[0]
    assert "wrong" not in lines[0]  # the password never shows
    assert "Traceback" not in err
    assert seconds < 45  # interpreter + imports on a shared machine; the check itself is quick


def test_missing_artifact_bucket(s3_env, tmp_path) -> None:
    code, err, _ = _run_cli(
        ["register", "--list"],
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "ETA_ARTIFACT_LOCATION": "s3://no-such-bucket-eta/mlflow",
        },
        tmp_path / "home",
    )
    assert code == 2, err
    assert "bucket 'no-such-bucket-eta' does not exist" in err
    assert err.count("\n") == 1


def test_configure_fails_within_seconds_in_process(tmp_path) -> None:
    for uri in (
        f"http://127.0.0.1:{free_port()}",
        "postgresql+psycopg2://nosuchuser:wrong@127.0.0.1:5432/nodb",
    ):
        settings = load_settings(overrides={"tracking_uri": uri})
        start = time.perf_counter()
        with pytest.raises(tracking.TrackingError):
            tracking.configure(settings)
        assert time.perf_counter() - start < 10
        start = time.perf_counter()
        with pytest.raises(tracking.TrackingError):
            registry.resolve_version(settings, "eta", "champion")
        assert time.perf_counter() - start < 20
