"""The live loop of ``make demo``, command by command, on small data: a champion and a
deliberately weak challenger, ``eta serve`` with the shadow, new orders written by
``eta synthetic`` (no ids) sent through ``eta predict --url``, the same orders ingested
as delivered, and ``eta evaluate``: the ids derived by the service and by ingest join,
and the weak challenger loses and is not promoted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import free_port, wait_for_port

from eta_cli import schema
from eta_cli.cli import main
from eta_cli.config import Settings
from eta_cli.lake import read_orders

ETA = str(Path(sys.executable).with_name("eta"))
LIVE = 600  # new orders: above ETA_LIVE_MIN_ORDERS (200) after the bad rows


def eta(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``eta ARGS`` as the console script runs it: its exit code and stdout."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0), capsys.readouterr().out


@pytest.mark.slow
def test_weak_challenger_loses_on_live_orders_sent_without_ids(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert eta(capsys, "ingest", "--synthetic", "4000", "--seed", "42")[0] == 0
    newest = read_orders(settings, columns=[schema.CREATED_AT])[schema.CREATED_AT].max()
    assert eta(capsys, "train", "--max-rounds", "40")[0] == 0
    assert eta(capsys, "register")[0] == 0
    # The weak candidate in its own experiment, so `eta register` picks it there.
    assert eta(capsys, "train", "--max-rounds", "2", "--experiment", "weak")[0] == 0
    code, out = eta(capsys, "register", "--experiment", "weak", "--json")
    assert code == 0 and json.loads(out)["action"] == "challenger", out

    live = tmp_path / "live.csv"
    code, out = eta(capsys, "synthetic", str(LIVE), "--seed", "7", "--drift", "-o", str(live))
    assert code == 0, out
    sent = pd.read_csv(live, parse_dates=[schema.CREATED_AT])
    assert len(sent) == LIVE and schema.ORDER_ID not in sent.columns
    # New orders: after the lake's newest (the generator's one order of 2014 aside).
    assert (sent[schema.CREATED_AT] > newest).sum() >= LIVE - 1

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [ETA, "serve", "--port", str(port)],
        env=dict(os.environ),  # ETA_SHADOW_ALIAS defaults to challenger
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, timeout=90, proc=proc)
        predicted = tmp_path / "live-predictions.parquet"
        args = ("predict", "--input", str(live), "--output", str(predicted), "--url", url)
        assert eta(capsys, *args, "--wait", "60")[0] == 0
    finally:
        proc.send_signal(signal.SIGTERM)  # flushes the prediction log
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    answered = pd.read_parquet(predicted)
    answered = answered[answered["error"].isna()]
    assert len(answered) > LIVE - 20 and answered[schema.ORDER_ID].str.startswith("v2-").all()

    assert eta(capsys, "ingest", str(live))[0] == 0
    code, out = eta(capsys, "evaluate", "--promote", "--json")
    assert code == 0, out  # not promoted
    result = json.loads(out)
    roles = {m["role"]: m for m in result["models"]}
    assert roles["champion"]["version"] == "1" and roles["challenger"]["version"] == "2"
    # Every answered order that was delivered (a valid duration) joined, for both roles.
    assert roles["champion"]["orders"] == roles["challenger"]["orders"] > LIVE - 40
    comparison = result["comparison"]
    assert comparison["winner"] == "champion", comparison
    assert comparison["ci_low"] > 0  # challenger minus champion: the weak one errs more
    assert roles["challenger"]["mae"] > roles["champion"]["mae"]


@pytest.mark.parametrize(
    ("n", "output", "message"),
    [
        ("10", "orders.txt", "expected a file name ending in .csv or .csv.gz"),
        ("10", "missing/orders.csv", "folder"),
        ("10", "s3://bucket/orders.csv", "a local file is expected"),
        ("5000001", "orders.csv", "expected 1 to 5,000,000 orders"),
    ],
)
def test_synthetic_refuses_what_cannot_work_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], n: str, output: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["synthetic", n, "-o", output])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not any(p.suffix in (".csv", ".partial") for p in tmp_path.rglob("*"))


def test_synthetic_writes_a_whole_gzip_file_that_ingest_reads(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = eta(capsys, "synthetic", "300", "--seed", "3", "-o", "new.csv.gz", "--json")
    assert code == 0
    written = json.loads(out)
    assert written["orders"] == 300 and written["lake_newest_day"] is None
    frame = pd.read_csv(tmp_path / "new.csv.gz")
    assert list(frame.columns) == list(schema.COLUMN_NAMES) and len(frame) == 300
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    code, out = eta(capsys, "ingest", "new.csv.gz", "--json")
    assert code == 0 and json.loads(out)["rows_read"] == 300
