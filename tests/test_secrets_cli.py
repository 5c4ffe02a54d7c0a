"""Secrets never leave the CLI: with a password in the tracking URI (an MLflow server that
is down) and a token in the webhook URL (nothing listening), `eta drift-report`,
`eta doctor`, `eta pipeline` and `eta evaluate` fail or report as they should, and
neither secret appears in their stdout, stderr, JSON or any file they write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from helpers_model import fake_loaded, sample_orders

from eta_cli import synthetic
from eta_cli.config import Settings, load_settings

ETA = str(Path(sys.executable).with_name("eta"))
PASSWORD = "PASSWORD-c41e07"
SECRET = "SECRET-9b2d55"


def run_eta(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETA, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240
    )


def files_holding(root: Path, secret: str) -> list[str]:
    """Every file under ``root`` whose bytes contain ``secret``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and secret.encode() in path.read_bytes():
            found.append(str(path))
    return found


@pytest.mark.slow
def test_no_command_leaks_the_tracking_password_or_the_webhook_token(tmp_path):
    home = tmp_path / "home"
    tracking_uri = f"http://eta-user:{PASSWORD}@127.0.0.1:{free_port()}"
    webhook = f"http://127.0.0.1:{free_port()}/hooks/x?token={SECRET}&channel=eta"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))},
        "MLFLOW_TRACKING_URI": tracking_uri,
        "ETA_ALERT_WEBHOOK": webhook,
        "ETA_HOME": str(home),
        "ETA_CONFIG_DIR": str(Path(__file__).resolve().parent.parent / "configs"),
        "COLUMNS": "250",  # tables keep each URL on one line, as the checks read them
    }
    ref = synthetic.write_csv(synthetic.generate_orders(1500, seed=0), tmp_path / "ref.csv")
    cur = synthetic.generate_orders(800, seed=0, drift=True)
    cur = synthetic.write_csv(cur, tmp_path / "cur.csv")

    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    outputs["config"] = run_eta(env, tmp_path, "config", "show")
    outputs["drift"] = run_eta(
        env, tmp_path, "drift-report", "-r", str(ref), "-c", str(cur), "--json", "--sample", "800"
    )
    outputs["doctor"] = run_eta(env, tmp_path, "doctor", "--json", "--timeout", "5")
    outputs["pipeline"] = run_eta(
        env, tmp_path, "pipeline", "--synthetic", "600", "--retrain", "never", "--json"
    )
    log_predictions_of_the_lake(load_settings(overrides={"home": str(home)}), 40)
    outputs["evaluate"] = run_eta(env, tmp_path, "evaluate", "--json")
    for name, done in outputs.items():
        text = done.stdout + done.stderr
        assert PASSWORD not in text and SECRET not in text, (name, text[-3000:])
        assert "Traceback" not in text, (name, text[-3000:])
    assert files_holding(tmp_path, PASSWORD) == []
    assert [f for f in files_holding(tmp_path, SECRET)] == []

    # The paths that quote the secrets were taken, and each said what failed (redacted).
    shown = "eta-user:***@127.0.0.1"
    drift = json.loads(outputs["drift"].stdout)
    assert drift["data_drift"]["dataset_drift"] is True
    assert drift["alert"]["sent"] is False and "token=***" in drift["alert"]["error"]
    assert any(shown in note for note in drift["notes"])  # the failed champion lookup
    report = Path(drift["files"]["html"]).read_text(encoding="utf-8")
    assert shown in report
    doctor = json.loads(outputs["doctor"].stdout)
    assert outputs["doctor"].returncode == 1 and shown in json.dumps(doctor)
    pipeline = json.loads(outputs["pipeline"].stdout)
    assert outputs["pipeline"].returncode == 6
    drift_step = next(s for s in pipeline["steps"] if s["name"] == "drift")
    assert drift_step["status"] == "failed" and shown in drift_step["detail"]
    assert shown in outputs["pipeline"].stderr  # the step's log line
    evaluated = json.loads(outputs["evaluate"].stdout)
    assert outputs["evaluate"].returncode == 0 and evaluated["joined_orders"] == 40
    assert any(shown in note for note in evaluated["notes"]), evaluated["notes"]
    assert shown in outputs["config"].stdout


def log_predictions_of_the_lake(settings: Settings, n: int) -> None:
    """``n`` of the lake's orders predicted and logged by the real service app, so that
    `eta evaluate` has orders to join (and then asks the registry for the aliases)."""
    from eta_cli import lake
    from eta_cli.serve import ModelProvider, create_app
    from eta_cli.serve.prediction_log import PredictionLog

    ids = lake.read_orders(settings, columns=["order_id"])["order_id"].head(n).tolist()
    orders = [{**order, "order_id": str(i)} for order, i in zip(sample_orders(n), ids, strict=True)]
    plog = PredictionLog(settings.effective_database_url, 1000).start()
    app = create_app(settings, ModelProvider.fixed(settings, fake_loaded("1")), plog)
    try:
        answer = app.test_client().post("/predict", json={"orders": orders})
        assert answer.status_code == 200, answer.get_json()
        assert plog.flush()
    finally:
        plog.close()
