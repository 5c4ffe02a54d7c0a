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

Which columns are compared (:data:`NUMERIC_COLUMNS`, :data:`CATEGORICAL_COLUMNS`):
the model's input columns, with ``market_id``, ``order_protocol`` and
``store_primary_category`` as categories. ``store_id`` is left out of the
per-column tests: ~6,700 ids make a categorical test that flags any change in
which restaurants are busy, and a histogram of ids nobody can read. Store mix
is summarised instead by the share of current orders from stores the model has
no history for (``unseen_store_share``). ``created_at`` is compared as the hour
of day (``order_hour``): the raw timestamp always "drifts" as time passes, and a
one-day window would always differ from the reference in day of week.

Outputs: an HTML report and a JSON summary under ``reports_dir`` (optionally
uploaded to S3), one row in ``drift_reports`` and one per column in
``drift_columns`` of the monitoring database, and a webhook alert on drift.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.errors import EtaError

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.config import Settings

EXIT_DRIFT = 3  # --fail-on-drift and dataset drift detected
EXIT_DELIVERY = 4  # report written locally, but storing it (database / S3) failed

CATEGORICAL_COLUMNS: tuple[str, ...] = ("market_id", "order_protocol", "store_primary_category")
HOUR_COLUMN = "order_hour"
NUMERIC_COLUMNS: tuple[str, ...] = (
    *(
        c
        for c in schema.INPUT_COLUMNS
        if c not in CATEGORICAL_COLUMNS and c not in ("store_id", schema.CREATED_AT)
    ),
    HOUR_COLUMN,
)
DRIFT_COLUMNS: tuple[str, ...] = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)
PREDICTION_COLUMN = "eta_p50_s"
PREDICTION_COLUMNS: tuple[str, ...] = ("eta_p10_s", "eta_p50_s", "eta_p90_s", "eta_quoted_s")
SAMPLE_SEED = 0

CURRENT_ORDERS = "orders"
CURRENT_PREDICTIONS = "predictions"
REFERENCE_CHAMPION = "champion"


class DriftInputError(EtaError):
    """The reference or current data cannot be used; the message says which and why."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test: Evidently's method, score, threshold and verdict."""

    column: str
    kind: str  # numerical | categorical | prediction
    method: str
    score: float
    threshold: float | None
    drifted: bool


@dataclass
class Quality:
    """Regression quality of the current orders whose delivery time is known."""

    rows: int
    mae_s: float
    interval_coverage: float
    lateness_rate: float
    reference: dict[str, float] | None = None  # same figures on the reference sample
    training: dict[str, float] | None = None  # the champion's test metrics
    mae_vs_training: float | None = None  # current MAE / training test MAE


@dataclass
class DriftResult:
    """Everything one drift report found and where it went (``to_dict`` is the JSON summary)."""

    created_at: datetime
    reference_source: str
    current_source: str
    reference_rows: int
    current_rows: int
    reference_sampled_rows: int
    current_sampled_rows: int
    sample_rows: int
    threshold: float
    columns: list[ColumnDrift]
    prediction: ColumnDrift | None = None
    prediction_source: str | None = None
    quality: Quality | None = None
    unseen_store_share: float | None = None
    unseen_store_basis: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_uri: str | None = None
    window: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    html_path: str | None = None
    json_path: str | None = None
    html_uri: str | None = None
    json_uri: str | None = None
    report_id: int | None = None
    alert: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    fail_on_drift: bool = False
    elapsed_s: float = 0.0

    @property
    def drifted_columns(self) -> int:
        return sum(1 for c in self.columns if c.drifted)

    @property
    def total_columns(self) -> int:
        return len(self.columns)

    @property
    def drift_share(self) -> float:
        return self.drifted_columns / self.total_columns if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        """Evidently's rule: drifted share of columns at or above the threshold."""
        return bool(self.columns) and self.drift_share >= self.threshold

    @property
    def sampled(self) -> bool:
        return (
            self.reference_sampled_rows < self.reference_rows
            or self.current_sampled_rows < self.current_rows
        )

    @property
    def exit_code(self) -> int:
        """0, or :data:`EXIT_DRIFT` / :data:`EXIT_DELIVERY` (drift first) for cron."""
        if self.fail_on_drift and self.dataset_drift:
            return EXIT_DRIFT
        if self.errors:
            return EXIT_DELIVERY
        return 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: one object, stable keys, figures computed on the sample."""
        return {
            "report_id": self.report_id,
            "created_at": self.created_at.isoformat(),
            "model": {
                "name": self.model_name,
                "version": self.model_version,
                "uri": self.model_uri,
            },
            "reference": {
                "source": self.reference_source,
                "rows": self.reference_rows,
                "sampled_rows": self.reference_sampled_rows,
            },
            "current": {
                "source": self.current_source,
                "rows": self.current_rows,
                "sampled_rows": self.current_sampled_rows,
                "window": self.window,
            },
            "sampling": {
                "sample_rows": self.sample_rows,
                "sampled": self.sampled,
                "seed": SAMPLE_SEED,
                "note": "every figure in this summary and the HTML report is computed on the "
                "sampled rows (a seeded uniform random sample of at most sample_rows per side)",
            },
            "data_drift": {
                "dataset_drift": self.dataset_drift,
                "drift_share": self.drift_share,
                "threshold": self.threshold,
                "drifted_columns": self.drifted_columns,
                "total_columns": self.total_columns,
                "columns": [asdict(c) for c in self.columns],
            },
            "prediction_drift": (
                {**asdict(self.prediction), "source": self.prediction_source}
                if self.prediction
                else None
            ),
            "quality": asdict(self.quality) if self.quality else None,
            "unseen_store_share": self.unseen_store_share,
            "unseen_store_basis": self.unseen_store_basis,
            "notes": self.notes,
            "files": {
                "html": self.html_path,
                "json": self.json_path,
                "html_uri": self.html_uri,
                "json_uri": self.json_uri,
            },
            "alert": self.alert,
            "errors": self.errors,
            "exit_code": self.exit_code,
            "elapsed_s": round(self.elapsed_s, 3),
        }


# --------------------------------------------------------------------------- inputs


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str | None) -> timedelta | datetime | None:
    """``24h``/``7d``/``90m``/``2w`` (a window) or an ISO date/time (a start, UTC)."""
    if text is None or str(text).strip() == "":
        return None
    match = _SINCE.match(str(text))
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        if amount <= 0:
            raise DriftInputError(f"--since {text!r} must be a positive duration")
        return timedelta(**{_UNITS[unit]: amount})
    try:
        start = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise DriftInputError(
            f"--since {text!r} is not understood: use a duration such as 24h, 7d, 90m, 2w "
            "or an ISO date/time such as 2015-02-10 or 2015-02-10T12:00:00"
        ) from None
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def read_table(path: str, settings: Settings) -> pd.DataFrame:
    """A CSV (optionally .gz) or Parquet file/folder, local or ``s3://``."""
    import pandas as pd

    from eta_cli import storage

    name = str(path).lower()
    is_csv = name.endswith((".csv", ".csv.gz", ".txt"))
    if not storage.is_s3(path) and not Path(path).exists():
        raise DriftInputError(f"{path}: no such file or folder (expected a CSV or Parquet file)")
    try:
        if is_csv:
            if storage.is_s3(path):
                filesystem, inner = storage.filesystem_and_path(path, settings)
                with filesystem.open_input_stream(inner) as stream:
                    return pd.read_csv(stream, compression="gzip" if name.endswith(".gz") else None)
            return pd.read_csv(path)
        filesystem, inner = storage.filesystem_and_path(path, settings)
        return pd.read_parquet(inner, filesystem=filesystem)
    except EtaError:
        raise
    except Exception as exc:
        kind = "CSV" if is_csv else "Parquet (use .csv for CSV files)"
        raise DriftInputError(f"{path} cannot be read as {kind}: {exc}") from exc


def _labels(values: pd.Series) -> pd.Series:
    """Category labels as text ('1', not '1.0'), missing as None, for Evidently."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        return numbers.astype("string").astype(object).where(numbers.notna(), None)
    text = values.astype("string")
    return text.astype(object).where(text.notna(), None)


def prepare(frame: pd.DataFrame, side: str, source: str) -> pd.DataFrame:
    """Check the columns and give them the types the model and Evidently expect."""
    import pandas as pd

    missing = [c for c in schema.INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise DriftInputError(
            f"{side} data ({source}) lacks column(s) {', '.join(missing)}; "
            f"needed: the order input columns {', '.join(schema.INPUT_COLUMNS)}"
        )
    if frame.empty:
        raise DriftInputError(f"{side} data ({source}) has no rows")
    out = frame.copy()
    out[schema.CREATED_AT] = pd.to_datetime(out[schema.CREATED_AT], errors="coerce")
    if out[schema.CREATED_AT].dt.tz is not None:
        out[schema.CREATED_AT] = out[schema.CREATED_AT].dt.tz_convert(None)
    if schema.TARGET not in out.columns and schema.DELIVERED_AT in out.columns:
        delivered = pd.to_datetime(out[schema.DELIVERED_AT], errors="coerce")
        out[schema.TARGET] = (delivered - out[schema.CREATED_AT]).dt.total_seconds()
    for name in schema.INPUT_COLUMNS:
        if name in CATEGORICAL_COLUMNS or name == schema.CREATED_AT:
            continue
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    for name in (*PREDICTION_COLUMNS, schema.TARGET):
        if name in out.columns:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    return out


def sample(frame: pd.DataFrame, rows: int, seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """At most ``rows`` rows, uniformly at random but reproducibly (0 = keep all)."""
    if rows <= 0 or len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed).sort_index()


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
    report, definition = build_report(threshold, with_prediction, num_method, cat_method)
    return report.run(
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


# --------------------------------------------------------------------------- data sources


def _now() -> datetime:
    return datetime.now(UTC)


def _load_champion(settings: Settings, notes: list[str]) -> Any:
    """The champion as ``registry.LoadedModel``, or None (with a note) when there is none."""
    from eta_cli import registry

    try:
        return registry.load_model(settings)
    except EtaError as exc:  # no champion yet, or no registry: report without predictions
        notes.append(f"no champion model to score with ({exc})")
        return None


def _window(
    frame: pd.DataFrame, since: timedelta | datetime | None, what: str
) -> tuple[pd.DataFrame, str, dict[str, str | None]]:
    """Orders of the last ``since`` before the newest order (data time, not wall time:
    batches are often replayed), or of the newest ``order_date`` when ``since`` is None."""
    import pandas as pd

    created = pd.to_datetime(frame[schema.CREATED_AT], errors="coerce")
    newest = created.max()
    if since is None:
        days = (
            frame[schema.ORDER_DATE].astype(str)
            if schema.ORDER_DATE in frame.columns
            else created.dt.strftime("%Y-%m-%d")
        )
        last_day = days.max()
        chosen = frame[days == last_day]
        label, start = f"{what} of {last_day} (newest order_date)", str(last_day)
    else:
        if isinstance(since, timedelta):
            cutoff = newest - since
        else:
            cutoff = pd.Timestamp(since.astimezone(UTC).replace(tzinfo=None))
        chosen = frame[created >= cutoff]
        label, start = f"{what} since {cutoff:%Y-%m-%d %H:%M:%S}", cutoff.isoformat()
    if chosen.empty:
        raise DriftInputError(
            f"{what}: no orders since {start} (newest order: {newest}); widen --since"
        )
    return chosen, label, {"from": start, "to": str(created[chosen.index].max())}


def _latest_orders(
    settings: Settings, since: timedelta | datetime | None
) -> tuple[pd.DataFrame, str, dict[str, str | None]]:
    """Ingested orders of the newest day (or of ``since``), from the cleaned dataset."""
    from eta_cli import ingest

    frame = ingest.read_orders(settings)
    if frame.empty:
        raise DriftInputError(
            f"no ingested orders in {settings.effective_data_uri}/orders: run `eta ingest` "
            "first or pass --current PATH"
        )
    return _window(frame, since, "ingested orders")


def _prediction_log(
    settings: Settings, since: timedelta | datetime | None
) -> tuple[pd.DataFrame, str, dict[str, str | None]]:
    """The prediction log rows of the window (default 24 h), one row per order, with the
    order's input columns from the logged ``features``."""
    import pandas as pd
    import sqlalchemy as sa

    from eta_cli.monitor import database as monitoring

    if since is None:
        since = timedelta(hours=24)
    now = _now()
    start = now - since if isinstance(since, timedelta) else since
    engine = monitoring.engine_for(settings)
    try:
        monitoring.ensure_schema(engine)
        table = monitoring.predictions
        query = sa.select(
            table.c.order_id,
            table.c.predicted_at,
            table.c.model_version,
            *(table.c[name] for name in PREDICTION_COLUMNS),
            table.c.features,
        ).where(table.c.predicted_at >= start)
        with engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
    except sa.exc.SQLAlchemyError as exc:
        raise monitoring.MonitoringError(
            f"prediction log in {engine.url.render_as_string(hide_password=True)}: "
            f"{monitoring._first_line(exc)}"
        ) from exc
    finally:
        engine.dispose()
    if not rows:
        raise DriftInputError(
            f"the prediction log has no predictions since {start:%Y-%m-%d %H:%M:%S} UTC in "
            f"{engine.url.render_as_string(hide_password=True)}; widen --since or check "
            "that `eta serve` logs to this database"
        )
    features = pd.DataFrame(
        [
            r["features"] if isinstance(r["features"], dict) else json.loads(r["features"])
            for r in rows
        ]
    )
    kept = ("order_id", "predicted_at", "model_version", *PREDICTION_COLUMNS)
    logged = pd.DataFrame([{k: r[k] for k in kept} for r in rows])
    frame = pd.concat([logged, features.drop(columns=list(kept), errors="ignore")], axis=1)
    # An order asked for twice (a retry, a refreshed app) counts once: its last prediction.
    with_id = frame[frame["order_id"].notna()].sort_values("predicted_at")
    frame = pd.concat(
        [with_id.drop_duplicates("order_id", keep="last"), frame[frame["order_id"].isna()]]
    ).reset_index(drop=True)
    versions = ", ".join(sorted(set(frame["model_version"].astype(str))))
    label = f"prediction log since {start:%Y-%m-%d %H:%M:%S} UTC (model versions {versions})"
    return frame, label, {"from": start.isoformat(), "to": now.isoformat()}


def _join_actuals(settings: Settings, frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Delivery times of logged predictions, joined from the ingested orders by order_id."""
    if "order_id" not in frame.columns or frame["order_id"].isna().all():
        notes.append("no order_id in the prediction log: quality cannot be measured")
        return frame
    try:
        from eta_cli import ingest

        actuals = ingest.read_orders(settings, columns=[schema.ORDER_ID, schema.TARGET])
    except EtaError as exc:
        notes.append(f"actual delivery times not available ({exc})")
        return frame
    actuals = actuals.drop_duplicates(schema.ORDER_ID, keep="last")
    joined = frame.merge(actuals, how="left", on=schema.ORDER_ID)
    known = int(joined[schema.TARGET].notna().sum())
    notes.append(f"{known} of {len(joined)} logged predictions have a known delivery time")
    return joined


def _reference(
    settings: Settings, reference: str | None, model_uri: str | None
) -> tuple[pd.DataFrame, str]:
    if reference in (None, "", REFERENCE_CHAMPION):
        from eta_cli import registry

        try:
            frame = registry.reference_sample(settings, model_uri)
        except registry.ModelNotFoundError as exc:
            raise DriftInputError(
                f"no reference: {exc}; pass --reference PATH (CSV or Parquet orders)"
            ) from exc
        return frame, f"reference sample of {model_uri or registry.default_uri(settings)}"
    return read_table(str(reference), settings), str(reference)


def _current(
    settings: Settings, current: str | None, since: timedelta | datetime | None
) -> tuple[pd.DataFrame, str, dict[str, str | None]]:
    if current in (None, "", CURRENT_ORDERS):
        return _latest_orders(settings, since)
    if current == CURRENT_PREDICTIONS:
        return _prediction_log(settings, since)
    frame = read_table(str(current), settings)
    if since is not None and schema.CREATED_AT in frame.columns:
        return _window(frame, since, str(current))
    return frame, str(current), {}


# --------------------------------------------------------------------------- quality


def quality_of(
    frame: pd.DataFrame, valid: tuple[float, float] | None = None
) -> dict[str, float] | None:
    """MAE, coverage of [p10, p90] and lateness against the quoted ETA, where y is known.

    ``valid`` (seconds) keeps only durations ingest would keep: a raw file's one order
    of 8.5 million seconds would otherwise dominate the MAE of a whole batch.
    """
    import numpy as np

    needed = (schema.TARGET, *PREDICTION_COLUMNS)
    if any(c not in frame.columns for c in needed):
        return None
    keep = frame[schema.TARGET].notna() & frame[PREDICTION_COLUMN].notna()
    if valid is not None:
        keep &= frame[schema.TARGET].between(valid[0], valid[1])
    known = frame[keep]
    if known.empty:
        return None
    y = known[schema.TARGET].to_numpy(dtype=float)
    return {
        "rows": len(known),
        "mae_s": float(np.mean(np.abs(y - known["eta_p50_s"].to_numpy(dtype=float)))),
        "interval_coverage": float(
            np.mean(
                (y >= known["eta_p10_s"].to_numpy(dtype=float))
                & (y <= known["eta_p90_s"].to_numpy(dtype=float))
            )
        ),
        "lateness_rate": float(np.mean(y > known["eta_quoted_s"].to_numpy(dtype=float))),
    }


def _training_metrics(metrics: Mapping[str, float]) -> dict[str, float] | None:
    """The champion's test metrics under the names used here."""
    names = {
        "mae_s": ("test_mae", "mae"),
        "interval_coverage": ("test_coverage", "coverage"),
        "lateness_rate": ("test_lateness_rate", "lateness_rate"),
    }
    out = {}
    for ours, theirs in names.items():
        for key in theirs:
            if key in metrics:
                out[ours] = float(metrics[key])
                break
    return out or None


def _unseen_stores(
    current: pd.DataFrame, reference: pd.DataFrame, loaded: Any
) -> tuple[float, str]:
    import numpy as np

    stores = current["store_id"].to_numpy(dtype=float)
    stores = stores[~np.isnan(stores)].astype(np.int64)
    if loaded is not None:
        known = np.asarray(loaded.model.state.store_ids, dtype=np.int64)
        basis = "stores in the model's training history"
    else:
        import pandas as pd

        ref = pd.to_numeric(reference["store_id"], errors="coerce").to_numpy(dtype=float)
        known = np.unique(ref[~np.isnan(ref)].astype(np.int64))
        basis = "stores in the reference data (all rows, before sampling)"
    if stores.size == 0:
        return 0.0, basis
    return float(np.mean(~np.isin(stores, known))), basis


# --------------------------------------------------------------------------- outputs


def _report_name(created: datetime) -> str:
    return f"drift-{created:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def summary_html(result: DriftResult) -> str:
    """A static header (no script) with the verdict and the figures Evidently does not show."""
    e = html.escape
    verdict = "DATASET DRIFT DETECTED" if result.dataset_drift else "no dataset drift"
    colour = "#b00020" if result.dataset_drift else "#1b5e20"
    rows = "".join(
        f"<tr><td>{e(c.column)}</td><td>{e(c.kind)}</td><td>{e(c.method)}</td>"
        f"<td>{c.score:.4g}</td><td>{_fmt(c.threshold)}</td>"
        f"<td style='color:{'#b00020' if c.drifted else '#1b5e20'}'>"
        f"{'drifted' if c.drifted else 'ok'}</td></tr>"
        for c in [*result.columns, *([result.prediction] if result.prediction else [])]
    )
    quality = ""
    if result.quality:
        q = result.quality
        train = q.training or {}
        ref = q.reference or {}
        quality = (
            "<h2>Quality of the current orders (actual delivery time known)</h2>"
            "<table><tr><th>metric</th><th>current</th><th>champion test</th>"
            "<th>reference sample</th></tr>"
            + "".join(
                f"<tr><td>{label}</td><td>{_fmt(getattr(q, key))}</td>"
                f"<td>{_fmt(train.get(key))}</td><td>{_fmt(ref.get(key))}</td></tr>"
                for key, label in (
                    ("mae_s", "MAE (s)"),
                    ("interval_coverage", "p10–p90 coverage"),
                    ("lateness_rate", "late vs quoted ETA"),
                )
            )
            + f"</table><p>{q.rows:,} orders with a known delivery time.</p>"
        )
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    return f"""
<section id="eta-drift-summary" style="font-family: system-ui, sans-serif; margin: 16px 24px;
  padding: 12px 16px; border: 1px solid #ccc; border-radius: 6px; background: #fafafa">
<style>#eta-drift-summary table {{ border-collapse: collapse; margin: 8px 0 }}
#eta-drift-summary td, #eta-drift-summary th {{ border: 1px solid #ddd; padding: 2px 8px;
  font-size: 13px; text-align: left }}</style>
<h1 style="font-size: 20px; margin: 0 0 8px">ETA drift report — <span
  style="color: {colour}">{verdict}</span></h1>
<p>{result.drifted_columns} of {result.total_columns} columns drifted
  (share {result.drift_share:.2f}, threshold {result.threshold:.2f}).
  Model: {e(str(result.model_name))} v{e(str(result.model_version))}.
  Created {e(result.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"))}.</p>
<p>Reference: {e(result.reference_source)} — {result.reference_rows:,} rows,
  {result.reference_sampled_rows:,} sampled.<br>
  Current: {e(result.current_source)} — {result.current_rows:,} rows,
  {result.current_sampled_rows:,} sampled.<br>
  Figures are computed on the sampled rows (at most {result.sample_rows:,} per side).
  Orders from stores unseen by the model: {_fmt(result.unseen_store_share)}.</p>
<table><tr><th>column</th><th>kind</th><th>method</th><th>score</th><th>threshold</th>
  <th>verdict</th></tr>{rows}</table>
{quality}
{f"<ul>{notes}</ul>" if notes else ""}
</section>
"""


def _write_html(snapshot: Any, result: DriftResult, path: Path) -> None:
    """Evidently's standalone HTML (scripts and font inlined) with our header on top."""
    document = snapshot.get_html_str(as_iframe=False)
    header = summary_html(result)
    marker = "<body>"
    index = document.find(marker)
    if index >= 0:
        document = document[: index + len(marker)] + header + document[index + len(marker) :]
    else:
        document = header + document
    path.write_text(document, encoding="utf-8")


def _store(settings: Settings, result: DriftResult) -> int:
    """One ``drift_reports`` row and its ``drift_columns`` rows; returns the report id."""
    from eta_cli.monitor import database as monitoring

    engine = monitoring.engine_for(settings)
    try:
        monitoring.ensure_schema(engine)
        quality = result.quality
        with engine.begin() as conn:
            report_id = conn.execute(
                monitoring.drift_reports.insert()
                .values(
                    created_at=result.created_at,
                    model_name=result.model_name,
                    model_version=result.model_version,
                    reference_rows=result.reference_rows,
                    current_rows=result.current_rows,
                    sampled_rows=result.current_sampled_rows,
                    drifted_columns=result.drifted_columns,
                    total_columns=result.total_columns,
                    drift_share=result.drift_share,
                    dataset_drift=result.dataset_drift,
                    prediction_drift_score=result.prediction.score if result.prediction else None,
                    prediction_drifted=result.prediction.drifted if result.prediction else None,
                    mae_s=quality.mae_s if quality else None,
                    interval_coverage=quality.interval_coverage if quality else None,
                    lateness_rate=quality.lateness_rate if quality else None,
                    html_uri=result.html_uri or result.html_path,
                    json_uri=result.json_uri or result.json_path,
                )
                .returning(monitoring.drift_reports.c.id)
            ).scalar_one()
            columns = [*result.columns, *([result.prediction] if result.prediction else [])]
            conn.execute(
                monitoring.drift_columns.insert(),
                [
                    {
                        "report_id": report_id,
                        "column_name": c.column,
                        "method": c.method[:100],
                        "drift_score": c.score,
                        "threshold": c.threshold,
                        "drifted": c.drifted,
                    }
                    for c in columns
                ],
            )
        return int(report_id)
    except Exception as exc:
        import sqlalchemy as sa

        if isinstance(exc, sa.exc.SQLAlchemyError):
            raise monitoring.MonitoringError(
                f"monitoring database {engine.url.render_as_string(hide_password=True)}: "
                f"{monitoring._first_line(exc)}"
            ) from exc
        raise
    finally:
        engine.dispose()


def s3_report_uri(settings: Settings, created: datetime, filename: str) -> str:
    """``s3://<bucket>/<prefix>/reports/YYYY/MM/DD/<file>``."""
    from eta_cli.storage import StorageError

    if not settings.s3_bucket:
        raise StorageError(
            "--upload-s3 needs a bucket: set ETA_S3_BUCKET (or s3_bucket in the profile)"
        )
    prefix = settings.s3_prefix.strip("/")
    parts = [p for p in (prefix, "reports", f"{created:%Y/%m/%d}", filename) if p]
    return f"s3://{settings.s3_bucket}/{'/'.join(parts)}"


def alert_text(result: DriftResult) -> str:
    """A short, human message with the facts someone on call needs first."""
    top = sorted((c for c in result.columns if c.drifted), key=lambda c: -c.score)[:5]
    lines = [
        f":warning: eta drift: dataset drift detected — {result.drifted_columns}/"
        f"{result.total_columns} columns drifted (share {result.drift_share:.2f} >= "
        f"threshold {result.threshold:.2f})",
        f"model {result.model_name or '?'} v{result.model_version or '?'}; current: "
        f"{result.current_source} ({result.current_sampled_rows:,} of {result.current_rows:,} "
        "rows sampled)",
    ]
    if top:
        lines.append("drifted: " + ", ".join(f"{c.column} ({c.method} {c.score:.3g})" for c in top))
    if result.prediction:
        p = result.prediction
        lines.append(
            f"prediction {p.column}: {'drifted' if p.drifted else 'stable'} "
            f"({p.method} {p.score:.3g})"
        )
    if result.quality:
        q = result.quality
        train = (q.training or {}).get("mae_s")
        lines.append(
            f"MAE {q.mae_s:.0f} s"
            + (f" (champion test {train:.0f} s)" if train else "")
            + f", coverage {q.interval_coverage:.2f}, late {q.lateness_rate:.2f}"
        )
    lines.append(f"report: {result.html_uri or result.html_path}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main entry


def drift_report(
    settings: Settings,
    reference: str | None = None,
    current: str | pd.DataFrame | None = None,
    since: str | timedelta | datetime | None = None,
    upload_s3: bool = False,
    sample_rows: int | None = None,
    fail_on_drift: bool = False,
    alert_webhook: str | None = None,
    *,
    model: Any = None,
    model_uri: str | None = None,
    current_label: str | None = None,
    store: bool = True,
) -> DriftResult:
    """Compare current orders with the reference, write/upload/store the report, alert.

    ``reference``: None or ``"champion"`` (the champion's reference sample) or a path.
    ``current``: None or ``"orders"`` (latest ingested orders), ``"predictions"`` (the
    prediction log over ``since``, default 24 h), a path, or a DataFrame (``eta
    pipeline`` passes the batch it just ingested). ``model``: an already loaded
    ``registry.LoadedModel`` to score with instead of the champion.
    Delivery failures (database, S3, webhook) are recorded in ``errors``/``alert``
    rather than raised, so the report is never lost; see :attr:`DriftResult.exit_code`.
    """
    import pandas as pd

    started = time.perf_counter()
    created = _now().replace(microsecond=0)
    notes: list[str] = []
    window = parse_since(since) if isinstance(since, str) or since is None else since
    rows_limit = settings.drift_sample_rows if sample_rows is None else int(sample_rows)
    if rows_limit < 0:
        raise DriftInputError(f"--sample {rows_limit} must be >= 0 (0 keeps every row)")
    if rows_limit and rows_limit < 100:
        raise DriftInputError(f"--sample {rows_limit} is too small: use 0 (all rows) or >= 100")

    if upload_s3:
        s3_report_uri(settings, created, "check")  # no bucket: fail before any work
    ref_raw, ref_source = _reference(settings, reference, model_uri)
    if isinstance(current, pd.DataFrame):
        cur_raw, cur_source, cur_window = current, current_label or "orders given by the caller", {}
    else:
        cur_raw, cur_source, cur_window = _current(settings, current, window)
    # Sample first: checking and typing 20,000 rows instead of millions is most of the
    # difference between this and a bare Evidently run on the same sample.
    ref = prepare(sample(ref_raw, rows_limit), "reference", ref_source)
    cur = prepare(sample(cur_raw, rows_limit), "current", cur_source)

    # Predictions: logged ones when present, else score with the champion. The champion
    # is loaded anyway when it is the reference: the report names its version and
    # compares quality with its test metrics.
    loaded = model
    needs_model = any(PREDICTION_COLUMN not in f.columns for f in (ref, cur))
    champion_reference = reference in (None, "", REFERENCE_CHAMPION)
    if loaded is None and (needs_model or champion_reference or model_uri):
        if model_uri:
            loaded = _load_model_uri(settings, model_uri)
        else:
            loaded = _load_champion(settings, notes)
        if loaded is not None:
            # Loaded for serving (one thread per request); batch scoring may use every core.
            loaded.model.booster.set_param({"nthread": os.cpu_count() or 1})
    prediction_source = "logged"
    for side, frame in (("reference", ref), ("current", cur)):
        if PREDICTION_COLUMN in frame.columns:
            continue
        if loaded is None:
            notes.append(f"prediction drift skipped: {side} has no predictions, no model")
            break
        scored = loaded.model.predict_frame(frame)
        for column in PREDICTION_COLUMNS:
            frame[column] = scored[column].to_numpy()
        prediction_source = "scored"
        notes.append(f"{side} orders scored with {loaded.uri} (version {loaded.version})")
    with_prediction = PREDICTION_COLUMN in ref.columns and PREDICTION_COLUMN in cur.columns

    if isinstance(current, str) and current == CURRENT_PREDICTIONS:
        cur = _join_actuals(settings, cur, notes)

    snapshot = run_evidently(
        evidently_frame(ref, with_prediction),
        evidently_frame(cur, with_prediction),
        settings.drift_share_threshold,
        with_prediction,
    )
    found = column_results(snapshot)
    if methods_for(len(ref), len(cur))[0]:
        notes.append(
            f"a side has at most {SMALL_SAMPLE:,} rows: drift is tested with KS / chi-square "
            "p-values (drifted when p < threshold) instead of distances"
        )
    columns = [found[c] for c in DRIFT_COLUMNS if c in found]
    if len(columns) != len(DRIFT_COLUMNS):
        missing = sorted(set(DRIFT_COLUMNS) - set(found))
        notes.append(f"Evidently returned no drift result for: {', '.join(missing)}")

    quality = None
    valid = (float(settings.min_duration_s), float(settings.max_duration_s))
    figures = quality_of(cur, valid)
    if figures:
        rows = int(figures.pop("rows"))
        training = _training_metrics(loaded.metrics) if loaded is not None else None
        quality = Quality(
            rows=rows,
            **figures,
            reference={k: v for k, v in (quality_of(ref, valid) or {}).items() if k != "rows"}
            or None,
            training=training,
            mae_vs_training=(
                figures["mae_s"] / training["mae_s"] if training and training.get("mae_s") else None
            ),
        )
    unseen, basis = _unseen_stores(cur, ref_raw, loaded)

    result = DriftResult(
        created_at=created,
        reference_source=ref_source,
        current_source=cur_source,
        reference_rows=len(ref_raw),
        current_rows=len(cur_raw),
        reference_sampled_rows=len(ref),
        current_sampled_rows=len(cur),
        sample_rows=rows_limit,
        threshold=settings.drift_share_threshold,
        columns=columns,
        prediction=found.get(PREDICTION_COLUMN),
        prediction_source=prediction_source if with_prediction else None,
        quality=quality,
        unseen_store_share=unseen,
        unseen_store_basis=basis,
        model_name=getattr(loaded, "name", None),
        model_version=getattr(loaded, "version", None),
        model_uri=getattr(loaded, "uri", None),
        window=cur_window,
        notes=notes,
        fail_on_drift=fail_on_drift,
    )

    out_dir = Path(settings.effective_reports_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DriftInputError(f"reports folder {out_dir} cannot be created: {exc}") from exc
    name = _report_name(created)
    html_path, json_path = out_dir / f"{name}.html", out_dir / f"{name}.json"
    result.html_path, result.json_path = str(html_path), str(json_path)
    if upload_s3:
        result.html_uri = s3_report_uri(settings, created, html_path.name)
        result.json_uri = s3_report_uri(settings, created, json_path.name)
    # The database row first (its id goes into the files); a failure is recorded, not
    # raised, so the files are still written and the alert still goes out.
    if store:
        try:
            result.report_id = _store(settings, result)
        except EtaError as exc:
            result.errors.append(f"monitoring database: {exc} (report kept at {html_path})")
    _write_html(snapshot, result, html_path)
    result.elapsed_s = time.perf_counter() - started
    json_path.write_text(json.dumps(result.to_dict(), indent=2, default=str), encoding="utf-8")
    if upload_s3:
        from eta_cli import storage

        try:
            storage.upload_file(str(html_path), str(result.html_uri), settings, "text/html")
            storage.upload_file(str(json_path), str(result.json_uri), settings, "application/json")
        except EtaError as exc:
            result.errors.append(f"S3 upload failed (report kept at {html_path}): {exc}")
            result.html_uri = result.json_uri = None
            if result.report_id is not None:
                _set_uris(settings, result)

    webhook = alert_webhook or settings.alert_webhook
    if webhook and result.dataset_drift:
        from eta_cli.monitor.alerts import post_webhook

        outcome = post_webhook(webhook, alert_text(result))
        result.alert = outcome.to_dict()
    result.elapsed_s = time.perf_counter() - started
    return result


def _set_uris(settings: Settings, result: DriftResult) -> None:
    """Point the stored row at the local files after a failed upload."""
    from eta_cli.monitor import database as monitoring

    engine = monitoring.engine_for(settings)
    try:
        with engine.begin() as conn:
            conn.execute(
                monitoring.drift_reports.update()
                .where(monitoring.drift_reports.c.id == result.report_id)
                .values(html_uri=result.html_path, json_uri=result.json_path)
            )
    except Exception as exc:
        result.errors.append(f"monitoring database: could not update report URIs: {exc}")
    finally:
        engine.dispose()


def _load_model_uri(settings: Settings, model_uri: str) -> Any:
    from eta_cli import registry

    return registry.load_model(settings, model_uri)
