"""Benchmark ``eta serve`` against ``mlflow models serve`` on the same registered model.

    .venv/bin/python benchmarks/serve.py [--orders 50000] [--requests 5000] [--batches 50]
                                         [--home DIR] [--keep]

1. Registers one model on a fresh embedded home (SQLite + local artifacts) with
   the real pipeline: ``eta ingest --synthetic N``, ``eta train``, ``eta register``
   (skipped when ``--home`` already has a champion).
2. Starts ``eta serve`` (waitress, 8 threads, prediction log on) and
   ``mlflow models serve --env-manager local -m models:/eta@champion`` (uvicorn,
   its defaults) on free loopback ports, and checks both give the same numbers.
3. Drives both with the same load generator (one keep-alive ``http.client``
   connection per thread, bounded request counts): single-order requests
   sequentially and at concurrency 8, then 1,000-order batches sequentially.
4. Prints requests/s, p50 and p99 latency per server and scenario, the server's CPU
   time per request (its process tree, from /proc: less sensitive than latency to
   other work on a shared machine), and the ratios.

5. Shadow challenger (issue 13): registers a second version under ``challenger`` and
   runs ``eta serve`` without (``ETA_SHADOW_ALIAS=``) and with the shadow scoring every
   request (``ETA_SHADOW_SAMPLE=1``), alternately, at concurrency 8; prints requests/s
   and p99 of both and the throughput ratio. ``--shadow-only`` runs just this part.

Targets (issue 4): concurrency 8 at >= 5x the requests/s of mlflow models serve,
single-order p50 < 2 ms, 1,000-order batch < 30 ms. Issue 13: the shadow costs at most
10 % of the throughput at concurrency 8. The client runs on the same
machine and shares its cores with the servers (and with anything else running).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
ETA = str(VENV_BIN / "eta")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(cmd: list[str], env: dict[str, str]) -> str:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    print(f"  {' '.join(cmd[1:3])}: {time.perf_counter() - started:.1f} s", flush=True)
    return result.stdout


def has_champion(env: dict[str, str]) -> bool:
    probe = (
        "from eta_cli.config import load_settings; from eta_cli import registry;"
        "registry.load_model(load_settings())"
    )
    return (
        subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0
    )


def register_model(env: dict[str, str], orders: int) -> None:
    if has_champion(env):
        print("  champion already registered: reusing it")
        return
    run([ETA, "ingest", "--synthetic", str(orders), "--seed", "42"], env)
    run([ETA, "train", "--json"], env)
    run([ETA, "register", "--json"], env)


def sample_orders(n: int) -> list[dict[str, Any]]:
    from eta_cli import schema
    from eta_cli.synthetic import generate_orders

    frame = generate_orders(n, seed=2024, messy=False)
    out = []
    for row in frame.to_dict("records"):
        order: dict[str, Any] = {}
        for name in schema.INPUT_COLUMNS:
            value = row[name]
            if value is None or (not isinstance(value, str) and value != value):
                order[name] = None
            elif name == schema.CREATED_AT:
                order[name] = value.strftime("%Y-%m-%d %H:%M:%S")
            elif isinstance(value, str):
                order[name] = value
            else:
                order[name] = int(value)
        out.append(order)
    return out


def wait_http(port: int, path: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server on port {port} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"server on port {port} not ready on {path} after {timeout} s")


class Target:
    """How to ask one server for predictions."""

    def __init__(self, name: str, port: int, path: str, wrap: Any, pid: int = 0) -> None:
        self.name, self.port, self.path, self.wrap, self.pid = name, port, path, wrap, pid

    def bodies(self, orders: list[dict[str, Any]], size: int) -> list[bytes]:
        if size == 1:
            return [json.dumps(self.wrap([o], single=True)).encode() for o in orders]
        return [
            json.dumps(self.wrap(orders[i : i + size], single=False)).encode()
            for i in range(0, len(orders) - size + 1, size)
        ]


def eta_wrap(orders: list[dict[str, Any]], single: bool) -> Any:
    return orders[0] if single else {"orders": orders}


def mlflow_wrap(orders: list[dict[str, Any]], single: bool) -> Any:
    return {"dataframe_records": orders}


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    return data


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (Linux /proc), all threads."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        todo += _children(current)
    return total


def drive(target: Target, bodies: list[bytes], n: int, concurrency: int) -> dict[str, float]:
    """Send ``n`` requests (cycling through ``bodies``) from ``concurrency`` threads."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start_gate = threading.Barrier(concurrency + 1)

    def worker(t: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=120)
        mine = range(t, n, concurrency)
        start_gate.wait()
        try:
            for i in mine:
                began = time.perf_counter()
                post(conn, target.path, bodies[i % len(bodies)])
                latencies[t].append(time.perf_counter() - began)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = server_cpu_seconds(target.pid) if target.pid else 0.0
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    cpu = server_cpu_seconds(target.pid) - cpu_before if target.pid else float("nan")
    if errors:
        raise RuntimeError(f"{target.name}: {len(errors)} client errors, first: {errors[0]}")
    flat = sorted(x for per in latencies for x in per)
    return {
        "requests": len(flat),
        "rps": len(flat) / wall,
        "p50_ms": 1000 * statistics.median(flat),
        "p99_ms": 1000 * flat[min(len(flat) - 1, int(0.99 * len(flat)))],
        "wall_s": wall,
        "cpu_ms": 1000 * cpu / max(len(flat), 1),  # server CPU per request (all its threads)
    }


def check_same_numbers(eta: Target, mlf: Target, orders: list[dict[str, Any]]) -> float:
    """Largest |eta - mlflow| median over a few orders (eta rounds to 0.1 s)."""
    a = http.client.HTTPConnection("127.0.0.1", eta.port, timeout=60)
    b = http.client.HTTPConnection("127.0.0.1", mlf.port, timeout=60)
    ours = json.loads(post(a, eta.path, json.dumps(eta_wrap(orders, False)).encode()))
    theirs = json.loads(post(b, mlf.path, json.dumps(mlflow_wrap(orders, False)).encode()))
    a.close()
    b.close()
    p50_ours = [p["eta_p50_s"] for p in ours["predictions"]]
    p50_theirs = [p["eta_p50_s"] for p in theirs["predictions"]]
    return max(abs(x - y) for x, y in zip(p50_ours, p50_theirs, strict=True))


def ensure_challenger(env: dict[str, str]) -> None:
    """A second registered version under ``challenger`` (the champion's run again: the
    shadow then costs what a real challenger of the same size costs)."""
    script = (
        "from eta_cli.config import load_settings; from eta_cli import tracking\n"
        "s = load_settings(); c = tracking.configure(s); n = s.model_name\n"
        "aliases = c.get_registered_model(n).aliases\n"
        "if 'challenger' not in aliases:\n"
        "    champ = c.get_model_version_by_alias(n, 'champion')\n"
        "    mv = c.create_model_version(n, champ.source, champ.run_id)\n"
        "    c.set_registered_model_alias(n, 'challenger', mv.version)\n"
    )
    run([sys.executable, "-c", script], env)


def start_eta(env: dict[str, str], logs: Path, name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [ETA, "serve", "--port", str(port), "--threads", "8"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(logs / f"{name}.log", "w"),  # noqa: SIM115 - closed with the process
    )
    wait_http(port, "/ready", proc)
    return proc, port


def shadow_active(port: int, timeout: float = 120) -> bool:
    """Wait until the service has loaded its shadow challenger (/model says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/model")
        body = json.loads(conn.getresponse().read())
        conn.close()
        if (body.get("shadow") or {}).get("active"):
            return True
        time.sleep(0.2)
    return False


def shadow_comparison(env: dict[str, str], logs: Path, requests: int, concurrency: int) -> None:
    """Throughput and p99 at ``concurrency`` without and with the shadow, alternated
    (off, on, off, on) so drift in the machine's load hits both alike."""
    ensure_challenger(env)
    orders = sample_orders(2000)
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for round_no in range(2):
        for mode in ("off", "on"):
            mode_env = dict(env, ETA_SHADOW_ALIAS="" if mode == "off" else "challenger")
            mode_env["ETA_SHADOW_SAMPLE"] = "1"
            proc, port = start_eta(mode_env, logs, f"eta-serve-shadow-{mode}-{round_no}")
            try:
                if mode == "on" and not shadow_active(port):
                    sys.exit("the shadow challenger did not load (see bench-logs)")
                target = Target(f"shadow {mode}", port, "/predict", eta_wrap, proc.pid)
                singles = target.bodies(orders, 1)
                drive(target, singles, 300, 1)  # warm-up
                r = drive(target, singles, requests, concurrency)
                results[mode].append(r)
                print(
                    f"  shadow {mode:3s} round {round_no + 1}: {r['rps']:9.1f} req/s  "
                    f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                    f"server CPU {r['cpu_ms']:.2f} ms/req",
                    flush=True,
                )
            finally:
                proc.terminate()
                proc.wait(30)
    off = {k: statistics.mean(r[k] for r in results["off"]) for k in ("rps", "p99_ms", "cpu_ms")}
    on = {k: statistics.mean(r[k] for r in results["on"]) for k in ("rps", "p99_ms", "cpu_ms")}
    ratio = on["rps"] / off["rps"]
    print()
    print(f"shadow challenger, single orders at concurrency {concurrency} (mean of 2 rounds):")
    print(f"  without shadow: {off['rps']:9.1f} req/s  p99 {off['p99_ms']:6.2f} ms")
    print(f"  with shadow:    {on['rps']:9.1f} req/s  p99 {on['p99_ms']:6.2f} ms")
    print(
        f"  ratio with/without: throughput {ratio:.3f}, p99 {on['p99_ms'] / off['p99_ms']:.2f}, "
        f"server CPU per request {on['cpu_ms'] / off['cpu_ms']:.2f}"
    )
    print(f"{'PASS' if ratio >= 0.9 else 'MISS'}  shadow costs at most 10 % of the throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=50_000, help="synthetic orders to train on")
    parser.add_argument("--requests", type=int, default=5_000, help="single-order requests")
    parser.add_argument("--batches", type=int, default=50, help="1,000-order batch requests")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--home", help="ETA_HOME to use (kept); default: a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument(
        "--shadow-only", action="store_true", help="only the shadow challenger comparison"
    )
    args = parser.parse_args()

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="eta-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))}
    env.update(
        ETA_HOME=str(home),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        ETA_PREDICTION_LOG_QUEUE="100000",
    )
    print(f"home: {home}; cores: {os.cpu_count()}; load average: {os.getloadavg()}")
    print("registering a model:")
    register_model(env, args.orders)

    eta_port, mlflow_port = free_port(), free_port()
    logs = home / "bench-logs"
    logs.mkdir(exist_ok=True)
    if args.shadow_only:
        shadow_comparison(env, logs, args.requests, args.concurrency)
        if not args.home and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        return
    procs = []
    try:
        eta_proc = subprocess.Popen(
            [ETA, "serve", "--port", str(eta_port), "--threads", "8"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(logs / "eta-serve.log", "w"),  # noqa: SIM115 - closed with the process
        )
        procs.append(eta_proc)
        mlflow_proc = subprocess.Popen(
            [
                str(VENV_BIN / "mlflow"),
                "models",
                "serve",
                "--env-manager",
                "local",
                "-m",
                "models:/eta@champion",
                "-p",
                str(mlflow_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(logs / "mlflow-serve.log", "w"),  # noqa: SIM115
        )
        procs.append(mlflow_proc)
        wait_http(eta_port, "/ready", eta_proc)
        wait_http(mlflow_port, "/ping", mlflow_proc)

        eta = Target("eta serve", eta_port, "/predict", eta_wrap, eta_proc.pid)
        mlf = Target(
            "mlflow models serve", mlflow_port, "/invocations", mlflow_wrap, mlflow_proc.pid
        )
        orders = sample_orders(max(2000, 1000 * 3))
        diff = check_same_numbers(eta, mlf, orders[:200])
        print(f"same model: largest |p50 eta - p50 mlflow| over 200 orders = {diff:.3f} s")

        scenarios = [
            ("single, sequential", 1, args.requests, 1),
            (f"single, concurrency {args.concurrency}", 1, args.requests, args.concurrency),
            ("batch of 1000, sequential", 1000, args.batches, 1),
        ]
        results: dict[tuple[str, str], dict[str, float]] = {}
        for target in (eta, mlf):
            singles = target.bodies(orders, 1)
            batches = target.bodies(orders, 1000)
            drive(target, singles, 300, 1)  # warm-up
            drive(target, batches, 3, 1)
            for label, size, n, concurrency in scenarios:
                bodies = singles if size == 1 else batches
                results[(target.name, label)] = drive(target, bodies, n, concurrency)
                r = results[(target.name, label)]
                print(
                    f"  {target.name:20s} {label:28s} {r['requests']:6d} req "
                    f"{r['rps']:9.1f} req/s  p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms"
                    f"  server CPU {r['cpu_ms']:.2f} ms/req",
                    flush=True,
                )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    print()
    header = (
        f"{'scenario':30s} {'server':20s} {'req/s':>10s} {'p50 ms':>9s} {'p99 ms':>9s}"
        f" {'CPU ms/req':>11s}"
    )
    print(header)
    print("-" * len(header))
    for label, *_ in scenarios:
        for name in (eta.name, mlf.name):
            r = results[(name, label)]
            print(
                f"{label:30s} {name:20s} {r['rps']:10.1f} {r['p50_ms']:9.2f} {r['p99_ms']:9.2f}"
                f" {r['cpu_ms']:11.2f}"
            )
        ours, theirs = results[(eta.name, label)], results[(mlf.name, label)]
        print(
            f"{'':30s} {'ratio eta/mlflow':20s} {ours['rps'] / theirs['rps']:9.1f}x "
            f"{theirs['p50_ms'] / ours['p50_ms']:8.1f}x {theirs['p99_ms'] / ours['p99_ms']:8.1f}x"
            f" {theirs['cpu_ms'] / ours['cpu_ms']:10.1f}x  (latency and CPU: mlflow over eta)"
        )
    conc = f"single, concurrency {args.concurrency}"
    checks = [
        (
            f"concurrency {args.concurrency} >= 5x mlflow req/s",
            results[(eta.name, conc)]["rps"] / results[(mlf.name, conc)]["rps"] >= 5,
        ),
        (
            "single-order p50 < 2 ms",
            results[(eta.name, "single, sequential")]["p50_ms"] < 2,
        ),
        (
            "1000-order batch p50 < 30 ms",
            results[(eta.name, "batch of 1000, sequential")]["p50_ms"] < 30,
        ),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    print(f"load average after: {os.getloadavg()}")
    written = (logs / "eta-serve.log").read_text().count('"path": "/predict"')
    print(f"eta serve access-log lines for /predict: {written}")
    print()
    shadow_comparison(env, logs, args.requests, args.concurrency)
    if not args.home and not args.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
