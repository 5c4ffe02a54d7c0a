"""Shared fixtures: an isolated ETA_HOME, a real local S3 server, a fresh PostgreSQL database.

Real parts only: S3 is moto's server mode on a loopback port reached over HTTP by
boto3 and pyarrow (boto3 is never mocked); PostgreSQL is the machine's server at
127.0.0.1:5432, with one throw-away database per test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eta_cli.config import Settings, load_settings

PG_HOST = os.environ.get("ETA_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ETA_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ETA_TEST_PG_USER", "postgres")

# Prefixes of variables that would leak configuration into a test: a developer's own, or
# one set by an earlier test (mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI).
_ISOLATED_PREFIXES = ("ETA_", "MLFLOW_", "AWS_")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [name for name in os.environ if name.startswith(_ISOLATED_PREFIXES)]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ETA_HOME", str(tmp_path / "eta-home"))
    monkeypatch.chdir(tmp_path)
    # Profiles live in the checkout's configs/, whatever the working directory.
    monkeypatch.setenv("ETA_CONFIG_DIR", str(Path(__file__).resolve().parent.parent / "configs"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-default settings under a fresh ETA_HOME."""
    return load_settings(overrides={"home": str(tmp_path / "eta-home")})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto server mode) for the whole session."""
    port = free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the standard AWS variables at the local server; return the endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return s3_endpoint


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty bucket on the local S3 server."""
    import boto3

    name = f"eta-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def _admin_connection():
    import psycopg2

    conn = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5
    )
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"eta_test_{uuid.uuid4().hex[:12]}"
    conn = _admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
