"""The real waitress server of ``eta serve`` under hostile connections: hundreds of idle
or slow clients, oversized bodies (64 MB, with Content-Length or chunked), and the
refusals waitress makes itself, all answered in JSON."""

from __future__ import annotations

import http.client
import json
import re
import resource
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from helpers_model import fake_loaded, sample_orders

from eta_cli.serve import ModelProvider, connections, create_app
from eta_cli.serve.server import create_server

ORDER = {k: v for k, v in sample_orders(1)[0].items() if k != "order_id"}
MB = 1024 * 1024


class RunningServer:
    """``eta serve``'s own waitress server (serve.server.create_server) in a thread."""

    def __init__(self, settings, threads: int = 4) -> None:
        app = create_app(settings, ModelProvider.fixed(settings, fake_loaded("1")))
        self.server = create_server(app, settings, "127.0.0.1", 0, threads)
        self.port = int(self.server.effective_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> RunningServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.task_dispatcher.shutdown(timeout=5)

        def close_all() -> None:
            for channel in list(self.server._map.values()):
                channel.close()

        self.server.trigger.pull_trigger(close_all)
        self.thread.join(5)


@pytest.fixture
def server(settings) -> Iterator[RunningServer]:
    with RunningServer(settings) as running:
        yield running


def test_hundreds_of_idle_connections_do_not_starve_health_or_predict(server):
    """The issue's attack: 250 connections that never finish their headers."""
    idle = []
    try:
        for _ in range(250):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: eta\r\nX-Slow: ")  # never finished
            idle.append(sock)
        time.sleep(0.3)  # the server has accepted them all
        started = time.monotonic()
        health = requests.get(f"{server.url}/health", timeout=5)
        predicted = requests.post(f"{server.url}/predict", json=ORDER, timeout=5)
        assert time.monotonic() - started < 3.0
        assert health.status_code == 200 and predicted.status_code == 200
    finally:
        for sock in idle:
            sock.close()


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (sending ``trickle`` byte by byte meanwhile),
    or None if it is still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - started < seconds:
        try:
            if sent < len(trickle):
                sock.send(trickle[sent : sent + 1])
                sent += 1
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_slow_headers_and_silent_connections_are_cut_at_the_deadline(settings, monkeypatch):
    """A client that sends its headers a byte at a time (so it is never inactive) and one
    that sends nothing are both closed at the header deadline, not kept for ever."""
    monkeypatch.setattr(connections, "HEADER_TIMEOUT_S", 1.0)
    with RunningServer(settings) as server:
        slow = socket.create_connection(("127.0.0.1", server.port))
        silent = socket.create_connection(("127.0.0.1", server.port))
        try:
            trickle = b"GET /health HTTP/1.1\r\nHost: eta\r\n" + b"X-Pad: " + b"a" * 200
            waited = _closed_within(slow, 8.0, trickle)
            assert waited is not None and waited < 5.0
            assert _closed_within(silent, 3.0) is not None
            # A prompt client on a kept-alive connection is not affected.
            with requests.Session() as session:
                for _ in range(3):
                    assert session.get(f"{server.url}/health", timeout=5).status_code == 200
                    time.sleep(0.8)
        finally:
            slow.close()
            silent.close()


def _body(total: int, piece: bytes = b" " * MB) -> Iterator[bytes]:
    for _ in range(total // len(piece)):
        yield piece


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_64_mb_body_gets_a_readable_json_413_without_being_buffered(server, settings, chunked):
    total = 64 * MB
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if not chunked:
        headers["Content-Length"] = str(total)
    conn.request("POST", "/predict", body=_body(total), headers=headers, encode_chunked=chunked)
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/json"
    assert answer["error"] == "request entity too large"
    assert answer["details"] == [
        {
            "field": "body",
            "problem": "too large",
            "allowed": f"at most {settings.max_body_bytes} bytes",
        }
    ]
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 32, f"the server held {grown_mb:.0f} MB of a refused body"
    # The server still answers (the refused connection is closed, not the service).
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_expect_100_continue_gets_the_413_before_sending_the_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: eta\r\nContent-Type: application/json\r\n"
            b"Content-Length: 67108864\r\nExpect: 100-continue\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in reply
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body["details"][0]["field"] == "body"


def test_waitress_refusals_are_json(server):
    huge_header = {"X-Big": "a" * (70 * 1024)}
    response = requests.get(f"{server.url}/health", headers=huge_header, timeout=5)
    assert response.status_code == 431
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "request header fields too large"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: eta\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        reply = _whole_reply(sock)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"] == "bad request"


def _whole_reply(sock: socket.socket) -> bytes:
    """Headers and the whole body of one answer: a body may arrive after the headers."""
    reply = b""
    while True:
        head, _, body = reply.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if _ and length and len(body) >= int(length.group(1)):
            return reply
        chunk = sock.recv(65536)
        if not chunk:
            return reply
        reply += chunk
