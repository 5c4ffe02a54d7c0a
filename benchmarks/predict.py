"""Benchmark ``eta predict`` against ``mlflow models predict`` on the same registered model.

    .venv/bin/python benchmarks/predict.py [--rows 200000] [--repeat 3] [--orders 50000]
                                           [--home DIR] [--keep]

1. Registers one model on a fresh embedded home (SQLite + local artifacts) with the
   real pipeline (``eta ingest --synthetic``, ``eta train``, ``eta register``; skipped
   when ``--home`` already has a champion), as ``benchmarks/serve.py`` does.
2. One order: the wall time of ``eta predict --json order.json`` (a warm-up call first
   fills the model cache, as any earlier call would) against ``mlflow models predict
   --env-manager local -m models:/eta@champion`` on the same order, best of ``--repeat``.
3. Files: ``--rows`` synthetic orders as CSV and as Parquet. Orders/s of ``eta predict
   --input`` on the CSV against ``mlflow models predict -i`` on the same CSV; and of
   ``eta predict --input`` on the Parquet file against the bare job on it (a Python
   process that reads it with pyarrow, loads the same model folder with
   ``EtaModel.load``, calls ``predict_frame`` and writes Parquet).
4. Peak memory (max RSS) of every process, from ``os.wait4`` (this process stays small:
   Linux counts the parent's memory at fork time in a child's peak).

Every figure is a whole process, start-up included, as a user waits for it. Targets
(issue 14): one order >= 4x faster than mlflow models predict; files >= 4x mlflow's
orders/s and within 1.3x of the bare job.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import register_model  # the same registration as the serve benchmark

VENV_BIN = Path(sys.executable).parent
ETA = str(VENV_BIN / "eta")
MLFLOW = str(VENV_BIN / "mlflow")
ROOT = Path(__file__).resolve().parent.parent

BARE = """
import sys
import pyarrow.parquet as pq
from eta_cli.model import EtaModel
model = EtaModel.load(sys.argv[1])
frame = pq.read_table(sys.argv[2]).to_pandas()
out = model.predict_frame(frame)
out.to_parquet(sys.argv[3])
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of one process; exits on failure."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, usage.ru_maxrss // 1024


def best(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, int]:
    runs = [timed(cmd, env) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def write_inputs(folder: Path, rows: int) -> None:
    """One order as JSON (eta's form and MLflow's ``dataframe_records``), and ``rows``
    clean orders as CSV and Parquet (the same orders)."""
    from eta_cli import schema
    from eta_cli.synthetic import generate_orders

    frame = generate_orders(rows, seed=7, messy=False)[list(schema.INPUT_COLUMNS)]
    frame["created_at"] = frame["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    csv, parquet = folder / "orders.csv", folder / "orders.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    order = folder / "order.json"
    shutil.copy(ROOT / "examples" / "order.json", order)
    fields = json.loads(order.read_text())
    fields.pop("order_id", None)
    mlflow_order = folder / "order-mlflow.json"
    mlflow_order.write_text(json.dumps({"dataframe_records": [fields]}))


def champion_folder(env: dict[str, str]) -> str:
    """The model folder the fast path cached for the champion (the bare job loads it)."""
    probe = (
        "from eta_cli.config import load_settings; from eta_cli import model_cache as m;"
        "s = load_settings(); v = m.load_model(s).version;"
        "print(m.entry_dir(s, s.model_name, v))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="orders in the batch file")
    parser.add_argument("--repeat", type=int, default=3, help="one-order runs per tool (best)")
    parser.add_argument("--orders", type=int, default=50_000, help="synthetic orders to train on")
    parser.add_argument("--home", help="ETA_HOME to use (kept); default: a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--write-inputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_inputs:
        write_inputs(Path(args.write_inputs), args.rows)
        return

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="eta-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "MLFLOW_"))}
    env.update(
        ETA_HOME=str(home),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    print(f"home: {home}; cores: {os.cpu_count()}; load average: {os.getloadavg()}")
    print("registering a model:")
    register_model(env, args.orders)
    work = Path(tempfile.mkdtemp(prefix="eta-bench-predict-"))
    try:
        run_all(args, env, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.home and not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def run_all(args: argparse.Namespace, env: dict[str, str], work: Path) -> None:
    # In a child process: the peak memory of a process includes its parent's at fork time.
    subprocess.run(
        [sys.executable, __file__, "--write-inputs", str(work), "--rows", str(args.rows)],
        check=True,
    )
    order, mlflow_order, csv, parquet = (
        work / name for name in ("order.json", "order-mlflow.json", "orders.csv", "orders.parquet")
    )
    model_uri = "models:/eta@champion"
    mlflow_common = [MLFLOW, "models", "predict", "--env-manager", "local", "-m", model_uri]
    timed([ETA, "predict", "--json", str(order), "--format", "json"], env)  # fills the cache
    rows = args.rows
    figures = {
        "one order: eta predict --json": best(
            [ETA, "predict", "--json", str(order), "--format", "json"], env, args.repeat
        ),
        "one order: mlflow models predict": best(
            [*mlflow_common, "-i", str(mlflow_order), "-t", "json", "-o", str(work / "one.json")],
            env,
            args.repeat,
        ),
        "file: eta predict --input CSV": timed(
            [ETA, "predict", "--input", str(csv), "--output", str(work / "eta-csv.parquet")], env
        ),
        "file: mlflow models predict -i CSV": timed(
            [*mlflow_common, "-i", str(csv), "-t", "csv", "-o", str(work / "mlflow.json")], env
        ),
        "file: eta predict --input Parquet": timed(
            [ETA, "predict", "--input", str(parquet), "--output", str(work / "eta-pq.parquet")],
            env,
        ),
        "file: bare read + predict_frame + write": timed(
            [sys.executable, "-c", BARE, champion_folder(env), str(parquet), str(work / "b.pq")],
            env,
        ),
    }
    check_same_numbers(work)
    report(figures, rows)


def check_same_numbers(work: Path) -> None:
    import numpy as np
    import pandas as pd

    ours = pd.read_parquet(work / "eta-pq.parquet")
    bare = pd.read_parquet(work / "b.pq")
    diff = np.abs(ours["eta_p50_s"].to_numpy() - bare["eta_p50_s"].to_numpy()).max()
    print(f"same model: largest |p50 eta predict - p50 bare| = {diff:.3f} s (0.1 s rounding)")


def report(figures: dict[str, tuple[float, int]], rows: int) -> None:
    print()
    print(f"{'job':42s} {'wall s':>8s} {'orders/s':>10s} {'peak MB':>8s}")
    for label, (seconds, peak) in figures.items():
        rate = f"{rows / seconds:10.0f}" if label.startswith("file") else f"{'':10s}"
        print(f"{label:42s} {seconds:8.2f} {rate} {peak:8d}")
    one = (
        figures["one order: mlflow models predict"][0] / figures["one order: eta predict --json"][0]
    )
    vs_mlflow = (
        figures["file: mlflow models predict -i CSV"][0]
        / figures["file: eta predict --input CSV"][0]
    )
    vs_bare = (
        figures["file: eta predict --input Parquet"][0]
        / figures["file: bare read + predict_frame + write"][0]
    )
    print()
    print(f"one order: eta is {one:.1f}x faster than mlflow models predict (target >= 4x)")
    print(f"CSV file: eta scores {vs_mlflow:.1f}x the orders/s of mlflow models predict (>= 4x)")
    print(f"Parquet file: eta takes {vs_bare:.2f}x the bare job's time (target <= 1.3x)")
    print(json.dumps({"one_order_x": one, "csv_vs_mlflow_x": vs_mlflow, "vs_bare_x": vs_bare}))


if __name__ == "__main__":
    main()
