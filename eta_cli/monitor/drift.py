"""Drift reports: is today's traffic still the traffic the champion was trained on?

:func:`drift_report` compares a *current* set of orders with a *reference* one
using Evidently 0.7 (``Report`` / ``Dataset`` / ``DataDefinition`` /
``DataDriftPreset``), and adds what Evidently does not know about this model:

- drift of the model's median prediction (``eta_p50_s``): taken from the
  prediction log or the reference sample when present, otherwise the orders are
  scored with the champion;
- regression quality (MAE, interval coverage, lateness) when the actual delivery
  times of the current orders are known, next to the champion's test metrics.

Everything is computed on at most ``sample_rows`` rows per side (a seeded random
sample), which keeps the HTML report a few MB and the run a few seconds; the
summary says how many rows were there before and after sampling.

Nightly reports must not alarm on ordinary days, so two rules apply before any test:

- **weekday-matched reference**: when the current orders cover fewer than seven
  weekdays (a nightly report covers one), the reference is restricted to orders of
  the same weekdays (:func:`eta_cli.monitor.data.match_weekdays`). A Saturday is
  compared with the reference's Saturdays, so weekend hours and mix are not drift,
  while a real change on that day is still seen at full strength (a rolling 7-day
  window would dilute it six times). With too few such reference orders the whole
  reference is used and a note says so.
- **minimum sample**: below :data:`MIN_CURRENT_ROWS` (200) current orders the report
  is still written but gives no verdict (``meaningful`` false, ``dataset_drift``
  false: no alert, no retrain); a test on a handful of orders measures chance.

One report is four steps, each in its own module: **gather** both sides
(:mod:`eta_cli.monitor.data`), **score** them with Evidently (this module),
**compare** quality and store mix (:mod:`eta_cli.monitor.quality`) and
**deliver** the result (:mod:`eta_cli.monitor.deliver`: an HTML report and a JSON
summary under ``reports_dir``, optionally uploaded to S3, one row in
``drift_reports`` and one per column in ``drift_columns`` of the monitoring
database, and a webhook alert on drift). The request, result and column names
live in :mod:`eta_cli.monitor.result` and are re-exported here, the module
callers import.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.lake import parse_since
from eta_cli.monitor import data, deliver, quality, report
from eta_cli.monitor.data import sample
from eta_cli.monitor.result import (
    CATEGORICAL_COLUMNS,
    CURRENT_ORDERS,
    CURRENT_PREDICTIONS,
    DRIFT_COLUMNS,
    EXIT_DELIVERY,
    EXIT_DRIFT,
    HOUR_COLUMN,
    MIN_CURRENT_ROWS,
    NUMERIC_COLUMNS,
    PREDICTION_COLUMN,
    PREDICTION_COLUMNS,
    REFERENCE_CHAMPION,
    SAMPLE_SEED,
    ColumnDrift,
    DriftInputError,
    DriftRequest,
    DriftResult,
    Quality,
)

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.config import Settings
    from eta_cli.monitor.data import Gathered

__all__ = [
    "CATEGORICAL_COLUMNS",
    "CURRENT_ORDERS",
    "CURRENT_PREDICTIONS",
    "DRIFT_COLUMNS",
    "EXIT_DELIVERY",
    "EXIT_DRIFT",
    "HOUR_COLUMN",
    "MIN_CURRENT_ROWS",
    "NUMERIC_COLUMNS",
    "PREDICTION_COLUMN",
    "PREDICTION_COLUMNS",
    "REFERENCE_CHAMPION",
    "SAMPLE_SEED",
    "SMALL_SAMPLE",
    "ColumnDrift",
    "DriftInputError",
    "DriftRequest",
    "DriftResult",
    "Quality",
    "Scores",
    "build_report",
    "column_results",
    "drift_report",
    "evidently_frame",
    "methods_for",
    "run_evidently",
    "sample",
    "score",
]


def drift_report(
    settings: Settings, request: DriftRequest | None = None, **options: Any
) -> DriftResult:
    """Gather both sides, score drift, compare quality, deliver the report; the result.

    ``request`` says what to compare and where the report goes (:class:`DriftRequest`);
    its fields may be given as keywords instead: ``drift_report(settings, current=path)``
    is ``drift_report(settings, DriftRequest(current=path))``. Bad input raises
    :class:`DriftInputError` (or a storage error for ``upload_s3`` without a bucket)
    before any work; delivery failures (database, S3, webhook) are recorded in
    ``errors``/``alert`` rather than raised, see :attr:`DriftResult.exit_code`.
    """
    if request is None:
        request = DriftRequest(**options)
    elif options:
        raise TypeError("drift_report takes a DriftRequest or its fields as keywords, not both")
    started = time.perf_counter()
    created = datetime.now(UTC).replace(microsecond=0)
    since = request.since
    window = parse_since(since) if isinstance(since, str) or since is None else since
    rows_limit = request.sample_limit(settings)
    if request.upload_s3:
        report.s3_report_uri(settings, created, "check")  # no bucket: fail before any work
    gathered = data.gather(settings, request, window, rows_limit)
    scores = score(gathered, settings.drift_share_threshold)
    comparison = quality.compare(settings, gathered)
    result = _result(created, request, gathered, scores, comparison, settings)
    deliver.deliver(settings, request, result, scores.snapshot, started)
    result.elapsed_s = time.perf_counter() - started
    return result


def _result(
    created: datetime,
    request: DriftRequest,
    gathered: Gathered,
    scores: Scores,
    comparison: quality.Comparison,
    settings: Settings,
) -> DriftResult:
    """The result of the three analysis steps, before delivery fills in where it went."""
    loaded = gathered.model
    return DriftResult(
        created_at=created,
        reference_source=gathered.reference_source,
        current_source=gathered.current_source,
        reference_rows=len(gathered.reference_raw),
        current_rows=len(gathered.current_raw),
        reference_sampled_rows=len(gathered.reference),
        current_sampled_rows=len(gathered.current),
        sample_rows=gathered.sample_rows,
        threshold=settings.drift_share_threshold,
        columns=scores.columns,
        prediction=scores.prediction,
        prediction_source=gathered.prediction_source if gathered.with_prediction else None,
        quality=comparison.quality,
        unseen_store_share=comparison.unseen_store_share,
        unseen_store_basis=comparison.unseen_store_basis,
        model_name=getattr(loaded, "name", None),
        model_version=getattr(loaded, "version", None),
        model_uri=getattr(loaded, "uri", None),
        window=gathered.window,
        notes=[*gathered.notes, *scores.notes, *_sample_notes(len(gathered.current))],
        fail_on_drift=request.fail_on_drift,
    )


def _sample_notes(current_rows: int) -> list[str]:
    """Why a report of very few current orders gives no verdict."""
    if current_rows >= MIN_CURRENT_ROWS:
        return []
    return [
        f"only {current_rows:,} current orders: below {MIN_CURRENT_ROWS:,} the drift verdict "
        "is not meaningful, so none is given (widen --since for more orders)"
    ]


# --------------------------------------------------------------------------- score


@dataclass
class Scores:
    """Evidently's verdict per input column and for the prediction, and its snapshot."""

    snapshot: Any  # the Evidently run: the HTML report is rendered from it
    columns: list[ColumnDrift]
    prediction: ColumnDrift | None
    notes: list[str]


def score(gathered: Gathered, threshold: float) -> Scores:
    """Run Evidently on both sides; per-column results in :data:`DRIFT_COLUMNS` order."""
    ref, cur, with_prediction = gathered.reference, gathered.current, gathered.with_prediction
    snapshot = run_evidently(
        evidently_frame(ref, with_prediction),
        evidently_frame(cur, with_prediction),
        threshold,
        with_prediction,
    )
    found = column_results(snapshot)
    notes = []
    if methods_for(len(ref), len(cur))[0]:
        notes.append(
            f"a side has at most {SMALL_SAMPLE:,} rows: drift is tested with KS / chi-square "
            "p-values (drifted when p < threshold) instead of distances"
        )
    columns = [found[c] for c in DRIFT_COLUMNS if c in found]
    if len(columns) != len(DRIFT_COLUMNS):
        missing = sorted(set(DRIFT_COLUMNS) - set(found))
        notes.append(f"Evidently returned no drift result for: {', '.join(missing)}")
    return Scores(snapshot, columns, found.get(PREDICTION_COLUMN), notes)


def _labels(values: pd.Series) -> pd.Series:
    """Category labels as text ('1', not '1.0'), missing as None, for Evidently."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        return numbers.astype("string").astype(object).where(numbers.notna(), None)
    text = values.astype("string")
    return text.astype(object).where(text.notna(), None)


def evidently_frame(frame: pd.DataFrame, with_prediction: bool) -> pd.DataFrame:
    """Only the compared columns, numeric as float64 and categories as text."""
    import pandas as pd

    out = pd.DataFrame(index=frame.index)
    for name in NUMERIC_COLUMNS:
        if name == HOUR_COLUMN:
            out[name] = frame[schema.CREATED_AT].dt.hour.astype("float64")
        else:
            out[name] = frame[name].astype("float64")
    for name in CATEGORICAL_COLUMNS:
        out[name] = _labels(frame[name])
    if with_prediction:
        out[PREDICTION_COLUMN] = frame[PREDICTION_COLUMN].astype("float64")
    return out.reset_index(drop=True)


SMALL_SAMPLE = 1000  # Evidently's own cut between p-value tests and distances


def methods_for(reference_rows: int, current_rows: int) -> tuple[str | None, str | None]:
    """(numeric, categorical) drift methods; None lets Evidently choose.

    Evidently picks distances (Wasserstein, Jensen-Shannon) when the *reference* has
    more than 1,000 rows, whatever the size of the current data. A distance measured
    on a few hundred current orders is mostly sampling noise and flags stable days,
    so when either side is small we use the tests Evidently uses for small data
    (Kolmogorov-Smirnov, chi-square), whose p-values account for the sample size.
    """
    if min(reference_rows, current_rows) <= SMALL_SAMPLE:
        return "ks", "chisquare"
    return None, None


def build_report(
    threshold: float,
    with_prediction: bool,
    num_method: str | None = None,
    cat_method: str | None = None,
) -> tuple[Any, Any]:
    """The Evidently ``Report`` and ``DataDefinition`` used for every drift report."""
    from evidently import DataDefinition, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    numerical = [*NUMERIC_COLUMNS, *([PREDICTION_COLUMN] if with_prediction else [])]
    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=list(CATEGORICAL_COLUMNS)
    )
    metrics: list[Any] = [
        DataDriftPreset(
            columns=list(DRIFT_COLUMNS),
            drift_share=threshold,
            num_method=num_method,
            cat_method=cat_method,
        )
    ]
    if with_prediction:
        metrics.append(ValueDrift(column=PREDICTION_COLUMN, method=num_method))
    return Report(metrics, include_tests=True), definition


def run_evidently(
    reference: pd.DataFrame, current: pd.DataFrame, threshold: float, with_prediction: bool
) -> Any:
    """Run the report on frames made by :func:`evidently_frame`; returns the snapshot."""
    from evidently import Dataset

    num_method, cat_method = methods_for(len(reference), len(current))
    evidently_report, definition = build_report(threshold, with_prediction, num_method, cat_method)
    return evidently_report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def column_results(snapshot: Any) -> dict[str, ColumnDrift]:
    """Per-column method, score, threshold and verdict from the snapshot's ValueDrift results.

    The verdict is Evidently's own (its test status), so p-value methods (drift when
    the score is *below* the threshold) and distance methods (above) both come out right.
    """
    out: dict[str, ColumnDrift] = {}
    summary = snapshot.dict()
    for result in summary["metrics"]:
        config = result.get("config") or {}
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        column = config["column"]
        out[column] = ColumnDrift(
            column=column,
            kind=(
                "prediction"
                if column == PREDICTION_COLUMN
                else "categorical"
                if column in CATEGORICAL_COLUMNS
                else "numerical"
            ),
            method=str(config.get("method") or "unknown"),
            score=float(result["value"]),
            threshold=None if config.get("threshold") is None else float(config["threshold"]),
            drifted=False,
        )
    for test in summary["tests"]:
        column = (test.get("metric_config") or {}).get("params", {}).get("column")
        name = str(test.get("name", ""))
        match = re.match(r"Value Drift for column (.+)$", name)
        column = column or (match.group(1) if match else None)
        if column in out and match:
            drifted = str(test.get("status", "")).upper().endswith("FAIL")
            out[column] = ColumnDrift(**{**asdict(out[column]), "drifted": drifted})
    return out
