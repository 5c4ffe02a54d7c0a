"""Benchmark ``eta train`` on synthetic orders against the generator's noise floor.

    .venv/bin/python benchmarks/train.py [--orders 200000] [--seed 42] [--clean]

Generates orders with their hidden truth, cleans them the way ingest does
(out-of-range feature values blanked, unusable orders dropped), writes the
cleaned Parquet, runs ``eta train --data ... --json`` as a subprocess on a fresh
embedded home (SQLite + local artifacts) and prints, on the run's own test split:
the model's MAE against the noise floor (MAE of ``synthetic.expected_duration``)
and both naive baselines, interval coverage, lateness at the quoted quantile, the
total wall time of ``eta train`` and the time of the bare XGBoost fits inside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from eta_cli import schema, synthetic

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Ingest's rules: blank out-of-range nullable values, drop orders that cannot be used."""
    frame = raw.copy()
    frame[schema.ORDER_ID] = [f"o{i:07d}" for i in range(len(frame))]
    keep = frame[schema.CREATED_AT].notna() & frame[schema.DELIVERED_AT].notna()
    for column in schema.COLUMNS:
        if column.minimum is None or column.maximum is None:
            continue
        values = frame[column.name].astype("Float64")
        bad = values.notna() & ~values.between(column.minimum, column.maximum)
        if column.out_of_range == "reject":
            keep &= ~bad.fillna(False)
        else:
            frame.loc[bad.fillna(False).to_numpy(), column.name] = pd.NA
    seconds = (frame[schema.DELIVERED_AT] - frame[schema.CREATED_AT]).dt.total_seconds()
    frame[schema.TARGET] = seconds
    keep &= seconds.between(300, 14_400)
    frame = frame.loc[keep.fillna(False).to_numpy()].copy()
    frame[schema.ORDER_DATE] = frame[schema.CREATED_AT].dt.strftime("%Y-%m-%d")
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--clean", action="store_true", help="generate without the messy quirks")
    parser.add_argument("--max-rounds", type=int, default=None)
    args = parser.parse_args()

    raw = synthetic.generate_orders(
        args.orders, seed=args.seed, keep_truth=True, messy=not args.clean
    )
    frame = clean(raw)
    truth = frame[[schema.ORDER_ID, schema.TARGET]].copy()
    truth["expected"] = synthetic.expected_duration(frame, args.seed)

    with tempfile.TemporaryDirectory(prefix="eta-bench-") as tmp:
        data = Path(tmp) / "orders.parquet"
        frame[list(schema.CLEAN_COLUMNS)].to_parquet(data, index=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ETA_"))}
        env["ETA_HOME"] = str(Path(tmp) / "home")
        command = [sys.executable, "-m", "eta_cli", "train", "--data", str(data), "--json"]
        if args.max_rounds:
            command += ["--max-rounds", str(args.max_rounds)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"eta train failed ({done.returncode}): {done.stderr.strip()}")
        result = json.loads(done.stdout)

        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{Path(tmp) / 'home' / 'mlflow.db'}")
        local = client.download_artifacts(
            result["run_id"], "evaluation/test_orders.parquet", str(Path(tmp) / "dl")
        )
        test_ids = pd.read_parquet(local, columns=[schema.ORDER_ID])
    test = test_ids.merge(truth, on=schema.ORDER_ID, how="left")
    floor = float(np.mean(np.abs(test["expected"] - test[schema.TARGET])))

    cands = result["candidates"]
    model = cands["xgboost"]["metrics"]
    cpus = os.cpu_count()
    load = os.getloadavg()[0]
    print(
        f"eta train benchmark: {args.orders:,} synthetic orders (seed {args.seed}, "
        f"{'clean' if args.clean else 'messy'}), {len(frame):,} after cleaning"
    )
    print(
        f"split rows train/val/test: {result['rows']['train']:,} / "
        f"{result['rows']['val']:,} / {result['rows']['test']:,} (test = newest orders)"
    )
    print(f"noise floor MAE (expected_duration) : {floor:8.1f} s")
    print(
        f"model (xgboost) MAE                 : {model['mae']:8.1f} s  "
        f"({100 * (model['mae'] / floor - 1):+.1f} % vs floor; target <= +10 %)"
    )
    for name in ("median", "upstream_sum", "linear"):
        mae = cands[name]["metrics"]["mae"]
        print(
            f"{name + ' MAE':<36}: {mae:8.1f} s  (model is {100 * (1 - model['mae'] / mae):.1f} "
            "% better)"
        )
    print(
        f"p10-p90 coverage                    : {100 * model['coverage']:8.1f} %  (target 78-82 %)"
    )
    print(f"lateness at quoted q                : {100 * model['lateness_rate']:8.1f} %")
    print(f"pinball (mean over quantiles)       : {model['pinball']:8.1f} s")
    print(f"within +/-10 min                    : {100 * model['within_10min']:8.1f} %")
    timings = result["timings"]
    print(f"eta train wall time (subprocess)    : {wall:8.1f} s  (target < 60 s without --trials)")
    print(
        f"  inside: total {timings['total_s']:.1f} s, bare XGBoost fit "
        f"{timings['xgb_fit_s']:.1f} s, features {timings['features_s']:.1f} s, "
        f"baselines+linear {timings['baselines_s']:.1f} s, MLflow logging "
        f"{timings['logging_s']:.1f} s"
    )
    best_iteration = cands["xgboost"]["params"].get("best_iteration", "n/a")
    print(
        f"best iteration: {best_iteration}; machine: {cpus} CPUs, load average {load:.2f} "
        "at the end (shared machine: times may be inflated)"
    )


if __name__ == "__main__":
    main()
