"""The lake on S3 with concurrent writers, crashed runs and faults (a real local S3 server).

Two `eta ingest` processes on one S3 prefix, a live holder that makes a second writer
wait and stop naming it, a crashed run's lock and staging cleaned, a run whose lock was
taken over stopping before its publish, readers rolling a pending publish forward, the
S3 server going away mid-ingest, and a full staging folder.
"""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import pandas as pd
import pytest

from eta_cli import ingest, schema, storage, synthetic
from eta_cli.config import Settings, load_settings
from eta_cli.errors import EtaError
from eta_cli.ingest import IngestError
from eta_cli.lake import dataset_uri, publish, read_orders
from eta_cli.lake.lock import LockLostError

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def few_days() -> pd.DataFrame:
    return synthetic.generate_orders(2_000, seed=21, days=3)


def s3(settings: Settings):
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")


def keys(settings: Settings, bucket: str, prefix: str = "") -> list[str]:
    listing = s3(settings).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def ids(frame: pd.DataFrame) -> list[str]:
    return sorted(frame[schema.ORDER_ID].astype(str))


def reference_ids(tmp_path: Path, *files: Path) -> list[str]:
    """What the lake should hold: the same files ingested one after the other, locally."""
    settings = load_settings(overrides={"data_uri": str(tmp_path / f"ref-{uuid.uuid4().hex}")})
    for path in files:
        ingest.ingest(settings, [str(path)])
    return ids(read_orders(settings))


SLOW_SCRIPT = """
import sys, time
from eta_cli.cli import main
from eta_cli.lake import publish

def checkpoint(name, **info):
    if name == "prepared":  # merged against the published days, not yet published
        time.sleep(float(sys.argv[1]))

publish.checkpoint = checkpoint
main(["ingest", "--json", *sys.argv[2:]])
"""


@pytest.mark.slow
def test_two_concurrent_ingests_on_one_s3_prefix_lose_nothing(tmp_path, few_days, s3_bucket):
    out = f"s3://{s3_bucket}/lake"
    first = synthetic.write_csv(few_days.iloc[:1000], tmp_path / "first.csv")
    second = synthetic.write_csv(few_days.iloc[700:], tmp_path / "second.csv")  # overlapping
    script = tmp_path / "slow.py"
    script.write_text(SLOW_SCRIPT)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), "1.5", str(path), "--output", out],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in (first, second)
    ]
    results = [proc.communicate(timeout=240) for proc in procs]
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
    payloads = [json.loads(stdout) for stdout, _ in results]
    settings = load_settings()
    frame = read_orders(dataset_uri(settings.replace(data_uri=out)), settings=settings)
    assert frame[schema.ORDER_ID].is_unique
    assert ids(frame) == reference_ids(tmp_path, first, second)  # no update lost
    assert len(frame) == sum(p["rows_written"] for p in payloads)
    assert not keys(settings, s3_bucket, "lake/_staging") + keys(settings, s3_bucket, "lake/_lock")


def test_a_live_holder_makes_a_second_writer_wait_then_stop_naming_it(
    tmp_path, few_days, s3_bucket
):
    settings = load_settings().replace(
        data_uri=f"s3://{s3_bucket}/lake", lake_lock_wait_s=1.0, lake_lock_lease_s=60
    )
    path = synthetic.write_csv(few_days.iloc[:200], tmp_path / "few.csv")
    holder = {"host": "night-box", "pid": 4242, "run_id": "run-x", "since": "2015-02-01T00:00:00Z"}
    s3(settings).put_object(Bucket=s3_bucket, Key="lake/_lock.json", Body=json.dumps(holder))
    started = time.monotonic()
    with pytest.raises(IngestError) as refused:
        ingest.ingest(settings, [str(path)])
    message = str(refused.value)
    assert time.monotonic() - started >= 1.0  # it waited
    assert "another `eta ingest` is writing to s3://" in message
    assert "night-box pid 4242, run run-x" in message and "ETA_LAKE_LOCK_WAIT_S" in message
    assert keys(settings, s3_bucket, "lake/") == ["lake/_lock.json"]  # nothing written


def test_a_crashed_runs_lock_and_staging_are_taken_over_and_cleaned(tmp_path, few_days, s3_bucket):
    settings = load_settings().replace(
        data_uri=f"s3://{s3_bucket}/lake", lake_lock_wait_s=10, lake_lock_lease_s=1
    )
    client = s3(settings)
    dead = {"host": "gone", "pid": 1, "run_id": "dead-run", "since": "2015-02-01T00:00:00Z"}
    client.put_object(Bucket=s3_bucket, Key="lake/_lock.json", Body=json.dumps(dead))
    client.put_object(Bucket=s3_bucket, Key="lake/_staging/dead-run/publish/x.parquet", Body=b"x")
    time.sleep(2.2)  # neither renewed for longer than the lease
    path = synthetic.write_csv(few_days.iloc[:300], tmp_path / "few.csv")
    result = ingest.ingest(settings, [str(path)])
    assert result.rows_written + result.rows_quarantined == 300
    left = keys(settings, s3_bucket, "lake/")
    assert not [k for k in left if k.startswith(("lake/_staging", "lake/_lock", "lake/_journal"))]


def test_a_run_whose_lock_was_taken_over_publishes_nothing(
    tmp_path, few_days, s3_bucket, monkeypatch
):
    settings = load_settings().replace(data_uri=f"s3://{s3_bucket}/lake", lake_lock_lease_s=60)
    client = s3(settings)
    first = synthetic.write_csv(few_days.iloc[:500], tmp_path / "first.csv")
    ingest.ingest(settings, [str(first)])
    published = {
        k: client.get_object(Bucket=s3_bucket, Key=k)["ETag"]
        for k in keys(settings, s3_bucket, "lake/orders/")
    }

    def stolen(stage: str, **info: object) -> None:
        if stage == "prepared":  # another writer broke our lease while we were stalled
            client.put_object(Bucket=s3_bucket, Key="lake/_lock.json", Body=b'{"host": "thief"}')

    monkeypatch.setattr(publish, "checkpoint", stolen)
    second = synthetic.write_csv(few_days.iloc[500:], tmp_path / "second.csv")
    with pytest.raises(LockLostError, match=r"taken over by thief.*nothing was published"):
        ingest.ingest(settings, [str(second)])
    after = {
        k: client.get_object(Bucket=s3_bucket, Key=k)["ETag"]
        for k in keys(settings, s3_bucket, "lake/orders/")
    }
    assert after == published
    assert not keys(settings, s3_bucket, "lake/_journal") + keys(
        settings, s3_bucket, "lake/_staging"
    )
    # The thief's lock is not ours to delete.
    assert client.get_object(Bucket=s3_bucket, Key="lake/_lock.json")["Body"].read() == (
        b'{"host": "thief"}'
    )


def test_readers_roll_a_pending_s3_publish_forward(tmp_path, few_days, s3_bucket, monkeypatch):
    settings = load_settings().replace(data_uri=f"s3://{s3_bucket}/lake", ingest_chunk_rows=500)
    first = synthetic.write_csv(few_days.iloc[:1200], tmp_path / "first.csv")
    second = synthetic.write_csv(few_days.iloc[1200:], tmp_path / "second.csv")
    ingest.ingest(settings, [str(first)])
    moved: list[object] = []

    def cut_after_one_move(stage: str, **info: object) -> None:
        if stage == "moved":
            moved.append(info)
            raise RuntimeError("connection reset")

    monkeypatch.setattr(publish, "checkpoint", cut_after_one_move)
    with pytest.raises(storage.StorageError, match="the next `eta ingest` completes it"):
        ingest.ingest(settings, [str(second)])
    assert len(keys(settings, s3_bucket, "lake/_journal/")) == 1
    monkeypatch.setattr(publish, "checkpoint", lambda stage, **info: None)
    # Half of the run is in place, half still staged: a reader sees all of it.
    frame = read_orders(dataset_uri(settings), settings=settings)
    assert frame[schema.ORDER_ID].is_unique
    assert ids(frame) == reference_ids(tmp_path, first, second)


# ------------------------------------------------------------------------------------ faults


class Outage:
    """A TCP relay in front of the S3 server that can be cut and restored: the server
    'stops' for the client (connections refused and reset) and comes back with its data."""

    def __init__(self, target: str) -> None:
        self.target = ("127.0.0.1", int(target.rsplit(":", 1)[1]))
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self.start()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for sock in self._conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self._conns.clear()


@pytest.mark.slow
def test_s3_server_stopped_mid_ingest_publishes_nothing_and_the_next_run_completes(
    tmp_path, few_days, s3_bucket, s3_endpoint, monkeypatch
):
    outage = Outage(s3_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", outage.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    settings = load_settings().replace(
        data_uri=f"s3://{s3_bucket}/lake",
        ingest_chunk_rows=300,
        lake_lock_lease_s=2,
        lake_lock_wait_s=15,
    )
    first = synthetic.write_csv(few_days.iloc[:800], tmp_path / "first.csv")
    second = synthetic.write_csv(few_days.iloc[800:], tmp_path / "second.csv")
    ingest.ingest(settings, [str(first)])
    before = {
        k: s3(settings).get_object(Bucket=s3_bucket, Key=k)["ETag"]
        for k in keys(settings, s3_bucket, "lake/")
    }

    def stop_after_first_chunk(stage: str, **info: object) -> None:
        if stage == "chunk":
            outage.stop()

    monkeypatch.setattr(publish, "checkpoint", stop_after_first_chunk)
    try:
        with pytest.raises(EtaError) as failed:
            ingest.ingest(settings, [str(second)])
    finally:
        outage.stop()
        outage.start()
    message = str(failed.value)
    assert failed.value.exit_code != 0 and "\n" not in message
    assert f"s3://{s3_bucket}/lake" in message, message
    after = {
        k: s3(settings).get_object(Bucket=s3_bucket, Key=k)["ETag"]
        for k in keys(settings, s3_bucket, "lake/")
        if k != "lake/_lock.json"
    }
    assert after == {k: v for k, v in before.items() if k != "lake/_lock.json"}

    # Cut again in the middle of the publish: the journal is there; the next run completes.
    moves: list[object] = []

    def stop_after_one_move(stage: str, **info: object) -> None:
        if stage == "moved":
            moves.append(info)
            outage.stop()

    monkeypatch.setattr(publish, "checkpoint", stop_after_one_move)
    try:
        with pytest.raises(storage.StorageError, match="the next `eta ingest` completes it"):
            ingest.ingest(settings, [str(second)])
    finally:
        outage.stop()
        outage.start()
    monkeypatch.setattr(publish, "checkpoint", lambda stage, **info: None)
    again = ingest.ingest(settings, [str(second)])  # waits out the dead run's lease
    assert len(again.recovered) == 1 and again.rows_written == 0
    frame = read_orders(dataset_uri(settings), settings=settings)
    assert ids(frame) == reference_ids(tmp_path, first, second)
    left = keys(settings, s3_bucket, "lake/")
    assert not [k for k in left if k.startswith(("lake/_staging", "lake/_journal", "lake/_lock"))]
    outage.stop()


def test_no_space_left_in_the_staging_area(tmp_path, few_days):
    lake = tmp_path / "lake"
    settings = load_settings().replace(data_uri=str(lake), ingest_chunk_rows=500)
    small = synthetic.write_csv(few_days.iloc[:200], tmp_path / "small.csv")
    ingest.ingest(settings, [str(small)])
    published = {p: p.read_bytes() for p in sorted(lake.rglob("*.parquet"))}
    before = ids(read_orders(settings))
    staging = lake / "_staging"
    staging.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(staging)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        big = synthetic.write_csv(
            synthetic.generate_orders(20_000, seed=3, days=3), tmp_path / "big.csv"
        )
        with pytest.raises(storage.StorageError) as full:
            ingest.ingest(settings, [str(big)])
        message = str(full.value)
        assert f"no space left in the staging folder {staging}" in message
        assert "nothing was published" in message
        assert not any(staging.iterdir())  # the failed run cleaned up after itself
    finally:
        gc.collect()  # a failure's frames may still hold the run's open files
        if subprocess.run(["umount", str(staging)], check=False).returncode:
            subprocess.run(["umount", "-l", str(staging)], check=False)
    assert {p: p.read_bytes() for p in sorted(lake.rglob("*.parquet"))} == published
    assert ids(read_orders(settings)) == before
    assert not list((lake / "_journal").glob("*.json"))
