"""``eta ingest --engine dask`` reconciles exactly with the local ingest of the same files."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from helpers_dask import quarantine_keys, worker_env, write_source_files

from eta_cli import ingest
from eta_cli.cli import main
from eta_cli.config import Settings
from eta_cli.lake import read_orders

pytest_plugins = ("fixtures_dask",)  # the session's two-worker cluster: dask_client

TOTALS = ("rows_read", "rows_written", "rows_quarantined", "rows_cleaned", "reasons", "cleaned")


def totals(result: ingest.IngestResult) -> dict:
    return {name: getattr(result, name) for name in TOTALS} | {"partitions": result.partitions}


def published(lake: Path) -> pd.DataFrame:
    frame = read_orders(str(lake / "orders"))
    return frame.sort_values("order_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_source_files(folder)
    return folder


def test_totals_rows_and_quarantine_match_the_local_ingest(
    dask_client, sources: Path, tmp_path: Path, settings: Settings
) -> None:
    local = ingest.ingest(settings, [str(sources)], output=str(tmp_path / "local"))
    dask = ingest.ingest(
        settings,
        [str(sources)],
        engine="dask",
        scheduler=dask_client.scheduler.address,
        output=str(tmp_path / "dask"),
    )

    assert dask.balanced and local.balanced
    assert totals(dask) == totals(local)
    assert dask.rows_quarantined > 6000  # the repeated file, the malformed line, bad rows
    assert dask.reasons["duplicate_order"] >= 5900 and dask.reasons["malformed_row"] == 1
    pd.testing.assert_frame_equal(published(tmp_path / "dask"), published(tmp_path / "local"))
    assert quarantine_keys(dask.quarantine) == quarantine_keys(local.quarantine)
    # Nothing of the run is left behind: no staging area, no journal.
    assert not (tmp_path / "dask" / "_staging").exists()
    assert os.listdir(tmp_path / "dask" / "_journal") == []

    # Idempotent: the same files again publish nothing, exactly like the local engine.
    local_again = ingest.ingest(settings, [str(sources)], output=str(tmp_path / "local"))
    dask_again = ingest.ingest(
        settings,
        [str(sources)],
        engine="dask",
        scheduler=dask_client.scheduler.address,
        output=str(tmp_path / "dask"),
    )
    assert totals(dask_again) == totals(local_again)
    assert dask_again.rows_written == 0 and dask_again.partitions == []
    # Every order accepted the first time (kept or duplicate) is now a duplicate.
    assert dask_again.reasons["duplicate_order"] == (
        dask.rows_written + dask.reasons["duplicate_order"]
    )
    pd.testing.assert_frame_equal(published(tmp_path / "dask"), published(tmp_path / "local"))


def test_new_files_are_merged_into_existing_partitions(
    dask_client, sources: Path, tmp_path: Path, settings: Settings
) -> None:
    files = sorted(str(p) for p in sources.iterdir())
    first, rest = files[:2], files[2:]
    for engine in ("local", "dask"):
        out = str(tmp_path / engine)
        for batch in (first, rest):
            if engine == "local":
                ingest.ingest(settings, batch, output=out)
            else:
                ingest.ingest(
                    settings,
                    batch,
                    engine="dask",
                    scheduler=dask_client.scheduler.address,
                    output=out,
                )
    pd.testing.assert_frame_equal(published(tmp_path / "dask"), published(tmp_path / "local"))


def test_s3_lake(dask_client, sources: Path, s3_bucket: str, s3_env: str, tmp_path) -> None:
    settings = Settings(home=tmp_path / "home", s3_endpoint_url=s3_env, aws_region="us-east-1")
    local = ingest.ingest(settings, [str(sources)], output=str(tmp_path / "local"))
    uri = f"s3://{s3_bucket}/lake"
    with worker_env(
        dask_client,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    ):
        dask = ingest.ingest(
            settings,
            [str(sources)],
            engine="dask",
            scheduler=dask_client.scheduler.address,
            output=uri,
        )
    assert totals(dask) == totals(local)
    assert dask.quarantine and dask.quarantine.startswith(f"{uri}/quarantine/")
    frame = read_orders(f"{uri}/orders", settings=settings)
    pd.testing.assert_frame_equal(
        frame.sort_values("order_id").reset_index(drop=True), published(tmp_path / "local")
    )
    import boto3

    keys = [
        o["Key"]
        for o in boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
        .list_objects_v2(Bucket=s3_bucket)
        .get("Contents", [])
    ]
    assert not [k for k in keys if "/_staging/" in k or "/_journal/" in k]


def test_a_bad_source_stops_the_run_before_any_work(
    dask_client, sources: Path, tmp_path: Path, settings: Settings
) -> None:
    (tmp_path / "bad.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ingest.IngestError, match=r"bad\.csv: not an orders file"):
        ingest.ingest(
            settings,
            [str(sources), str(tmp_path / "bad.csv")],
            engine="dask",
            scheduler=dask_client.scheduler.address,
            output=str(tmp_path / "lake"),
        )
    assert not (tmp_path / "lake" / "orders").exists()


def test_cli_on_a_running_scheduler(
    dask_client, sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    address = dask_client.scheduler.address
    args = ["ingest", str(sources), "-o", str(tmp_path / "lake"), "--json"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--engine", "dask", "--scheduler", address])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    result = json.loads(out.out)
    assert result["balanced"] and result["rows_read"] > 30_000
    assert "worker(s)" in out.err and "dashboard" in out.err
    # The printed dashboard address is served (bokeh is a dependency for this).
    link = re.search(r"dashboard (http://\S+)", out.err)
    assert link is not None, out.err
    with urllib.request.urlopen(link[1], timeout=30) as response:
        assert response.status == 200
        assert "Dask" in response.read().decode("utf-8", "replace")


def test_cli_refuses_a_scheduler_without_the_dask_engine(capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "--synthetic", "10", "-o", str(tmp_path), "--scheduler", "tcp://x:1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.strip() == "error: --scheduler only applies to --engine dask"
