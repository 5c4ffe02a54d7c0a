"""Scale benchmark of the Dask engine: more orders than a worker's memory holds.

    .venv/bin/python benchmarks/scale.py [--orders 8000000] [--files 32] [--workers 2]
        [--worker-memory 2GB] [--max-rounds 25] [--days 56] [--workdir DIR] [--keep]

    # 20 million orders: training needs ~350 bytes per training + validation order on
    # its worker, so 6 workers of 2 GB (2 workers of 2 GB hold ~10 million orders)
    .venv/bin/python benchmarks/scale.py --orders 20000000 --files 40 --workers 6

1. Generates ``--orders`` synthetic orders (one store world, the real file's
   quirks and CSV spelling) as ``--files`` CSV files, in parallel processes (setup,
   not timed as part of eta).
2. Starts a ``LocalCluster`` of ``--workers`` single-threaded workers limited to
   ``--worker-memory`` each (the nanny kills a worker above 95 % of it, as on a
   real cluster), then runs, each timed: ``ingest --engine dask`` of the CSV
   files, ``train --engine dask`` (MLflow in a fresh embedded home) and
   ``predict --engine dask`` of the whole ingested dataset with the trained model.
   After each step it reads every worker's peak resident memory (``ru_maxrss``)
   and restarts the workers, so each step's peak is its own.
3. Runs the local engine's ``eta train`` on the same ingested dataset in a
   subprocess held to the same memory limit the same way (resident memory polled,
   killed above 95 % of the limit) and reports where it died; a control run of the
   local engine on the newest few days under the same limit succeeds and gives the
   measured bytes per order, hence what the whole dataset would need.

Prints a table per step and one JSON object with every figure at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

GIB = 2**30


def generate_file(path: str, orders: int, index: int, days: int) -> int:
    """One CSV file of the shared store world (same seed; the size picks the random stream)."""
    from eta_cli import synthetic

    frame = synthetic.generate_orders(orders + index, seed=42, days=days)
    synthetic.write_csv(frame, path, spelling="original" if index % 2 == 0 else "reexport")
    return len(frame)


def generate(folder: Path, orders: int, files: int, days: int, processes: int) -> tuple[int, int]:
    folder.mkdir(parents=True, exist_ok=True)
    per_file = orders // files
    with ProcessPoolExecutor(max_workers=processes) as pool:
        jobs = [
            pool.submit(generate_file, str(folder / f"orders-{i:04d}.csv"), per_file, i, days)
            for i in range(files)
        ]
        rows = sum(job.result() for job in jobs)
    size = sum(p.stat().st_size for p in folder.iterdir())
    return rows, size


def peaks(client) -> list[float]:
    from eta_cli.dask_engine import worker_peak_rss

    return sorted(round(v / GIB, 2) for v in worker_peak_rss(client).values())  # VmHWM


def fresh_workers(client, workers: int) -> None:
    client.restart(wait_for_workers=True)
    client.wait_for_workers(workers, timeout=120)


def rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_limited(args: list[str], env: dict[str, str], limit: int) -> dict:
    """Run a command, killing it (with its children) above 95 % of ``limit`` resident
    bytes, as the Dask nanny does to a worker; return what happened."""
    started = time.monotonic()
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    peak = 0
    killed = False
    while proc.poll() is None:
        rss = rss_of(proc.pid)
        peak = max(peak, rss)
        if rss > 0.95 * limit:
            killed = True
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    return {
        "killed_over_limit": killed,
        "returncode": proc.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_gib": round(peak / GIB, 2),
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace")[-2000:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=8_000_000)
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--days", type=int, default=56)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="2GB")
    parser.add_argument("--max-rounds", type=int, default=25)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--skip-local", action="store_true", help="skip the local-engine run")
    args = parser.parse_args()

    import logging

    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    from eta_cli import ingest, lake
    from eta_cli.config import Settings
    from eta_cli.predict import dask as dask_predict
    from eta_cli.train import dask as dask_train

    limit = parse_bytes(args.worker_memory)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="eta-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    raw, home = work / "raw", work / "home"
    for path in (raw, home):
        shutil.rmtree(path, ignore_errors=True)
    report: dict = {
        "orders": args.orders,
        "files": args.files,
        "days": args.days,
        "workers": args.workers,
        "worker_memory_gib": round(limit / GIB, 2),
        "max_rounds": args.max_rounds,
        "cpus": os.cpu_count(),
        "workdir": str(work),
    }
    print(f"workdir {work}; {os.cpu_count()} CPUs", flush=True)

    tick = time.perf_counter()
    rows, size = generate(raw, args.orders, args.files, args.days, os.cpu_count() or 1)
    report["generate"] = {
        "rows": rows,
        "csv_gib": round(size / GIB, 2),
        "seconds": round(time.perf_counter() - tick, 1),
    }
    print(f"generated {rows:,} orders in {args.files} CSV files, {size / GIB:.2f} GiB", flush=True)

    settings = Settings(home=home)
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        memory_limit=limit,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    print(f"cluster {cluster.scheduler_address}, dashboard {client.dashboard_link}", flush=True)
    try:
        tick = time.perf_counter()
        result = ingest.ingest(
            settings, [str(raw)], engine="dask", scheduler=cluster.scheduler_address
        )
        seconds = time.perf_counter() - tick
        report["ingest"] = {
            "seconds": round(seconds, 1),
            "rows_read": result.rows_read,
            "rows_written": result.rows_written,
            "rows_quarantined": result.rows_quarantined,
            "balanced": result.balanced,
            "partitions": len(result.partitions),
            "rows_per_s": round(result.rows_read / seconds),
            "worker_peak_rss_gib": peaks(client),
        }
        print("ingest", json.dumps(report["ingest"]), flush=True)
        fresh_workers(client, args.workers)

        tick = time.perf_counter()
        trained = dask_train.train_on_cluster(settings, client, max_rounds=args.max_rounds)
        seconds = time.perf_counter() - tick
        report["train"] = {
            "seconds": round(seconds, 1),
            "rows": trained.rows,
            "rows_per_s": round(sum(trained.rows.values()) / seconds),
            "timings": {k: round(v, 1) for k, v in trained.timings.items()},
            "test_mae_s": round(trained.metrics["mae"], 1),
            "test_coverage": round(trained.metrics["coverage"], 3),
            "best_iteration": next(
                c.params.get("best_iteration") for c in trained.candidates if c.name == "xgboost"
            ),
            "model_uri": trained.model_uri,
            "worker_peak_rss_gib": peaks(client),
        }
        print("train", json.dumps(report["train"]), flush=True)
        fresh_workers(client, args.workers)

        tick = time.perf_counter()
        scored = dask_predict.predict_dataset(
            settings,
            client,
            lake.dataset_uri(settings),
            str(work / "predictions"),
            model_uri=trained.model_uri,
        )
        seconds = time.perf_counter() - tick
        report["predict"] = {
            "seconds": round(seconds, 1),
            "files": scored.files,
            "rows": scored.rows,
            "rejected": scored.rejected,
            "rows_per_s": round(scored.rows / seconds),
            "worker_peak_rss_gib": peaks(client),
        }
        print("predict", json.dumps(report["predict"]), flush=True)
    finally:
        client.close()
        cluster.close()

    if not args.skip_local:
        total = report["ingest"]["rows_written"]
        report["local_train"] = local_engine(settings, home, limit, args.max_rounds, total)
        print("local", json.dumps(report["local_train"]), flush=True)

    print_summary(report)
    print(json.dumps(report))
    if not args.keep:
        for path in (raw, work / "predictions"):
            shutil.rmtree(path, ignore_errors=True)


def local_engine(settings, home: Path, limit: int, max_rounds: int, total: int) -> dict:
    """The local engine under the worker's limit on the whole dataset, and two control
    slices (newest days) whose peaks give the memory per order it needs."""
    from eta_cli import lake

    orders = Path(lake.dataset_uri(settings))
    days = sorted(p.name.split("=", 1)[1] for p in orders.iterdir() if p.name.startswith("order"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))}
    env["ETA_HOME"] = str(home)
    base = [sys.executable, "-m", "eta_cli", "train", "--max-rounds", str(max_rounds), "--json"]
    whole = run_limited(base, env, limit)
    whole.pop("stdout")
    controls = []
    # The newest days holding ~300k and ~750k orders: small enough for the limit.
    per_day = total / max(len(days), 1)
    small = max(1, round(300_000 / per_day))
    for count in (small, max(small + 1, round(750_000 / per_day))):
        since = days[-count]
        run = run_limited([*base, "--since", since], env, limit)
        ok = run["returncode"] == 0 and not run["killed_over_limit"]
        run["orders"] = sum(json.loads(run.pop("stdout"))["rows"].values()) if ok else None
        run["since"] = since
        controls.append(run)
    slope = None
    if all(c["orders"] for c in controls) and controls[1]["orders"] > controls[0]["orders"]:
        small, large = controls
        slope = (large["peak_rss_gib"] - small["peak_rss_gib"]) * GIB
        slope /= large["orders"] - small["orders"]
    need = None
    if slope:
        need = controls[1]["peak_rss_gib"] + slope * (total - controls[1]["orders"]) / GIB
    return {
        "whole_dataset": whole,
        "controls": controls,
        "measured_bytes_per_order": round(slope) if slope else None,
        "dataset_orders": total,
        "estimated_need_gib": round(need, 1) if need else None,
    }


def print_summary(report: dict) -> None:
    print()
    print(
        f"{report['orders']:,} orders ({report['generate']['csv_gib']} GiB of CSV) on "
        f"{report['workers']} workers x {report['worker_memory_gib']} GiB, "
        f"{report['cpus']} CPUs"
    )
    for step in ("ingest", "train", "predict"):
        data = report.get(step)
        if data:
            print(
                f"  {step:8s} {data['seconds']:8.1f} s  {data['rows_per_s']:>10,} rows/s  "
                f"peak RSS per worker {data['worker_peak_rss_gib']} GiB"
            )
    local = report.get("local_train")
    if local:
        whole = local["whole_dataset"]
        what = (
            f"killed at {whole['peak_rss_gib']} GiB after {whole['seconds']} s"
            if whole["killed_over_limit"]
            else f"exit {whole['returncode']} after {whole['seconds']} s"
        )
        print(f"  local train, whole dataset, same limit: {what}")
        for control in local["controls"]:
            print(
                f"  local train, control since {control['since']}: {control['orders']} orders, "
                f"peak {control['peak_rss_gib']} GiB in {control['seconds']} s"
            )
        print(
            f"  local train needs ~{local['measured_bytes_per_order']} bytes/order -> "
            f"~{local['estimated_need_gib']} GiB for {local['dataset_orders']:,} orders"
        )


if __name__ == "__main__":
    main()
