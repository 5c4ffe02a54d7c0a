"""Gather the two sides of a drift report: reference and current orders, with predictions.

The reference is the champion's reference sample (logged to its MLflow run at
training) or a file; the current orders are the newest ingested day (or a
``since`` window) of the lake, the prediction log of ``eta serve``, a file, or a
DataFrame handed over by ``eta pipeline``. Both sides are sampled first, then
checked and typed (checking 20,000 rows instead of millions is most of the
difference between a report and a bare Evidently run on the same sample), and
scored with the champion when they carry no predictions of their own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.errors import EtaError, first_line
from eta_cli.monitor.result import (
    CATEGORICAL_COLUMNS,
    CURRENT_ORDERS,
    CURRENT_PREDICTIONS,
    PREDICTION_COLUMN,
    PREDICTION_COLUMNS,
    REFERENCE_CHAMPION,
    SAMPLE_SEED,
    DriftInputError,
    DriftRequest,
)

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.config import Settings

Window = dict[str, str | None]  # {"from": ..., "to": ...} of the current orders, or {}


@dataclass
class Gathered:
    """Both sides, sampled and typed, and what the report must say about where they came from."""

    reference_raw: pd.DataFrame  # every row, before sampling
    current_raw: pd.DataFrame
    reference: pd.DataFrame  # sampled, typed, with predictions when there are any
    current: pd.DataFrame
    reference_source: str
    current_source: str
    window: Window
    sample_rows: int
    model: Any = None  # the registry.LoadedModel scored with, if any
    prediction_source: str = "logged"  # logged | scored
    notes: list[str] = field(default_factory=list)

    @property
    def with_prediction(self) -> bool:
        """Both sides carry the median prediction, so its drift can be tested."""
        return PREDICTION_COLUMN in self.reference.columns and (
            PREDICTION_COLUMN in self.current.columns
        )


def gather(
    settings: Settings,
    request: DriftRequest,
    since: timedelta | datetime | None,
    rows_limit: int,
) -> Gathered:
    """Read, sample, type and score both sides of the report described by ``request``."""
    import pandas as pd

    notes: list[str] = []
    ref_raw, ref_source = reference_data(settings, request.reference, request.model_uri)
    if isinstance(request.current, pd.DataFrame):
        cur_raw = request.current
        cur_source = request.current_label or "orders given by the caller"
        cur_window: Window = {}
    else:
        cur_raw, cur_source, cur_window = current_data(settings, request.current, since)
    ref_raw = match_weekdays(ref_raw, cur_raw, notes)
    ref = prepare(sample(ref_raw, rows_limit), "reference", ref_source)
    cur = prepare(sample(cur_raw, rows_limit), "current", cur_source)
    loaded = model_for(settings, request, (ref, cur), notes)
    prediction_source = attach_predictions(ref, cur, loaded, notes)
    if isinstance(request.current, str) and request.current == CURRENT_PREDICTIONS:
        cur = join_actuals(settings, cur, notes)
    return Gathered(
        reference_raw=ref_raw,
        current_raw=cur_raw,
        reference=ref,
        current=cur,
        reference_source=ref_source,
        current_source=cur_source,
        window=cur_window,
        sample_rows=rows_limit,
        model=loaded,
        prediction_source=prediction_source,
        notes=notes,
    )


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def match_weekdays(
    reference: pd.DataFrame, current: pd.DataFrame, notes: list[str]
) -> pd.DataFrame:
    """The reference orders placed on the current orders' weekdays (all of them when the
    current side covers a whole week, or when too few would be left to compare with).

    Weekly seasonality is not drift: a Saturday's orders come at other hours and in
    another mix than the average week the champion was trained on, so a nightly report
    of one weekend day against the whole reference flags ``order_hour`` (and more) on
    ordinary days. Comparing a day with the same weekdays of the reference keeps the
    test sensitive to a real change on that day, which a rolling 7-day window would
    dilute six times over.
    """
    import pandas as pd

    from eta_cli.monitor.result import MIN_CURRENT_ROWS

    if schema.CREATED_AT not in reference.columns or schema.CREATED_AT not in current.columns:
        return reference
    current_days = set(pd.to_datetime(current[schema.CREATED_AT], errors="coerce").dt.dayofweek)
    current_days = {int(d) for d in current_days if pd.notna(d)}
    if not current_days or len(current_days) == len(WEEKDAYS):
        return reference
    reference_days = pd.to_datetime(reference[schema.CREATED_AT], errors="coerce").dt.dayofweek
    matched = reference[reference_days.isin(current_days)]
    names = ", ".join(WEEKDAYS[d] for d in sorted(current_days))
    if len(matched) < MIN_CURRENT_ROWS:
        notes.append(
            f"only {len(matched):,} reference orders on {names}: compared with the whole "
            "reference (weekly seasonality may show as drift)"
        )
        return reference
    notes.append(
        f"reference matched to the current orders' weekdays ({names}): {len(matched):,} of "
        f"{len(reference):,} reference orders, so weekly seasonality is not reported as drift"
    )
    return matched


# --------------------------------------------------------------------------- reading


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
        raise DriftInputError(f"{path} cannot be read as {kind}: {first_line(exc)}") from exc


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


# --------------------------------------------------------------------------- sources


def reference_data(
    settings: Settings, reference: str | None, model_uri: str | None
) -> tuple[pd.DataFrame, str]:
    """The reference orders and their label: the model's logged sample, or a file."""
    if reference in (None, "", REFERENCE_CHAMPION):
        from eta_cli import registry

        try:
            frame = registry.reference_sample(settings, model_uri)
        except registry.ModelNotFoundError as exc:
            raise DriftInputError(
                f"no reference: {first_line(exc)}; pass --reference PATH (CSV or Parquet orders)"
            ) from exc
        return frame, f"reference sample of {model_uri or registry.default_uri(settings)}"
    return read_table(str(reference), settings), str(reference)


def current_data(
    settings: Settings, current: str | None, since: timedelta | datetime | None
) -> tuple[pd.DataFrame, str, Window]:
    """The current orders, their label and window: the lake, the prediction log or a file."""
    if current in (None, "", CURRENT_ORDERS):
        return latest_orders(settings, since)
    if current == CURRENT_PREDICTIONS:
        return prediction_log(settings, since)
    frame = read_table(str(current), settings)
    if since is not None and schema.CREATED_AT in frame.columns:
        return window_of(frame, since, str(current))
    return frame, str(current), {}


def window_of(
    frame: pd.DataFrame, since: timedelta | datetime | None, what: str
) -> tuple[pd.DataFrame, str, Window]:
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


def latest_orders(
    settings: Settings, since: timedelta | datetime | None
) -> tuple[pd.DataFrame, str, Window]:
    """Ingested orders of the newest day (or of ``since``), from the cleaned dataset."""
    from eta_cli import lake

    frame = lake.read_orders(settings)
    if frame.empty:
        raise DriftInputError(
            f"no ingested orders in {settings.effective_data_uri}/orders: run `eta ingest` "
            "first or pass --current PATH"
        )
    return window_of(frame, since, "ingested orders")


def prediction_log(
    settings: Settings, since: timedelta | datetime | None
) -> tuple[pd.DataFrame, str, Window]:
    """The prediction log rows of the window (default 24 h), one row per order, with the
    order's input columns from the logged ``features``."""
    if since is None:
        since = timedelta(hours=24)
    now = datetime.now(UTC)
    start = now - since if isinstance(since, timedelta) else since
    rows, where = _logged_predictions(settings, start)
    if not rows:
        raise DriftInputError(
            f"the prediction log has no predictions since {start:%Y-%m-%d %H:%M:%S} UTC in "
            f"{where}; widen --since or check that `eta serve` logs to this database"
        )
    frame = _one_row_per_order(rows)
    versions = ", ".join(sorted(set(frame["model_version"].astype(str))))
    label = f"prediction log since {start:%Y-%m-%d %H:%M:%S} UTC (model versions {versions})"
    return frame, label, {"from": start.isoformat(), "to": now.isoformat()}


def _logged_predictions(settings: Settings, start: datetime) -> tuple[list[Any], str]:
    """The prediction log's rows since ``start``, and the database they came from (shown)."""
    import sqlalchemy as sa

    from eta_cli.monitor import database

    engine = database.engine_for(settings)
    where = engine.url.render_as_string(hide_password=True)
    try:
        database.ensure_schema(engine)
        table = database.predictions
        query = sa.select(
            table.c.order_id,
            table.c.predicted_at,
            table.c.model_version,
            *(table.c[name] for name in PREDICTION_COLUMNS),
            table.c.features,
        ).where(
            table.c.predicted_at >= start,
            # The answers clients got; a shadow challenger's are for `eta evaluate`.
            table.c.role == database.ROLE_CHAMPION,
        )
        with engine.connect() as conn:
            return list(conn.execute(query).mappings().all()), where
    except sa.exc.SQLAlchemyError as exc:
        raise database.MonitoringError(f"prediction log in {where}: {first_line(exc)}") from exc
    finally:
        engine.dispose()


def _one_row_per_order(rows: list[Any]) -> pd.DataFrame:
    """Logged predictions with the order's columns; an order asked for twice (a retry, a
    refreshed app) counts once: its last prediction."""
    import pandas as pd

    features = pd.DataFrame(
        [
            r["features"] if isinstance(r["features"], dict) else json.loads(r["features"])
            for r in rows
        ]
    )
    kept = ("order_id", "predicted_at", "model_version", *PREDICTION_COLUMNS)
    logged = pd.DataFrame([{k: r[k] for k in kept} for r in rows])
    frame = pd.concat([logged, features.drop(columns=list(kept), errors="ignore")], axis=1)
    with_id = frame[frame["order_id"].notna()].sort_values("predicted_at")
    return pd.concat(
        [with_id.drop_duplicates("order_id", keep="last"), frame[frame["order_id"].isna()]]
    ).reset_index(drop=True)


def join_actuals(settings: Settings, frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Delivery times of logged predictions, joined from the ingested orders by order_id."""
    if "order_id" not in frame.columns or frame["order_id"].isna().all():
        notes.append("no order_id in the prediction log: quality cannot be measured")
        return frame
    try:
        from eta_cli import lake

        actuals = lake.read_orders(settings, columns=[schema.ORDER_ID, schema.TARGET])
    except EtaError as exc:
        notes.append(f"actual delivery times not available ({first_line(exc)})")
        return frame
    actuals = actuals.drop_duplicates(schema.ORDER_ID, keep="last")
    joined = frame.merge(actuals, how="left", on=schema.ORDER_ID)
    known = int(joined[schema.TARGET].notna().sum())
    notes.append(f"{known} of {len(joined)} logged predictions have a known delivery time")
    return joined


# --------------------------------------------------------------------------- predictions


def model_for(
    settings: Settings,
    request: DriftRequest,
    sides: tuple[pd.DataFrame, pd.DataFrame],
    notes: list[str],
) -> Any:
    """The model to score with and name in the report, or None.

    The caller's model when given; otherwise the champion (or ``model_uri``) when a
    side lacks predictions, and also when the champion is the reference: the report
    names its version and compares quality with its test metrics.
    """
    if request.model is not None:
        return request.model
    needs_model = any(PREDICTION_COLUMN not in f.columns for f in sides)
    if not (needs_model or request.champion_reference or request.model_uri):
        return None
    from eta_cli import registry

    if request.model_uri:
        loaded = registry.load_model(settings, request.model_uri)
    else:
        try:
            loaded = registry.load_model(settings)
        except EtaError as exc:  # no champion yet, or no registry: report without predictions
            notes.append(f"no champion model to score with ({first_line(exc)})")
            return None
    # Loaded for serving (one thread per request); batch scoring may use every core.
    loaded.model.booster.set_param({"nthread": os.cpu_count() or 1})
    return loaded


def attach_predictions(
    reference: pd.DataFrame, current: pd.DataFrame, loaded: Any, notes: list[str]
) -> str:
    """Score the sides that carry no logged predictions (in place); ``logged`` or ``scored``."""
    source = "logged"
    for side, frame in (("reference", reference), ("current", current)):
        if PREDICTION_COLUMN in frame.columns:
            continue
        if loaded is None:
            notes.append(f"prediction drift skipped: {side} has no predictions, no model")
            break
        scored = loaded.model.predict_frame(frame)
        for column in PREDICTION_COLUMNS:
            frame[column] = scored[column].to_numpy()
        source = "scored"
        notes.append(f"{side} orders scored with {loaded.uri} (version {loaded.version})")
    return source
