"""Benchmark ``eta drift-report`` against the same bare Evidently report.

    .venv/bin/python benchmarks/drift.py [--reference-rows 200000] [--current-rows 50000]
                                         [--sample 20000] [--repeats 3]

Data: 200,000 synthetic reference orders *with* the champion's predictions (as the
reference sample logged with a training run has them) and 50,000 drifted current
orders *without* predictions (as ``eta ingest`` writes them), both as Parquet.
The scorer is a real multi-quantile XGBoost ``EtaModel`` fitted here in seconds.

What is compared, both timed end to end from the Parquet files, after a warm-up
(imports and first-call costs paid by neither):

- ``eta``: ``eta_cli.monitor.drift.drift_report(settings, reference=..., current=...)`` -
  read, check and type the columns, seeded sample of ``--sample`` rows per side,
  score the current sample with the model, Evidently report, HTML with the summary
  header, JSON summary, one row per report and per column in the SQLite database.
- ``bare``: read the same files, the same seeded sample, the same columns and
  types, then ``Report([DataDriftPreset(columns, drift_share), ValueDrift(eta_p50_s)],
  include_tests=True).run(...)`` and ``save_html`` - the identical Evidently report.
  Bare Evidently cannot score orders, so the current predictions are computed
  *before* its timer starts: the comparison is conservative for eta.

Prints median and minimum wall times over ``--repeats`` runs, the ratio of the
medians (target <= 1.3), and both HTML sizes (target < 10 MB).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from eta_cli import features, schema, synthetic
from eta_cli.config import load_settings
from eta_cli.model import OUTPUT_COLUMNS, EtaModel
from eta_cli.monitor import drift
from eta_cli.registry import LoadedModel

QUANTILES = (0.1, 0.5, 0.7, 0.9)


def fit_model(orders: pd.DataFrame) -> LoadedModel:
    """A real multi-quantile booster over the shared feature builder (a few seconds)."""
    import xgboost as xgb

    clean = orders.dropna(subset=[schema.DELIVERED_AT])
    target = (clean[schema.DELIVERED_AT] - clean[schema.CREATED_AT]).dt.total_seconds()
    keep = target.between(300, 14_400).to_numpy()
    clean, target = clean[keep], target.to_numpy()[keep]
    matrix, state = features.build_training_features(features.columns_from_frame(clean), target)
    params = {
        "objective": "reg:quantileerror",
        "quantile_alpha": list(QUANTILES),
        "tree_method": "hist",
        "max_depth": 6,
        "learning_rate": 0.1,
        "seed": 0,
    }
    booster = xgb.train(params, xgb.DMatrix(matrix, label=target), num_boost_round=100)
    model = EtaModel(booster, state, QUANTILES, 0.1, 0.9, 0.7, {})
    return LoadedModel(model, "eta-bench", "1", "champion", None, "benchmark", {}, None)


def bare_evidently(ref_path: Path, cur_path: Path, sample_rows: int, out: Path) -> float:
    """The same Evidently report without eta around it; returns wall seconds."""
    from evidently import Dataset

    started = time.perf_counter()
    reference = drift.sample(pd.read_parquet(ref_path), sample_rows)
    current = drift.sample(pd.read_parquet(cur_path), sample_rows)
    frames = []
    for frame in (reference, current):
        data = pd.DataFrame(
            {name: frame[name].astype("float64") for name in drift.NUMERIC_COLUMNS[:-1]}
        )
        data[drift.HOUR_COLUMN] = frame[schema.CREATED_AT].dt.hour.astype("float64")
        for name in drift.CATEGORICAL_COLUMNS:
            text = frame[name].astype("string")
            data[name] = text.astype(object).where(text.notna(), None)
        data[drift.PREDICTION_COLUMN] = frame[drift.PREDICTION_COLUMN].astype("float64")
        frames.append(data.reset_index(drop=True))
    num, cat = drift.methods_for(len(frames[0]), len(frames[1]))
    report, definition = drift.build_report(0.3, True, num, cat)
    snapshot = report.run(
        current_data=Dataset.from_pandas(frames[1], data_definition=definition),
        reference_data=Dataset.from_pandas(frames[0], data_definition=definition),
    )
    snapshot.save_html(str(out))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-rows", type=int, default=200_000)
    parser.add_argument("--current-rows", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=None, help="default: drift_sample_rows")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eta-drift-bench-"))
    settings = load_settings(overrides={"home": str(work / "home")})
    sample_rows = settings.drift_sample_rows if args.sample is None else args.sample

    tick = time.perf_counter()
    reference = synthetic.generate_orders(args.reference_rows, seed=0)
    current = synthetic.generate_orders(args.current_rows, seed=0, drift=True)
    loaded = fit_model(reference.sample(n=min(len(reference), 50_000), random_state=1))
    scored = loaded.model.predict_frame(reference)
    reference = pd.concat([reference, scored], axis=1)
    ref_path, cur_path = work / "reference.parquet", work / "current.parquet"
    reference.to_parquet(ref_path)
    current.to_parquet(cur_path)
    # Bare Evidently gets the current predictions for free (computed outside its timer).
    cur_scored_path = work / "current-scored.parquet"
    pd.concat([current, loaded.model.predict_frame(current)], axis=1).to_parquet(cur_scored_path)
    print(
        f"data: {len(reference):,} reference orders (with {', '.join(OUTPUT_COLUMNS)}), "
        f"{len(current):,} drifted current orders; sample {sample_rows:,} rows per side; "
        f"prepared in {time.perf_counter() - tick:.1f} s"
    )

    # Warm-up: imports and first calls (numba/scipy caches) cost neither side.
    warm = {name: work / f"warm-{name}.parquet" for name in ("ref", "cur", "cur-scored")}
    reference.head(3000).to_parquet(warm["ref"])
    current.head(2000).to_parquet(warm["cur"])
    pd.read_parquet(cur_scored_path).head(2000).to_parquet(warm["cur-scored"])
    drift.drift_report(settings, reference=str(warm["ref"]), current=str(warm["cur"]), model=loaded)
    bare_evidently(warm["ref"], warm["cur-scored"], sample_rows, work / "warm.html")

    eta_times, bare_times = [], []
    result = None
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = drift.drift_report(
            settings,
            reference=str(ref_path),
            current=str(cur_path),
            sample_rows=sample_rows,
            model=loaded,
        )
        eta_times.append(time.perf_counter() - started)
        bare_times.append(bare_evidently(ref_path, cur_scored_path, sample_rows, work / "b.html"))

    assert result is not None
    eta_median, bare_median = statistics.median(eta_times), statistics.median(bare_times)
    ratio = eta_median / bare_median
    html_mb = Path(result.html_path).stat().st_size / 1e6
    bare_mb = (work / "b.html").stat().st_size / 1e6
    print(
        f"verdict: dataset_drift={result.dataset_drift} "
        f"drifted={result.drifted_columns}/{result.total_columns} "
        f"prediction_drift={result.prediction.drifted if result.prediction else None}"
    )
    print(
        f"eta drift-report: median {eta_median:.2f} s, min {min(eta_times):.2f} s "
        f"({', '.join(f'{t:.2f}' for t in eta_times)})"
    )
    print(
        f"bare Evidently:   median {bare_median:.2f} s, min {min(bare_times):.2f} s "
        f"({', '.join(f'{t:.2f}' for t in bare_times)})"
    )
    print(f"ratio (medians): {ratio:.2f}x   target <= 1.30x")
    print(f"HTML: eta {html_mb:.2f} MB, bare {bare_mb:.2f} MB   target < 10 MB")
    ok = ratio <= 1.3 and eta_median < 20 and html_mb < 10
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
