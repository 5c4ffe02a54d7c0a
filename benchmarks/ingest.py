"""Benchmark ``eta ingest`` against a bare pyarrow read-CSV-write-Parquet of the same file.

    .venv/bin/python benchmarks/ingest.py [--rows 2000000] [--seed 42] [--repeats 3]

Data: ``--rows`` synthetic orders in the original spelling of the real file (floats
like ``1.0`` where a column has gaps, empty missing fields), written once to
``benchmarks/.cache/`` (gitignored) and reused.

What is compared, each run a fresh process timed from start to exit, alternating:

- ``eta``: the ``eta ingest FILE --json`` command exactly as a user runs it (a new,
  empty data lake each time): header check, chunked CSV reading, validation of every
  rule, content order_id, quarantine, staging, per-date merge and dedupe, journaled
  publish of one Parquet file per order date.
- ``bare``: ``pyarrow.csv.read_csv(FILE)`` with type inference, then
  ``pyarrow.parquet.write_table`` to one file. No validation, no partitioning.

Peak memory is each process's own maximum resident set (``os.wait4``). Prints every
run, the median wall times, rows/s, the ratio of the medians (target <= 2.5), the
peak memory of eta (target < 1.5 GB), and CPU seconds (user + system), which a busy
machine disturbs less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
RATIO_TARGET = 2.5
MEMORY_TARGET_MB = 1536

BARE = """
import sys
import pyarrow.csv, pyarrow.parquet
table = pyarrow.csv.read_csv(sys.argv[1])
pyarrow.parquet.write_table(table, sys.argv[2])
print(table.num_rows)
"""


GENERATE = """
import sys
from eta_cli import synthetic
frame = synthetic.generate_orders(int(sys.argv[1]), seed=int(sys.argv[2]))
synthetic.write_csv(frame, sys.argv[3])
"""


def orders_csv(rows: int, seed: int) -> Path:
    """The benchmark file, generated once (about a minute and 2 GB of RAM for 2M rows).

    Generated in a child process: a child inherits its parent's peak RSS on Linux, so
    a big parent would inflate every measured peak.
    """
    path = CACHE / f"orders-{rows}-seed{seed}.csv"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"generating {rows:,} orders into {path} (once) ...", flush=True)
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    subprocess.run([sys.executable, "-c", GENERATE, str(rows), str(seed), str(partial)], check=True)
    partial.rename(path)
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS in MB and stdout of one child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(
                f"{' '.join(command[:3])} ... failed ({proc.returncode}): {err.read()}"
            )
        out.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return wall, cpu, usage.ru_maxrss / 1024, out.read()


def eta_command() -> list[str]:
    script = Path(sys.executable).with_name("eta")
    return [str(script)] if script.exists() else [sys.executable, "-m", "eta_cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    path = orders_csv(args.rows, args.seed)
    size_mb = path.stat().st_size / 1e6
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))}
    work = Path(tempfile.mkdtemp(prefix="eta-bench-ingest-"))
    runs: dict[str, list[tuple[float, float, float]]] = {"bare": [], "eta": []}
    print(
        f"file: {path.name}, {args.rows:,} rows, {size_mb:.0f} MB; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    try:
        for repeat in range(1, args.repeats + 1):
            target = work / f"bare-{repeat}.parquet"
            wall, cpu, rss, out = timed([sys.executable, "-c", BARE, str(path), str(target)], env)
            assert int(out) == args.rows, out
            runs["bare"].append((wall, cpu, rss))
            print(
                f"  run {repeat} bare pyarrow  {wall:6.2f} s  cpu {cpu:5.2f} s  peak {rss:5.0f} MB"
            )

            home = work / f"home-{repeat}"
            command = [*eta_command(), "--home", str(home), "ingest", str(path), "--json"]
            wall, cpu, rss, out = timed(command, env)
            result = json.loads(out)
            assert result["rows_read"] == args.rows and result["balanced"], result
            runs["eta"].append((wall, cpu, rss))
            print(
                f"  run {repeat} eta ingest    {wall:6.2f} s  cpu {cpu:5.2f} s  "
                f"peak {rss:5.0f} MB  (written {result['rows_written']:,}, quarantined "
                f"{result['rows_quarantined']:,}, {len(result['partitions'])} partitions)"
            )
            shutil.rmtree(home, ignore_errors=True)
            target.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    bare = statistics.median(w for w, _, _ in runs["bare"])
    eta = statistics.median(w for w, _, _ in runs["eta"])
    bare_cpu = statistics.median(c for _, c, _ in runs["bare"])
    eta_cpu = statistics.median(c for _, c, _ in runs["eta"])
    bare_peak = max(m for _, _, m in runs["bare"])
    eta_peak = max(m for _, _, m in runs["eta"])
    ratio = eta / bare
    print()
    for name, wall, cpu, peak in (
        ("bare pyarrow", bare, bare_cpu, bare_peak),
        ("eta ingest  ", eta, eta_cpu, eta_peak),
    ):
        print(
            f"{name} : median {wall:5.2f} s  {args.rows / wall:>10,.0f} rows/s  "
            f"cpu {cpu:5.2f} s  peak {peak:5.0f} MB"
        )
    print(
        f"ratio eta/bare {ratio:.2f} (target <= {RATIO_TARGET}): "
        f"{'PASS' if ratio <= RATIO_TARGET else 'FAIL'}   (CPU time ratio {eta_cpu / bare_cpu:.2f})"
    )
    print(
        f"eta peak memory {eta_peak:.0f} MB (target < {MEMORY_TARGET_MB} MB): "
        f"{'PASS' if eta_peak < MEMORY_TARGET_MB else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
