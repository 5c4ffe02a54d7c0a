"""Secrets never leave the service: a password in the tracking URI, with a registry that
is down or answers errors, appears in no answer and no line of the service log; and the
one redaction function hides every kind of credential a URL or an error can carry."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import free_port, wait_for_port

from eta_cli import errors
from eta_cli.redact import redact_text, redact_url

ETA = str(Path(sys.executable).with_name("eta"))
PASSWORD = "PASSWORD-7f3a9c"
TOKEN = "serve-admin-token-0123"


class ErrorRegistry(http.server.BaseHTTPRequestHandler):
    """An MLflow server having a bad day: healthy, but every API call fails, with a 500
    or (``/api`` calls after the first few) by dropping the connection unanswered."""

    calls = 0

    def _fail(self) -> None:
        body = b'{"error_code": "INTERNAL_ERROR", "message": "database is down"}'
        if self.path.startswith("/health"):
            body = b"OK"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        type(self).calls += 1
        if type(self).calls % 2 == 0:  # MLflow's exception then quotes the URL it called
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _fail

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def erroring_registry() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ErrorRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("registry", ["dead port", "answers errors"])
def test_a_password_in_the_tracking_uri_never_leaves_the_service(tmp_path, registry, request):
    port = free_port() if registry == "dead port" else request.getfixturevalue("erroring_registry")
    uri = f"http://eta-user:{PASSWORD}@127.0.0.1:{port}"
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=uri,
        ETA_ADMIN_TOKEN=TOKEN,
        ETA_RELOAD_INTERVAL_S="0.2",
        ETA_HOME=str(tmp_path / "home"),
    )
    serve_port = free_port()
    proc = subprocess.Popen(
        [ETA, "serve", "--port", str(serve_port), "--threads", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    answers: list[str] = []
    try:
        wait_for_port(serve_port, timeout=60, proc=proc)
        url = f"http://127.0.0.1:{serve_port}"
        time.sleep(1.0)  # a few registry polls fail meanwhile
        admin = {"Authorization": f"Bearer {TOKEN}"}
        for method, path, headers in [
            ("GET", "/ready", {}),
            ("GET", "/model", {}),
            ("POST", "/reload", admin),
            ("POST", "/reload", {}),
            ("GET", "/metrics", {}),
            ("GET", "/health", {}),
            ("GET", "/openapi.json", {}),
            ("POST", "/predict", {}),
        ]:
            response = requests.request(method, f"{url}{path}", headers=headers, timeout=90)
            answers.append(f"{method} {path} {response.status_code} {response.text}")
        ready = requests.get(f"{url}/ready", timeout=10).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    everything = "\n".join([*answers, out, err])
    assert PASSWORD not in everything
    assert ready["ready"] is False
    assert ready["registry"].startswith("unreachable since ")
    assert ready["reason"].startswith("registry unreachable since ")
    assert "registry_unreachable" in err  # the log says what happened, redacted
    assert "eta-user:***@127.0.0.1" in err or "***" in err


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "postgresql+psycopg2://eta:s3cret@db:5432/eta",
            "postgresql+psycopg2://eta:***@db:5432/eta",
        ),
        ("https://ghp_TOKEN123@github.com/org/repo", "https://***@github.com/org/repo"),
        ("http://h/x?password=p1&a=2", "http://h/x?password=***&a=2"),
        (
            "https://h/x?access_token=t&api_key=k&secret=s",
            "https://h/x?access_token=***&api_key=***&secret=***",
        ),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AK&X-Amz-Signature=ff&X-Amz-Security-Token=tt",
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***",
        ),
        (
            "https://acct.blob.core.windows.net/c?sv=1&sig=abc",
            "https://acct.blob.core.windows.net/c?sv=1&sig=***",
        ),
        ("http://u:p@h/cb#access_token=abc", "http://u:***@h/cb#access_token=***"),
        ("http://[::1/broken?token=x", "http://***"),
        ("http://h:notaport/x", "http://***"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("s3://bucket/prefix/data", "s3://bucket/prefix/data"),
        ("http://mlflow:5000", "http://mlflow:5000"),
    ],
)
def test_redact_url_hides_every_kind_of_credential(raw, shown):
    assert redact_url(raw) == shown


def test_redact_text_finds_urls_and_secret_pairs_inside_any_text():
    text = (
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: "
        f"http://user:{PASSWORD}@127.0.0.1:9/api/2.0/x; dsn host=db password={PASSWORD} user=x; "
        f"Authorization: Bearer {PASSWORD}; hook https://hooks.example/x?token={PASSWORD}"
    )
    shown = redact_text(text)
    assert PASSWORD not in shown
    assert "http://user:***@127.0.0.1:9/api/2.0/x" in shown and "password=***" in shown


def test_first_line_is_redacted_before_it_is_cut():
    exc = ConnectionError(f"cannot reach {'x' * 280} http://u:{PASSWORD}@h:1/ for long")
    assert PASSWORD not in errors.first_line(exc)
    assert PASSWORD not in errors.first_line(exc, limit=10_000)


def test_webhook_errors_keep_path_and_query_tokens_out():
    from eta_cli.monitor.alerts import post_webhook

    port = free_port()  # nothing listens: the connection error quotes the URL
    url = f"http://127.0.0.1:{port}/services/T0/B0/{PASSWORD}?token={PASSWORD}&sig={PASSWORD}"
    outcome = post_webhook(url, "drift", timeout=2)
    assert not outcome.sent and outcome.error
    assert PASSWORD not in outcome.error and PASSWORD not in str(outcome.to_dict())


@pytest.mark.slow
def test_terminal_errors_are_redacted(tmp_path):
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"http://eta-user:{PASSWORD}@127.0.0.1:{free_port()}",
        ETA_HOME=str(tmp_path / "home"),
    )
    done = subprocess.run(
        [ETA, "register", "--list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "error" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


def test_punctuation_after_a_url_stays_outside_it():
    assert redact_text("cannot reach http://127.0.0.1:5000: refused.") == (
        "cannot reach http://127.0.0.1:5000: refused."
    )
    assert redact_text(f"(see http://u:{PASSWORD}@h:1/x).") == "(see http://u:***@h:1/x)."
