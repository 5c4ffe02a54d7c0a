"""``eta doctor`` against real parts: the embedded default, PostgreSQL and a local S3 server.

Each component is broken in turn (wrong database user, missing bucket, stopped S3
server, stopped or hung MLflow server, old monitoring schema, too little disk) and must
fail its own check, with a message naming it, quickly, and without a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from conftest import free_port, wait_for_port
from helpers_model import log_and_register, tiny_model

from eta_cli import doctor
from eta_cli.cli import main
from eta_cli.config import Settings, load_settings
from eta_cli.monitor import database

NAMES = [name for name, _ in doctor.CHECKS]
STATUSES = {"pass", "fail", "n/a", "not run"}


def run_doctor(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict]:
    """``eta doctor --json`` in-process: exit code and the parsed JSON object."""
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--json", *args])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    payload = json.loads(out.out)
    assert_structure(payload)
    return int(exc.value.code or 0), payload


def assert_structure(payload: dict) -> None:
    """The documented ``--json`` shape: overall verdict, then every check in order."""
    assert set(payload) == {"ok", "profile", "failed", "duration_s", "checks"}
    assert [c["name"] for c in payload["checks"]] == NAMES
    for check in payload["checks"]:
        assert set(check) == {"name", "title", "status", "ok", "detail", "hint", "duration_s"}
        assert check["status"] in STATUSES
        assert check["ok"] is (check["status"] in ("pass", "n/a"))
        assert check["detail"], check  # every row says something, n/a included
        if not check["ok"]:
            assert check["hint"], check
        assert isinstance(check["duration_s"], float | int)
    assert payload["failed"] == [c["name"] for c in payload["checks"] if not c["ok"]]
    assert payload["ok"] is (not payload["failed"])


def checks(payload: dict) -> dict[str, dict]:
    return {check["name"]: check for check in payload["checks"]}


def statuses(payload: dict) -> dict[str, str]:
    return {check["name"]: check["status"] for check in payload["checks"]}


def create_monitoring_schema(settings: Settings) -> None:
    """What ``eta serve`` / ``eta drift-report`` do on first use."""
    engine = database.engine_for(settings)
    database.ensure_schema(engine)
    engine.dispose()


# ---------------------------------------------------------------- healthy setups


def test_embedded_default_fails_only_model_then_passes(settings, tmp_path, capsys) -> None:
    # A fresh home passes: what does not exist yet is created on first use, and looking
    # creates nothing (no MLflow database or experiment, no 0-byte monitoring.db).
    home = tmp_path / "eta-home"
    code, payload = run_doctor(capsys)
    assert code == 0, payload["failed"]
    assert payload["failed"] == []
    found = checks(payload)
    assert found["model"]["status"] == "n/a"
    assert "eta train" in found["model"]["hint"] and "eta register" in found["model"]["hint"]
    for name in ("tracking", "artifact_store", "monitoring_db"):
        assert found[name]["status"] == "pass"
        assert "not created yet (created on first use)" in found[name]["detail"], name
    assert not home.exists() or not any(home.rglob("*"))

    # --fix creates the monitoring schema now (only that).
    code, payload = run_doctor(capsys, "--fix")
    assert code == 0
    assert "created schema v" in checks(payload)["monitoring_db"]["detail"]

    log_and_register(settings, tiny_model())
    code, payload = run_doctor(capsys)
    assert code == 0, payload["failed"]
    assert payload["ok"] is True and payload["profile"] == "local"
    assert statuses(payload) == {
        "config": "pass",
        "tracking": "pass",
        "backend_db": "n/a",
        "artifact_store": "pass",
        "s3_bucket": "n/a",
        "model": "pass",
        "monitoring_db": "pass",
        "disk": "pass",
    }
    found = checks(payload)
    assert "SQLite" in found["backend_db"]["detail"]
    assert "ETA_S3_BUCKET is empty" in found["s3_bucket"]["detail"]
    assert "eta v1 @champion loads" in found["model"]["detail"]
    assert "mlartifacts" in found["artifact_store"]["detail"]
    assert not (tmp_path / "eta-home" / "mlartifacts" / ".eta-doctor").exists()

    # The table for people: every check, and exit 0.
    with pytest.raises(SystemExit) as exc:
        main(["doctor"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for _, title in doctor.CHECKS:
        assert title in out
    assert "6 of 8 checks passed, 2 n/a (do not apply here)" in out


def test_registered_model_without_champion(settings, capsys) -> None:
    log_and_register(settings, tiny_model(), alias=None)
    create_monitoring_schema(settings)
    code, payload = run_doctor(capsys)
    assert code == 1 and payload["failed"] == ["model"]
    model = checks(payload)["model"]
    assert "has 1 version(s) but no 'champion' alias" in model["detail"]
    assert "eta register --promote 1" in model["hint"]


@pytest.mark.postgres
@pytest.mark.s3
def test_postgres_and_s3_with_the_aws_profile(pg_url, s3_bucket, s3_env, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)  # restored after the test
    monkeypatch.setenv("ETA_PROFILE", "aws")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pg_url)
    monkeypatch.setenv("ETA_DATABASE_URL", pg_url)
    monkeypatch.setenv("ETA_S3_BUCKET", s3_bucket)
    monkeypatch.setenv("ETA_ARTIFACT_LOCATION", f"s3://{s3_bucket}/mlflow")
    monkeypatch.setenv("ETA_DATA_URI", f"s3://{s3_bucket}/eta/data")
    settings = load_settings()
    log_and_register(settings, tiny_model())
    create_monitoring_schema(settings)

    code, payload = run_doctor(capsys)
    assert code == 0, payload["failed"]
    assert payload["profile"] == "aws"
    assert set(statuses(payload).values()) == {"pass"}  # nothing is n/a in production
    found = checks(payload)
    assert "profile aws" in found["config"]["detail"]
    assert "PostgreSQL" in found["tracking"]["detail"]
    assert "PostgreSQL" in found["backend_db"]["detail"]
    assert "MLflow schema" in found["backend_db"]["detail"]
    assert f"s3://{s3_bucket}/mlflow/.eta-doctor/" in found["artifact_store"]["detail"]
    assert f"s3://{s3_bucket}/eta/.eta-doctor/" in found["s3_bucket"]["detail"]
    assert "eta v1 @champion loads" in found["model"]["detail"]
    assert f"schema v{database.SCHEMA_VERSION}" in found["monitoring_db"]["detail"]

    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys and not [k for k in keys if ".eta-doctor" in k]  # probes deleted


# ---------------------------------------------------------------- configuration


def test_aws_profile_with_local_fallbacks_names_them(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ETA_PROFILE", "aws")
    # Only the tracking server of the stack is replaced, so nothing waits on DNS for `mlflow`.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code, payload = run_doctor(capsys)
    assert code == 1
    config = checks(payload)["config"]
    assert config["status"] == "fail"
    for name in ("data_uri", "database_url", "s3_bucket"):
        assert name in config["detail"]
    assert "tracking_uri" not in config["detail"]
    for env in ("ETA_DATA_URI", "ETA_DATABASE_URL", "ETA_S3_BUCKET"):
        assert env in config["hint"]
    assert checks(payload)["tracking"]["status"] == "pass"  # the other checks still ran


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ETA_PROFILE", "nosuch", "profile 'nosuch' not found"),
        ("ETA_SERVE_PORT", "abc", "serve_port = 'abc' (from $ETA_SERVE_PORT) is not a valid int"),
    ],
)
def test_configuration_error_fails_first_check(monkeypatch, capsys, variable, value, message):
    monkeypatch.setenv(variable, value)
    code, payload = run_doctor(capsys)
    assert code == 1
    assert checks(payload)["config"]["status"] == "fail"
    assert message in checks(payload)["config"]["detail"]
    assert [c["status"] for c in payload["checks"][1:]] == ["not run"] * (len(NAMES) - 1)
    assert payload["profile"] is None


# ---------------------------------------------------------------- broken components


@pytest.mark.postgres
def test_wrong_postgres_user_for_mlflow(monkeypatch, capsys) -> None:
    uri = "postgresql+psycopg2://nosuchuser:wrong@127.0.0.1:5432/x"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, payload = run_doctor(capsys)
    assert code == 1
    found = checks(payload)
    shown = "postgresql+psycopg2://nosuchuser:***@127.0.0.1:5432/x"
    backend = found["backend_db"]
    assert backend["status"] == "fail"
    assert f"cannot connect to MLflow tracking backend database {shown}" in backend["detail"]
    assert "nosuchuser" in backend["detail"]
    assert "check the user and password in MLFLOW_TRACKING_URI" in backend["hint"]
    assert found["tracking"]["status"] == "fail" and shown in found["tracking"]["detail"]
    assert found["model"]["status"] == "not run"
    assert found["artifact_store"]["status"] == "pass"  # the local folder is still fine
    assert ":wrong@" not in json.dumps(payload)  # the password never shows
    assert found["backend_db"]["duration_s"] < 15


@pytest.mark.postgres
def test_wrong_postgres_user_for_monitoring(monkeypatch, capsys) -> None:
    monkeypatch.setenv(
        "ETA_DATABASE_URL", "postgresql+psycopg2://nosuchuser:wrong@127.0.0.1:5432/x"
    )
    code, payload = run_doctor(capsys)
    assert code == 1
    found = checks(payload)["monitoring_db"]
    assert found["status"] == "fail"
    assert (
        "cannot connect to monitoring database "
        "postgresql+psycopg2://nosuchuser:***@127.0.0.1:5432/x" in found["detail"]
    )
    assert "ETA_DATABASE_URL" in found["hint"]
    assert checks(payload)["backend_db"]["status"] == "n/a"
    assert ":wrong@" not in json.dumps(payload)


@pytest.mark.s3
def test_missing_bucket(s3_env, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    bucket = f"eta-missing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("ETA_S3_BUCKET", bucket)
    monkeypatch.setenv("ETA_ARTIFACT_LOCATION", f"s3://{bucket}/mlflow")
    code, payload = run_doctor(capsys)
    assert code == 1
    found = checks(payload)
    assert found["s3_bucket"]["status"] == "fail"
    assert (
        f"S3 bucket s3://{bucket}/eta: bucket '{bucket}' does not exist at {s3_env}"
        in (found["s3_bucket"]["detail"])
    )
    assert "create the bucket" in found["s3_bucket"]["hint"]
    assert found["artifact_store"]["status"] == "fail"
    assert (
        f"artifact store s3://{bucket}/mlflow: bucket '{bucket}' does not exist"
        in (found["artifact_store"]["detail"])
    )
    assert found["tracking"]["status"] == "pass"


@contextmanager
def moto_server(**extra_env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A second local S3 server that the test can stop."""
    port = free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    env.update(extra_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.s3
def test_stopped_s3_server(s3_env, monkeypatch, capsys) -> None:
    import boto3

    with moto_server() as (endpoint, proc):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        monkeypatch.setenv("ETA_S3_BUCKET", "eta-doctor")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="eta-doctor"
        )
        code, payload = run_doctor(capsys)
        assert checks(payload)["s3_bucket"]["status"] == "pass"
        proc.terminate()
        proc.wait(timeout=10)

        code, payload = run_doctor(capsys)
    assert code == 1
    found = checks(payload)["s3_bucket"]
    assert found["status"] == "fail"
    assert f"S3 bucket s3://eta-doctor/eta: cannot reach S3 at {endpoint}" in found["detail"]
    assert f"is the S3-compatible server at {endpoint} running" in found["hint"]
    assert found["duration_s"] < 15


@pytest.mark.s3
def test_s3_access_denied_and_rejected_credentials(monkeypatch, capsys) -> None:
    import boto3

    # IAM is enforced after the 4 set-up calls: a user who may only list the bucket.
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="4") as (endpoint, _):
        admin = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        boto3.client("s3", **admin).create_bucket(Bucket="eta-locked")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="reader")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "*"}],
        }
        iam.put_user_policy(UserName="reader", PolicyName="list", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.setenv("ETA_S3_BUCKET", "eta-locked")
        code, payload = run_doctor(capsys)
        assert code == 1
        found = checks(payload)["s3_bucket"]
        assert found["status"] == "fail"
        assert "S3 bucket s3://eta-locked/eta: access denied to write" in found["detail"]
        assert "s3:PutObject" in found["hint"] and "arn:aws:s3:::eta-locked/*" in found["hint"]

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
        code, payload = run_doctor(capsys)
        found = checks(payload)["s3_bucket"]
        assert found["status"] == "fail"
        assert "rejected the credentials (InvalidAccessKeyId)" in found["detail"]


def test_stopped_mlflow_server(monkeypatch, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    code, payload = run_doctor(capsys)
    assert code == 1
    found = checks(payload)
    assert found["tracking"]["status"] == "fail"
    assert f"cannot connect to MLflow tracking server {url}" in found["tracking"]["detail"]
    assert "start the MLflow server" in found["tracking"]["hint"]
    assert found["tracking"]["duration_s"] < 15
    assert found["backend_db"]["status"] == "n/a"
    assert "MLflow server" in found["backend_db"]["detail"]
    # The server chooses where artifacts go and holds the registry: both cannot be checked.
    assert found["artifact_store"]["status"] == "not run"
    assert found["model"]["status"] == "not run"


def test_hung_mlflow_server_is_time_bounded(monkeypatch, capsys) -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        start = time.perf_counter()
        code, payload = run_doctor(capsys)
        elapsed = time.perf_counter() - start
    assert code == 1
    found = checks(payload)["tracking"]
    assert found["status"] == "fail"
    assert f"MLflow tracking server {url} did not answer within 5 s" in found["detail"]
    assert found["duration_s"] < 15
    assert elapsed < 60


def test_monitoring_schema_newer_than_eta(settings, capsys) -> None:
    create_monitoring_schema(settings)
    engine = database.engine_for(settings)
    newer = database.SCHEMA_VERSION + 1
    with engine.begin() as conn:
        conn.execute(sa.update(database.schema_version).values(version=newer))
    engine.dispose()
    code, payload = run_doctor(capsys, "--fix")  # --fix never downgrades a newer schema
    assert code == 1
    found = checks(payload)["monitoring_db"]
    assert found["status"] == "fail"
    assert "monitoring database sqlite:///" in found["detail"]
    assert (
        f"has schema v{newer}, newer than this eta's v{database.SCHEMA_VERSION}"
        in (found["detail"])
    )


def test_monitoring_schema_v1_is_migrated_by_fix(settings, capsys) -> None:
    """A v1 prediction log (no role column) is reported, then migrated in place by --fix:
    its rows are kept and read as the champion's."""
    create_monitoring_schema(settings)
    engine = database.engine_for(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE predictions DROP COLUMN role"))
        conn.execute(sa.delete(database.schema_version))
        conn.execute(sa.text("INSERT INTO eta_schema_version VALUES (1, '2024-01-01 00:00:00')"))
        conn.execute(
            sa.text(
                "INSERT INTO predictions (request_id, predicted_at, model_name, model_version, "
                "eta_p10_s, eta_p50_s, eta_p90_s, eta_quoted_s, latency_ms, features) "
                "VALUES ('r1', '2024-01-01 00:00:00', 'eta', '1', 1, 2, 3, 2.5, 1, '{}')"
            )
        )
    code, payload = run_doctor(capsys)
    found = checks(payload)["monitoring_db"]
    assert code == 1 and found["status"] == "fail"
    assert f"has schema v1, older than this eta's v{database.SCHEMA_VERSION}" in found["detail"]
    assert "doctor --fix" in found["hint"]

    code, payload = run_doctor(capsys, "--fix")
    found = checks(payload)["monitoring_db"]
    assert found["status"] == "pass", found
    assert f"migrated schema v1 to v{database.SCHEMA_VERSION}" in found["detail"]
    assert database.current_schema_version(engine) == database.SCHEMA_VERSION
    with engine.connect() as conn:
        assert conn.execute(sa.select(database.predictions.c.role)).scalars().all() == ["champion"]
    engine.dispose()


def test_monitoring_table_missing(settings, capsys) -> None:
    create_monitoring_schema(settings)
    engine = database.engine_for(settings)
    database.drift_columns.drop(engine)
    engine.dispose()
    code, payload = run_doctor(capsys)
    found = checks(payload)["monitoring_db"]
    assert code == 1
    assert found["status"] == "fail" and "no table drift_columns" in found["detail"]
    _, payload = run_doctor(capsys, "--fix")
    assert checks(payload)["monitoring_db"]["status"] == "pass"


def test_disk_threshold(settings, capsys) -> None:
    code, payload = run_doctor(capsys, "--min-free-gib", "1e9")
    assert code == 1
    found = checks(payload)["disk"]
    assert found["status"] == "fail"
    assert (
        f"on the disk of ETA_HOME {settings.home_path}, below the 1e+09 GiB minimum"
        in (found["detail"])
    )
    assert "--min-free-gib" in found["hint"]


# ---------------------------------------------------------------- library and process


def test_check_deadline_and_unexpected_errors() -> None:
    verdict, seconds = doctor.run_bounded(lambda: time.sleep(5), 0.2)
    assert verdict.status == "fail" and verdict.detail == "did not finish within 0.2 s"
    assert seconds < 2

    def broken() -> doctor.Verdict:
        raise KeyError("surprise")

    verdict, _ = doctor.run_bounded(broken, 5)
    assert verdict.status == "fail"
    assert verdict.detail == "unexpected KeyError: 'surprise'"


def test_run_checks_library_api(settings) -> None:
    results = doctor.run_checks(settings, min_free_gib=0)
    assert [r.name for r in results] == NAMES
    assert all(isinstance(r, doctor.CheckResult) for r in results)
    # A fresh home: nothing fails; the model is n/a until `eta train` + `eta register`.
    assert {r.name for r in results if not r.ok} == set()
    assert doctor.to_dict(results, settings.profile)["failed"] == []
    assert {r.name: r.status for r in results}["model"] == "n/a"


def test_cli_process_breaks_cleanly(tmp_path) -> None:
    """A real `eta doctor` process with everything remote broken: exit 1, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_", "AWS_"))}
    env.update(
        ETA_HOME=str(tmp_path / "home"),
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}",
        ETA_S3_BUCKET="eta-doctor",
        AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{free_port()}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "eta_cli", "doctor"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=180,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "cannot connect to MLflow tracking server" in done.stdout
    assert "cannot reach S3" in done.stdout
    assert "checks failed" in done.stdout


def test_help_lists_doctor(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    out = capsys.readouterr().out
    assert "--fix" in out and "--min-free-gib" in out and "--json" in out
