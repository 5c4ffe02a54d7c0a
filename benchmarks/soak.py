"""Soak ``eta serve``: steady load for minutes, with model swaps and a database restart.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--concurrency 8] [--swap-every 60]

1. Registers two versions of a small real model (a multi-quantile XGBoost booster over
   the real feature builder) on a fresh home (MLflow SQLite + local artifacts); v1 is
   champion.
2. Starts a private PostgreSQL (initdb + pg_ctl, tests/helpers_postgres.py) as the
   prediction log's database, and a real ``eta serve`` on a free loopback port with an
   admin token (the shadow challenger off, so every logged row is one answered order).
3. ``--concurrency`` clients (one keep-alive connection each) send single orders, and
   every fifth request a batch of 5, for ``--minutes``. Every ``--swap-every`` seconds
   the champion alias moves to the other version and ``POST /reload`` (with the token)
   makes the server follow at once. Half way through, the database is stopped for
   ``--db-down`` seconds and started again.
4. Prints: requests and orders answered, failed requests (target 0), rows logged
   against answered orders minus the drops the service counted (queue full, database
   errors, rows refused; target equal), model versions seen, and the server's RSS after
   warm-up and at the end (target growth < 10 %).

Load goes to loopback only; counts are bounded by the duration. The client shares the
machine's cores with the server, so throughput figures are indicative only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tiny real models and the private PostgreSQL

TOKEN = "soak-admin-token"


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register_two_versions(home: Path) -> Any:
    """Settings of a fresh home with model versions 1 (champion) and 2 registered."""
    from helpers_model import log_and_register, tiny_model

    from eta_cli.config import load_settings

    settings = load_settings(overrides={"home": str(home)}, environ={})
    log_and_register(settings, tiny_model(scale=1.0), alias="champion")
    log_and_register(settings, tiny_model(scale=1.3), alias=None)
    return settings


def move_champion(settings: Any, version: str) -> None:
    from eta_cli import tracking

    client = tracking.configure(settings)
    client.set_registered_model_alias(settings.model_name, "champion", version)


class Load:
    """``concurrency`` client threads; counts what was answered, what failed, and how."""

    def __init__(self, port: int, concurrency: int, orders: list[dict]) -> None:
        self.port = port
        self.concurrency = concurrency
        self.orders = orders
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests = self.answered_orders = 0
        self.failures: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.threads = [
            threading.Thread(target=self.client, args=(t,), daemon=True) for t in range(concurrency)
        ]

    def client(self, t: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        i = 0
        while not self.stop.is_set():
            i += 1
            batch = i % 5 == 0
            picked = [self.orders[(t * 7919 + i * 31 + k) % len(self.orders)] for k in range(5)]
            body = {"orders": picked} if batch else picked[0]
            try:
                conn.request(
                    "POST", "/predict", json.dumps(body), {"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                payload = json.loads(response.read())
                ok = response.status == 200
                reason = f"HTTP {response.status}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ok, payload, reason = False, {}, type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self.lock:
                self.requests += 1
                if ok:
                    self.answered_orders += len(picked) if batch else 1
                    version = str(payload.get("model_version"))
                    self.versions[version] = self.versions.get(version, 0) + 1
                else:
                    self.failures[reason] = self.failures.get(reason, 0) + 1
        conn.close()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def get(port: int, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"eta serve exited with {proc.returncode}")
        try:
            if get(port, "/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("eta serve not ready")


def run(args: argparse.Namespace) -> int:
    from helpers_model import sample_orders
    from helpers_postgres import PrivatePostgres, logged_predictions

    duration = args.minutes * 60.0
    work = Path(tempfile.mkdtemp(prefix="eta-soak-"))
    print(f"soak: {args.minutes} min at concurrency {args.concurrency}, work in {work}")
    settings = register_two_versions(work / "home")
    orders = sample_orders(200, seed=11, with_id=True)
    with PrivatePostgres() as pg:
        db_url = pg.create_database("eta_soak")
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))},
            "ETA_HOME": str(work / "home"),
            "ETA_DATABASE_URL": db_url,
            "ETA_ADMIN_TOKEN": TOKEN,
            "ETA_RELOAD_INTERVAL_S": "3600",  # swaps come from POST /reload only
            "ETA_SHADOW_ALIAS": "",
        }
        log = open(work / "serve.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("eta")), "serve", "--port", str(port)],
            env=env,
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(port, proc)
            load = Load(port, args.concurrency, orders)
            started = time.monotonic()
            load.start()
            warm_rss = 0
            swaps = reload_failures = 0
            db_restarted = False
            next_swap = args.swap_every
            while (elapsed := time.monotonic() - started) < duration:
                time.sleep(1.0)
                if not warm_rss and elapsed >= min(30.0, duration / 4):
                    warm_rss = rss_kb(proc.pid)
                if not db_restarted and elapsed >= duration / 2:
                    print(f"  {elapsed:5.0f}s database stopped for {args.db_down:.0f}s")
                    pg.stop()
                    time.sleep(args.db_down)
                    pg.start()
                    db_restarted = True
                    print(f"  {time.monotonic() - started:5.0f}s database started again")
                if elapsed >= next_swap:
                    next_swap += args.swap_every
                    swaps += 1
                    move_champion(settings, "2" if swaps % 2 else "1")
                    status, body = get(
                        port, "/reload", "POST", {"Authorization": f"Bearer {TOKEN}"}
                    )
                    reload_failures += status != 200
                    print(f"  {elapsed:5.0f}s swap {swaps}: /reload {status} {body[:80]}")
            load.finish()
            end_rss = rss_kb(proc.pid)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # let the writer empty its queue
                metrics = get(port, "/metrics")[1]
                if metric(metrics, "eta_prediction_log_pending") == 0:
                    break
                time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log.close()
        rows = logged_predictions(db_url)
    dropped = metric(metrics, "eta_prediction_log_dropped_total")
    errors = metric(metrics, "eta_prediction_log_errors_total")
    rejected = metric(metrics, "eta_prediction_log_rejected_total")
    failed = sum(load.failures.values())
    expected_rows = load.answered_orders - dropped - errors - rejected
    growth = (end_rss - warm_rss) / warm_rss * 100 if warm_rss else float("nan")
    print()
    print(f"requests sent          {load.requests}  ({load.requests / duration:.0f}/s)")
    print(f"failed requests        {failed}  {load.failures or ''}  (target 0)")
    print(f"orders answered        {load.answered_orders}")
    print(
        f"drops counted          queue full {dropped:.0f}, database errors {errors:.0f}, "
        f"refused rows {rejected:.0f}"
    )
    print(
        f"rows logged            {rows}  vs answered - drops = {expected_rows:.0f}  "
        f"({'equal' if rows == expected_rows else 'DIFFERENT'}; target equal)"
    )
    print(
        f"model swaps            {swaps} (/reload failures {reload_failures}); "
        f"answers by version {load.versions}"
    )
    print(
        f"server RSS             {warm_rss / 1024:.1f} MB after warm-up -> "
        f"{end_rss / 1024:.1f} MB at the end: {growth:+.1f} % (target < 10 %)"
    )
    ok = failed == 0 and rows == expected_rows and growth < 10 and reload_failures == 0
    print("verdict                " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--swap-every", type=float, default=60.0, help="seconds between swaps")
    parser.add_argument("--db-down", type=float, default=5.0, help="seconds the DB is stopped")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
