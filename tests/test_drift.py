"""``eta drift-report`` on real data paths: detection, files, S3, PostgreSQL, webhook, CLI."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from helpers_model import fake_loaded

from eta_cli import synthetic
from eta_cli.cli import main
from eta_cli.config import Settings
from eta_cli.model import OUTPUT_COLUMNS
from eta_cli.monitor import database, drift
from eta_cli.storage import StorageError

REF_ROWS = 4000
CUR_ROWS = 2000


def _write(frame: pd.DataFrame, path: Path, scored: bool = False) -> str:
    if scored:  # as the champion's reference sample / the prediction log carry them
        frame = pd.concat([frame, fake_loaded().model.predict_frame(frame)], axis=1)
    frame.to_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """One synthetic world (seed 0): a reference, a drifted batch, a stable later batch."""
    return {
        "reference": synthetic.generate_orders(REF_ROWS, seed=0),
        "drifted": synthetic.generate_orders(CUR_ROWS, seed=0, drift=True),
        "stable": synthetic.generate_orders(CUR_ROWS, seed=0, start="2015-02-18", days=7),
    }


@pytest.fixture
def paths(tmp_path: Path, frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {name: _write(frame, tmp_path / f"{name}.parquet") for name, frame in frames.items()}


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(  # type: ignore[attr-defined]
            {"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)}
        )
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A local Slack-like webhook receiver on a loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret"
        yield url, server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_drifted_batch_is_detected_and_stable_batch_is_not(
    settings: Settings, paths: dict[str, str]
) -> None:
    model = fake_loaded()
    drifted = drift.drift_report(
        settings, reference=paths["reference"], current=paths["drifted"], model=model
    )
    stable = drift.drift_report(
        settings, reference=paths["reference"], current=paths["stable"], model=model
    )

    assert drifted.dataset_drift is True
    assert drifted.drift_share >= settings.drift_share_threshold
    names = {c.column for c in drifted.columns if c.drifted}
    # The drifted generator has bigger baskets, fewer dashers and a new market.
    assert {"total_items", "total_onshift_dashers", "market_id"} <= names
    assert drifted.prediction is not None and drifted.prediction.drifted
    assert drifted.prediction_source == "scored"

    assert stable.dataset_drift is False
    assert stable.drifted_columns / stable.total_columns < settings.drift_share_threshold
    assert stable.prediction is not None and not stable.prediction.drifted

    # Every column of the model's input is tested, store_id excluded, hour of day derived.
    assert [c.column for c in stable.columns] == list(drift.DRIFT_COLUMNS)
    assert "store_id" not in drift.DRIFT_COLUMNS and drift.HOUR_COLUMN in drift.DRIFT_COLUMNS
    kinds = {c.column: c.kind for c in stable.columns}
    assert kinds["market_id"] == kinds["store_primary_category"] == "categorical"
    assert kinds["subtotal"] == "numerical"

    # Quality is known (the files carry the delivery time): figures in a sane range.
    assert drifted.quality is not None and drifted.quality.rows > 0.95 * CUR_ROWS
    assert 0 < drifted.quality.interval_coverage < 1
    assert drifted.quality.mae_s > stable.quality.mae_s  # the old model is worse on drift


def test_files_and_summary_say_what_was_sampled(settings: Settings, paths: dict[str, str]) -> None:
    result = drift.drift_report(
        settings,
        reference=paths["reference"],
        current=paths["drifted"],
        sample_rows=1500,
        model=fake_loaded(),
    )
    html_path, json_path = Path(result.html_path), Path(result.json_path)
    assert html_path.parent == Path(settings.effective_reports_dir)
    assert re.fullmatch(r"drift-\d{8}T\d{6}Z-[0-9a-f]{6}\.html", html_path.name)
    assert json_path.with_suffix(".html") == html_path
    assert html_path.stat().st_size < 10_000_000

    summary = json.loads(json_path.read_text())
    assert summary["reference"] == {
        "source": paths["reference"],
        "rows": REF_ROWS,
        "sampled_rows": 1500,
    }
    assert summary["current"]["rows"] == CUR_ROWS
    assert summary["current"]["sampled_rows"] == 1500
    assert summary["sampling"]["sampled"] is True
    assert "sampled rows" in summary["sampling"]["note"]
    assert summary["data_drift"]["dataset_drift"] is True
    assert summary["report_id"] == result.report_id is not None
    assert summary["quality"]["rows"] <= 1500
    # The same numbers in the HTML header, next to Evidently's own report.
    page = html_path.read_text()
    assert "DATASET DRIFT DETECTED" in page and "1,500 sampled" in page

    again = drift.drift_report(
        settings,
        reference=paths["reference"],
        current=paths["drifted"],
        sample_rows=1500,
        model=fake_loaded(),
    )
    assert [c.score for c in again.columns] == [c.score for c in result.columns]  # seeded


def test_results_land_in_the_default_sqlite_database(
    settings: Settings, paths: dict[str, str]
) -> None:
    result = drift.drift_report(
        settings, reference=paths["reference"], current=paths["drifted"], model=fake_loaded()
    )
    engine = database.engine_for(settings)
    assert settings.effective_database_url.startswith("sqlite:///")
    with engine.connect() as conn:
        report = conn.execute(database.drift_reports.select()).mappings().one()
        columns = conn.execute(database.drift_columns.select()).mappings().all()
    engine.dispose()
    assert report["id"] == result.report_id
    assert report["dataset_drift"] is True and report["model_version"] == "1"
    assert report["drifted_columns"] == result.drifted_columns
    assert report["total_columns"] == len(drift.DRIFT_COLUMNS)
    assert report["current_rows"] == CUR_ROWS and report["reference_rows"] == REF_ROWS
    assert report["mae_s"] == pytest.approx(result.quality.mae_s)
    assert report["html_uri"] == result.html_path
    # One row per input column plus the prediction.
    assert sorted(c["column_name"] for c in columns) == sorted(
        [*drift.DRIFT_COLUMNS, drift.PREDICTION_COLUMN]
    )
    assert all(c["report_id"] == result.report_id for c in columns)


@pytest.mark.postgres
def test_results_land_in_postgresql(settings: Settings, paths: dict[str, str], pg_url: str) -> None:
    pg_settings = settings.replace(database_url=pg_url)
    result = drift.drift_report(
        pg_settings, reference=paths["reference"], current=paths["stable"], model=fake_loaded()
    )
    engine = database.make_engine(pg_url)
    with engine.connect() as conn:
        report = conn.execute(database.drift_reports.select()).mappings().one()
        drifted = conn.execute(
            database.drift_columns.select().where(database.drift_columns.c.drifted)
        ).all()
        count = conn.execute(database.drift_columns.select()).all()
    engine.dispose()
    assert report["id"] == result.report_id and report["dataset_drift"] is False
    assert report["drift_share"] == pytest.approx(result.drift_share)
    assert report["prediction_drift_score"] == pytest.approx(result.prediction.score)
    assert len(count) == len(drift.DRIFT_COLUMNS) + 1
    assert len(drifted) == result.drifted_columns


@pytest.mark.s3
def test_reports_are_uploaded_to_s3(
    settings: Settings, paths: dict[str, str], s3_env: str, s3_bucket: str
) -> None:
    import boto3

    s3_settings = settings.replace(s3_bucket=s3_bucket, s3_endpoint_url=s3_env)
    result = drift.drift_report(
        s3_settings,
        reference=paths["reference"],
        current=paths["drifted"],
        upload_s3=True,
        model=fake_loaded(),
    )
    assert not result.errors
    day = result.created_at.strftime("%Y/%m/%d")
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    for uri, local in ((result.html_uri, result.html_path), (result.json_uri, result.json_path)):
        assert uri == f"s3://{s3_bucket}/eta/reports/{day}/{Path(local).name}"
        body = client.get_object(Bucket=s3_bucket, Key=uri.split("/", 3)[3])["Body"].read()
        assert body == Path(local).read_bytes()
    engine = database.engine_for(s3_settings)
    with engine.connect() as conn:
        row = conn.execute(database.drift_reports.select()).mappings().one()
    engine.dispose()
    assert row["html_uri"] == result.html_uri and row["json_uri"] == result.json_uri


def test_upload_without_a_bucket_is_a_clear_error(
    settings: Settings, paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(StorageError, match="ETA_S3_BUCKET"):
        drift.drift_report(
            settings, reference=paths["reference"], current=paths["stable"], upload_s3=True
        )
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "drift-report",
                "--reference",
                paths["reference"],
                "--current",
                paths["stable"],
                "--upload-s3",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "ETA_S3_BUCKET" in err and "Traceback" not in err


def test_drift_alert_reaches_the_webhook_with_the_facts(
    settings: Settings, paths: dict[str, str], webhook: tuple[str, list[dict]]
) -> None:
    url, received = webhook
    stable = drift.drift_report(
        settings,
        reference=paths["reference"],
        current=paths["stable"],
        alert_webhook=url,
        model=fake_loaded(),
    )
    assert stable.alert is None and received == []  # no drift, no message

    result = drift.drift_report(
        settings,
        reference=paths["reference"],
        current=paths["drifted"],
        alert_webhook=url,
        model=fake_loaded(),
    )
    assert result.alert["sent"] is True
    assert result.alert["url"].endswith("/***")  # the secret path is not echoed
    assert len(received) == 1
    message = received[0]
    assert message["type"] == "application/json" and message["path"].endswith("/secret")
    assert set(message["body"]) == {"text"}  # Slack-compatible
    text = message["body"]["text"]
    assert "dataset drift detected" in text
    assert f"{result.drifted_columns}/{result.total_columns} columns" in text
    assert "total_items" in text and "eta_p50_s" in text
    assert result.html_path in text


def test_failed_webhook_is_reported_and_the_report_kept(
    settings: Settings, paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/hooks/secret-token"
    result = drift.drift_report(
        settings,
        reference=paths["reference"],
        current=paths["drifted"],
        alert_webhook=dead,
        model=fake_loaded(),
    )
    assert result.alert["sent"] is False and result.alert["error"]
    assert "secret-token" not in json.dumps(result.to_dict())
    assert Path(result.html_path).is_file() and result.report_id is not None
    assert result.exit_code == 0  # an alert failure alone does not fail the run


def _scored_paths(tmp_path: Path, frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Files that already carry predictions: the CLI then needs no model at all."""
    return {
        name: _write(frame, tmp_path / f"scored-{name}.parquet", scored=True)
        for name, frame in frames.items()
    }


def test_cli_fail_on_drift_exit_code_and_json(
    tmp_path: Path, frames: dict[str, pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    scored = _scored_paths(tmp_path, frames)
    base = ["drift-report", "--reference", scored["reference"], "--sample", "1500"]

    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--current", scored["drifted"], "--fail-on-drift", "--json"])
    assert exit_info.value.code == drift.EXIT_DRIFT == 3
    summary = json.loads(capsys.readouterr().out)
    assert summary["data_drift"]["dataset_drift"] is True
    assert summary["prediction_drift"]["source"] == "logged"
    assert summary["exit_code"] == 3
    assert set(summary["model"]) == {"name", "version", "uri"}

    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--current", scored["drifted"]])
    assert exit_info.value.code == 0  # drift without --fail-on-drift is not a failure
    out = capsys.readouterr().out
    assert "dataset drift detected" in out and "html:" in out

    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--current", scored["stable"], "--fail-on-drift"])
    assert exit_info.value.code == 0
    assert "no dataset drift" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--current", "missing.parquet"], "missing.parquet: no such file"),
        (["--since", "yesterday"], "--since 'yesterday' is not understood"),
        (["--sample", "-5"], "must be >= 0"),
    ],
)
def test_cli_bad_input_names_what_is_wrong(
    paths: dict[str, str], args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["drift-report", "--reference", paths["reference"], *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_input_without_the_order_columns_is_refused(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    pd.DataFrame({"market_id": [1, 2], "subtotal": [100, 200]}).to_csv(path, index=False)
    with pytest.raises(drift.DriftInputError, match=r"lacks column\(s\) created_at, store_id"):
        drift.drift_report(settings, reference=str(path), current=str(path))


def test_csv_in_the_raw_file_format_is_accepted(
    settings: Settings, tmp_path: Path, frames: dict[str, pd.DataFrame]
) -> None:
    ref = synthetic.write_csv(frames["reference"], tmp_path / "ref.csv")
    cur = synthetic.write_csv(frames["drifted"], tmp_path / "cur.csv", spelling="reexport")
    result = drift.drift_report(settings, reference=str(ref), current=str(cur), model=fake_loaded())
    assert result.dataset_drift and result.quality is not None


def test_since_keeps_a_window_ending_at_the_newest_order(
    settings: Settings, tmp_path: Path, frames: dict[str, pd.DataFrame]
) -> None:
    cur = frames["stable"]
    path = _write(cur, tmp_path / "cur.parquet")
    result = drift.drift_report(
        settings, reference=path, current=path, since="2d", model=fake_loaded()
    )
    newest = cur["created_at"].max()
    expected = int((cur["created_at"] >= newest - pd.Timedelta(days=2)).sum())
    assert result.current_rows == expected < len(cur)
    assert result.window["from"].startswith(str((newest - pd.Timedelta(days=2)).date()))


def test_output_columns_match_the_model() -> None:
    assert drift.PREDICTION_COLUMNS == OUTPUT_COLUMNS
