"""The service on real waitress: concurrent load with a model swap in the middle, the
``eta serve`` process (graceful shutdown flushes the log), and the real MLflow registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import free_port, wait_for_port
from helpers_model import ServerThread, fake_loaded, log_and_register, sample_orders, tiny_model

from eta_cli import validation
from eta_cli.monitor import database
from eta_cli.predict import format_predictions
from eta_cli.serve import ModelProvider, create_app
from eta_cli.serve.prediction_log import PredictionLog

ORDERS = sample_orders(24, seed=5, with_id=True)
ETA = str(Path(sys.executable).with_name("eta"))


@pytest.fixture(autouse=True)
def _forget_mlflow_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow.set_tracking_uri() exports MLFLOW_*_URI: do not let one test's store leak."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)


class SwitchableRegistry:
    def __init__(self):
        self.version = "1"

    def resolve(self, settings, name, alias):
        return self.version

    def load(self, settings, uri):
        time.sleep(0.2)  # a real load takes a while: requests keep flowing meanwhile
        return fake_loaded(self.version, scale=1.0 if self.version == "1" else 2.0, uri=uri)


def expected_answers(version: str) -> list[dict]:
    loaded = fake_loaded(version, scale=1.0 if version == "1" else 2.0)
    records, ids = [], []
    for order in ORDERS:
        record, order_id, _ = validation.validate_order(order)
        records.append(record)
        ids.append(order_id)
    return format_predictions(loaded, records, ids, loaded.model.predict_records(records))


@pytest.mark.slow
def test_concurrent_load_with_a_model_swap(settings):
    registry = SwitchableRegistry()
    provider = ModelProvider(settings, loader=registry.load, resolver=registry.resolve)
    provider.check()
    plog = PredictionLog(settings.effective_database_url, 100_000).start()
    app = create_app(settings.replace(admin_token="e2e-token"), provider, plog)
    expected = {"1": expected_answers("1"), "2": expected_answers("2")}
    assert expected["1"][0]["eta_p50_s"] != expected["2"][0]["eta_p50_s"]

    per_thread, n_threads = 60, 8
    results: list[list[tuple[int, int, dict]]] = [[] for _ in range(n_threads)]
    failures: list[str] = []
    done = threading.Semaphore(0)

    def client(t: int, url: str) -> None:
        session = requests.Session()
        try:
            for i in range(per_thread):
                k = (t * per_thread + i) % len(ORDERS)
                # Every fifth request is a small batch.
                body = {"orders": ORDERS[k : k + 3]} if i % 5 == 4 else ORDERS[k]
                response = session.post(f"{url}/predict", json=body, timeout=30)
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text}")
                    continue
                results[t].append((i, k, response.json()))
                done.release()
        except Exception as exc:  # reported below
            failures.append(repr(exc))
        finally:
            session.close()

    with ServerThread(app, threads=8) as server:
        threads = [threading.Thread(target=client, args=(t, server.url)) for t in range(n_threads)]
        for thread in threads:
            thread.start()
        for _ in range(n_threads * per_thread // 3):  # a third of the way through
            assert done.acquire(timeout=60)
        registry.version = "2"
        admin = {"Authorization": "Bearer e2e-token"}
        swap = requests.post(f"{server.url}/reload", headers=admin, timeout=30)
        assert swap.status_code == 200 and swap.json()["status"] == "loaded"
        for thread in threads:
            thread.join(120)
        after_swap = requests.post(f"{server.url}/predict", json=ORDERS[0], timeout=10).json()
    plog.close()

    assert failures == []
    assert sum(len(r) for r in results) == n_threads * per_thread
    seen = set()
    for thread_results in results:
        last_version = "1"
        for _i, k, body in thread_results:
            version = body["model_version"]
            seen.add(version)
            assert version >= last_version  # never back to the old model after a swap
            last_version = version
            answers = body.get("predictions", [body])
            for j, answer in enumerate(answers):
                want = expected[version][k + j]
                for key in ("eta_p10_s", "eta_p50_s", "eta_p90_s", "eta_quoted_s"):
                    assert answer[key] == want[key], (version, k + j, key)
                assert answer["expected_delivery_at"] == want["expected_delivery_at"]
                assert answer["order_id"] == ORDERS[k + j]["order_id"]
    assert seen == {"1", "2"}
    assert after_swap["model_version"] == "2"
    assert plog.stats()["dropped"] == 0
    assert (
        plog.stats()["written"]
        == sum(len(b.get("predictions", [b])) for r in results for _, _, b in r) + 1
    )


def _start_serve(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [ETA, "serve", "--port", str(port), "--threads", "4", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_port(port, timeout=60, proc=proc)
    return proc, port


def _wait_ready(url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(f"{url}/ready", timeout=5)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready: {response.text}")


@pytest.mark.slow
def test_eta_serve_process_serves_and_flushes_the_log_on_sigterm(tmp_path, settings):
    folder = tiny_model().save(tmp_path / "model")
    env = dict(os.environ, ETA_PREDICTION_LOG_QUEUE="100000")
    proc, port = _start_serve(["--model", str(folder)], env, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = _wait_ready(url)
        assert ready["polling"] is False and ready["registry"] == "not used"
        session = requests.Session()
        for i in range(40):
            response = session.post(f"{url}/predict", json=ORDERS[i % len(ORDERS)], timeout=10)
            assert response.status_code == 200
            assert response.json()["model_version"] is None  # a folder has no version
        assert session.post(f"{url}/predict", data="x", timeout=10).status_code == 415
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if "status" in line and "path" in line]
    assert len([a for a in access if a["path"] == "/predict"]) == 41
    assert any(line.get("event") == "stopped" for line in lines)
    engine = sa.create_engine(settings.effective_database_url)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(database.predictions))
        assert count.scalar() == 40  # all written, though the flush interval had not passed
    engine.dispose()


def test_eta_serve_refuses_a_missing_model_folder(tmp_path):
    result = subprocess.run(
        [ETA, "serve", "--port", str(free_port()), "--model", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no such model folder" in result.stderr


def test_eta_serve_refuses_a_busy_port(tmp_path):
    import socket

    folder = tiny_model().save(tmp_path / "model")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [ETA, "serve", "--port", str(port), "--model", str(folder)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.slow
def test_hot_reload_through_the_real_registry(tmp_path, settings):
    """Champion v1 served by `eta serve`; the alias moves to v2; the server follows."""
    log_and_register(settings, tiny_model(scale=1.0))
    env = dict(os.environ, ETA_RELOAD_INTERVAL_S="0.5")
    proc, port = _start_serve([], env, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = _wait_ready(url, timeout=120)
        assert ready["model"]["version"] == "1" and ready["registry"] == "ok"
        first = requests.post(f"{url}/predict", json=ORDERS[0], timeout=10).json()
        assert first["model_name"] == "eta" and first["model_version"] == "1"
        info = requests.get(f"{url}/model", timeout=10).json()
        assert info["alias"] == "champion" and info["run_id"]

        log_and_register(settings, tiny_model(scale=2.0))  # becomes champion
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = requests.post(f"{url}/predict", json=ORDERS[0], timeout=10).json()
            if body["model_version"] == "2":
                break
            time.sleep(0.2)
        assert body["model_version"] == "2"
        assert body["eta_p50_s"] == expected_answers("2")[0]["eta_p50_s"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


@pytest.mark.slow
def test_registry_unreachable_keeps_serving(settings, tmp_path):
    """The real resolver against a tracking store that disappears."""
    log_and_register(settings, tiny_model())
    provider = ModelProvider(settings)
    assert provider.check().status == "loaded"
    client = create_app(settings, provider).test_client()
    assert client.get("/ready").get_json()["registry"] == "ok"
    broken = settings.replace(tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")
    provider.settings = broken
    result = provider.check()
    assert result.status == "failed"
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json()["registry"].startswith("unreachable since ")
    assert client.post("/predict", json=ORDERS[0]).get_json()["model_version"] == "1"


def test_oversized_bodies_over_http_get_a_json_413(settings):
    """Content-Length and chunked bodies alike: waitress hands them over, Flask refuses."""
    import http.client

    app = create_app(settings, ModelProvider.fixed(settings, fake_loaded("1")))
    body = b" " * (settings.max_body_bytes + 1)
    with ServerThread(app, threads=2) as server:
        for chunked in (False, True):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            payload = [body[i : i + 65536] for i in range(0, len(body), 65536)] if chunked else body
            conn.request(
                "POST",
                "/predict",
                body=iter(payload) if chunked else payload,
                headers={"Content-Type": "application/json"},
                encode_chunked=chunked,
            )
            response = conn.getresponse()
            answer = json.loads(response.read())
            conn.close()
            assert response.status == 413, chunked
            assert answer["details"][0]["field"] == "body"


@pytest.mark.slow
def test_the_model_of_eta_train_and_register_is_served_and_predicted(tmp_path, settings):
    """The whole chain with the real commands: ingest, train, register, serve, predict."""
    env = dict(os.environ, ETA_HOME=str(settings.home_path))

    def eta(*args: str) -> str:
        result = subprocess.run(
            [ETA, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    eta("ingest", "--synthetic", "4000", "--seed", "3")
    eta("train", "--max-rounds", "20", "--json")
    eta("register", "--json")
    from eta_cli.predict import LocalPredictor, RemotePredictor

    local = LocalPredictor.from_settings(settings)
    assert (local.model_name, local.model_version) == ("eta", "1")
    proc, port = _start_serve([], env, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = _wait_ready(url, timeout=120)
        assert ready["model"] == {"name": "eta", "version": "1"}
        info = requests.get(f"{url}/model", timeout=10).json()
        assert info["run_id"] and info["metrics"]
        remote = RemotePredictor(url)
        answers = [o.to_dict() for o in remote.predict(ORDERS)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert answers == [o.to_dict() for o in local.predict(ORDERS)]
    assert (remote.model_name, remote.model_version) == ("eta", "1")
