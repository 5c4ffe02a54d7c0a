"""Live quality from outcomes (``eta evaluate``): logged predictions meet delivered orders.

The prediction log holds what each model said about each order (the champion's answer,
and the shadow challenger's, see :mod:`eta_cli.serve.shadow`); the lake, once the
delivered orders are ingested, holds what happened. Joined by ``order_id`` they give,
per model version and role, the quality customers actually saw: MAE of the median ETA,
p10-p90 coverage, lateness against the quoted ETA and bias (the one definition of the
first three is :func:`eta_cli.monitor.quality.quality_of`, shared with drift reports).

Champion and challenger are then compared on the *same* orders: the per-order
difference of absolute errors (challenger minus champion) and a seeded bootstrap
confidence interval of its mean. Paired differences cancel what makes one day's orders
harder than another's, so a few hundred orders separate models that unpaired MAEs
could not. The verdict is ``challenger`` when the whole interval is below zero,
``champion`` when it is above, ``undecided`` otherwise.

Promotion on that evidence (:func:`promotion_decision`, :func:`promote_on_evidence`)
moves ``champion`` to the challenger only when it won, on at least
``settings.live_min_orders`` paired orders, and both aliases still point at the
versions that were compared (a model registered meanwhile was never measured).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.errors import EtaError, first_line
from eta_cli.monitor import database
from eta_cli.monitor.quality import quality_of
from eta_cli.progress import ProgressCallback, report
from eta_cli.redact import redact_url

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from eta_cli.config import Settings

DEFAULT_SINCE = "7d"
RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
WINNERS = ("champion", "challenger", "undecided")
CHAMPION, CHALLENGER = database.ROLE_CHAMPION, database.ROLE_CHALLENGER
PREDICTION_COLUMNS = ("eta_p10_s", "eta_p50_s", "eta_p90_s", "eta_quoted_s")
# Cells of the bootstrap's index matrix per step: bounds memory whatever the order count.
BOOTSTRAP_CELLS = 4_000_000


@dataclass(frozen=True)
class ModelQuality:
    """Live quality of one model version in one role, on its joined orders (seconds)."""

    version: str
    role: str
    orders: int
    mae: float
    coverage: float
    lateness: float
    bias: float  # mean(predicted p50 - actual): > 0 promises late, < 0 early

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """Champion vs challenger on the orders both scored (differences: challenger - champion)."""

    winner: str  # champion | challenger | undecided
    orders: int
    champion_version: str | None = None
    challenger_version: str | None = None
    champion_mae: float | None = None
    challenger_mae: float | None = None
    mae_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Promotion:
    """What the live-promotion policy decided, and why."""

    promoted: bool
    reason: str
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evaluation:
    """One ``eta evaluate`` run; ``to_dict`` is its ``--json``."""

    model_name: str
    window_start: datetime
    evaluated_at: datetime
    predictions: int = 0  # log rows read in the window
    joined_orders: int = 0  # distinct orders with a prediction and a delivery time
    models: list[ModelQuality] = field(default_factory=list)
    comparison: PairedComparison = field(default_factory=lambda: PairedComparison("undecided", 0))
    message: str | None = None  # set when there was nothing to join, and why
    notes: list[str] = field(default_factory=list)
    promotion: Promotion | None = None
    stored: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return bool(self.promotion and self.promotion.promoted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "window_start": self.window_start.isoformat(),
            "evaluated_at": self.evaluated_at.isoformat(),
            "predictions": self.predictions,
            "joined_orders": self.joined_orders,
            "models": [m.to_dict() for m in self.models],
            "comparison": self.comparison.to_dict(),
            "message": self.message,
            "notes": list(self.notes),
            "promotion": self.promotion.to_dict() if self.promotion else None,
            "promoted": self.promoted,
            "stored": self.stored,
            "errors": list(self.errors),
        }

    def summary_line(self) -> str:
        """One line for logs (``eta pipeline``): the verdict and its figures."""
        if self.message:
            return self.message
        c = self.comparison
        line = f"joined_orders={self.joined_orders} winner={c.winner} paired={c.orders}"
        if c.mae_difference is not None:
            line += (
                f" champion=v{c.champion_version} challenger=v{c.challenger_version} "
                f"mae_difference={c.mae_difference:.1f}s ci=[{c.ci_low:.1f}, {c.ci_high:.1f}]"
            )
        if self.promotion is not None:
            line += f" promoted={self.promotion.promoted} ({self.promotion.reason})"
        if self.errors:
            line += " problems=" + "; ".join(self.errors)
        return line


# --------------------------------------------------------------------------- run


def evaluate(
    settings: Settings,
    since: str | timedelta | datetime | None = DEFAULT_SINCE,
    *,
    promote: bool = False,
    store: bool = True,
    seed: int = SEED,
    resamples: int = RESAMPLES,
    progress: ProgressCallback | None = None,
) -> Evaluation:
    """Join the window's logged predictions with delivered orders and compare the models.

    ``since`` (see :func:`eta_cli.lake.parse_since`; default 7 days) is measured back
    from now: the log is written in wall time. ``promote`` applies the live-promotion
    policy; ``store`` writes the results to the monitoring database (a failure there is
    reported in ``errors``, the evaluation itself stands). Nothing to join is not an
    error: the result's ``message`` says what is missing.
    """
    from eta_cli import lake

    window = lake.parse_since(since if since not in (None, "") else DEFAULT_SINCE)
    now = datetime.now(UTC)
    start = now - window if isinstance(window, timedelta) else window
    result = Evaluation(settings.model_name, start, now)
    report(progress, "evaluating", message=f"reading the prediction log since {start:%F %T} UTC")
    logged = read_predictions(settings, start)
    result.predictions = len(logged)
    joined = join_outcomes(settings, logged, result)
    if joined is None:
        return result
    result.joined_orders = int(joined[schema.ORDER_ID].nunique())
    result.models = model_quality(joined, settings)
    champion, challenger = _compared_versions(settings, joined, result.notes)
    result.comparison = compare(joined, champion, challenger, seed=seed, resamples=resamples)
    if promote:
        result.promotion = promote_on_evidence(settings, result.comparison)
    if store:
        try:
            store_evaluation(settings, result)
            result.stored = True
        except EtaError as exc:
            result.errors.append(f"results not stored: {first_line(exc)}")
        _record_in_workspace(settings, result)
    return result


def _record_in_workspace(settings: Settings, result: Evaluation) -> None:
    """Add the evaluation to the Evidently workspace, where ``eta ui`` draws live MAE and
    lateness per model version; a failure there is reported like a failed store."""
    from eta_cli.monitor import workspace

    figures: list[workspace.VersionQuality] = []
    for quality in result.models:  # one point per version, whichever role served it first
        if all(f.model_version != quality.version for f in figures):
            figures.append(
                workspace.VersionQuality(
                    quality.version, quality.orders, quality.mae, quality.lateness
                )
            )
    try:
        workspace.add_evaluation_run(
            settings,
            figures,
            model_name=result.model_name,
            created_at=result.evaluated_at,
            source=f"predictions since {result.window_start:%Y-%m-%d %H:%M} UTC "
            "joined with delivered orders",
        )
    except EtaError as exc:
        result.errors.append(f"workspace run not added: {first_line(exc)}")


def read_predictions(settings: Settings, start: datetime) -> pd.DataFrame:
    """The model's logged predictions since ``start``: one row per order, version and role
    (an order asked for twice, a retry, counts once: its last prediction)."""
    import pandas as pd
    import sqlalchemy as sa

    table = database.predictions
    query = sa.select(
        table.c.order_id,
        table.c.predicted_at,
        table.c.order_created_at,
        table.c.model_version,
        table.c.role,
        *(table.c[name] for name in PREDICTION_COLUMNS),
    ).where(table.c.predicted_at >= start, table.c.model_name == settings.model_name)
    columns = [c.name for c in query.selected_columns]
    if database.sqlite_file_missing(settings.effective_database_url):
        # Nothing logged yet, and reading must not create an empty database file.
        frame = pd.DataFrame(columns=columns)
        frame.attrs["where"] = redact_url(settings.effective_database_url)
        return frame
    engine = database.engine_for(settings)
    where = engine.url.render_as_string(hide_password=True)
    try:
        database.ensure_schema(engine)
        with engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
    except sa.exc.SQLAlchemyError as exc:
        raise database.MonitoringError(f"prediction log in {where}: {first_line(exc)}") from exc
    finally:
        engine.dispose()
    frame = pd.DataFrame([dict(r) for r in rows], columns=columns)
    frame.attrs["where"] = where
    if frame.empty:
        return frame
    frame["model_version"] = frame["model_version"].astype(str)
    with_id = frame[frame[schema.ORDER_ID].notna()].sort_values("predicted_at", kind="stable")
    keys = [schema.ORDER_ID, "model_version", "role"]
    kept = with_id.drop_duplicates(keys, keep="last")
    return pd.concat([kept, frame[frame[schema.ORDER_ID].isna()]], ignore_index=True)


def join_outcomes(
    settings: Settings, logged: pd.DataFrame, result: Evaluation
) -> pd.DataFrame | None:
    """Logged predictions with their orders' delivery times; None (and ``result.message``
    saying what is missing) when no prediction meets an outcome."""
    from eta_cli import lake

    where = logged.attrs.get("where", "the monitoring database")
    window = f"since {result.window_start:%Y-%m-%d %H:%M:%S} UTC"
    if logged.empty:
        result.message = (
            f"nothing to evaluate: the prediction log in {where} has no predictions of model "
            f"{settings.model_name!r} {window}; widen --since, or check that `eta serve` "
            "logs to this database (ETA_DATABASE_URL)"
        )
        return None
    with_id = logged[logged[schema.ORDER_ID].notna()]
    if with_id.empty:
        result.message = (
            f"nothing to join: none of the {len(logged)} predictions {window} carries an "
            "order_id; send order_id with each order to `eta serve`"
        )
        return None
    if len(with_id) < len(logged):
        result.notes.append(f"{len(logged) - len(with_id)} predictions without order_id skipped")
    try:
        outcomes = lake.read_orders(
            settings, columns=[schema.ORDER_ID, schema.TARGET], since=_earliest_order(with_id)
        )
    except lake.NoOrdersError:
        result.message = (
            f"nothing to join: no ingested orders in {settings.effective_data_uri}; ingest "
            "the delivered orders (`eta ingest FILE`, with their order_id) first"
        )
        return None
    outcomes = outcomes[outcomes[schema.TARGET].notna()].drop_duplicates(schema.ORDER_ID)
    outcomes = outcomes.astype({schema.ORDER_ID: str, schema.TARGET: "float64"})
    joined = with_id.merge(outcomes, on=schema.ORDER_ID, how="inner")
    if joined.empty:
        orders = with_id[schema.ORDER_ID].nunique()
        result.message = (
            f"nothing to join: none of the {orders} logged orders {window} has a delivered "
            f"order with the same order_id in {settings.effective_data_uri} yet; ingest "
            "their outcomes (`eta ingest FILE` with the order_id sent to `eta serve`)"
        )
        return None
    waiting = with_id[schema.ORDER_ID].nunique() - joined[schema.ORDER_ID].nunique()
    if waiting:
        result.notes.append(f"{waiting} logged orders have no delivered order in the lake yet")
    return joined


def _earliest_order(logged: pd.DataFrame) -> datetime | None:
    """Where to start reading the lake: the earliest logged order's creation (None: all)."""
    import pandas as pd

    created = pd.to_datetime(logged["order_created_at"], errors="coerce", utc=True)
    if created.isna().any() or created.empty:
        return None
    return created.min().to_pydatetime() - timedelta(days=1)  # whole days, any time zone


# --------------------------------------------------------------------------- figures


def model_quality(joined: pd.DataFrame, settings: Settings) -> list[ModelQuality]:
    """Quality per (role, version), champion first, versions in numeric order."""
    import numpy as np

    valid = (float(settings.min_duration_s), float(settings.max_duration_s))
    out = []
    for (role, version), group in joined.groupby(["role", "model_version"], sort=False):
        figures = quality_of(group, valid)
        if not figures:
            continue
        bias = float(np.mean(group["eta_p50_s"].to_numpy(float) - group[schema.TARGET]))
        out.append(
            ModelQuality(
                version=str(version),
                role=str(role),
                orders=int(figures["rows"]),
                mae=figures["mae_s"],
                coverage=figures["interval_coverage"],
                lateness=figures["lateness_rate"],
                bias=bias,
            )
        )
    out.sort(key=lambda m: (m.role != CHAMPION, _version_key(m.version)))
    return out


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)


def _compared_versions(
    settings: Settings, joined: pd.DataFrame, notes: list[str]
) -> tuple[str | None, str | None]:
    """Which champion and challenger versions to pair: the registry's aliases when the log
    has their predictions, else the version of each role with the most joined orders."""
    from eta_cli import registry

    aliases: dict[str, str | None] = {CHAMPION: None, CHALLENGER: None}
    try:
        for role in aliases:
            aliases[role] = registry.resolve_version(settings, settings.model_name, role)
    except EtaError as exc:
        notes.append(
            f"registry not reachable ({first_line(exc)}); comparing the most-logged versions"
        )
    chosen = []
    for role in (CHAMPION, CHALLENGER):
        counts = joined.loc[joined["role"] == role, "model_version"].value_counts()
        alias = aliases[role]
        if alias is not None and alias in counts.index:
            chosen.append(alias)
        elif not counts.empty:
            chosen.append(str(counts.index[0]))
            if alias is not None:
                notes.append(
                    f"the {role} alias is v{alias}, which has no joined predictions; "
                    f"comparing v{counts.index[0]}"
                )
        else:
            chosen.append(None)
    return chosen[0], chosen[1]


def compare(
    joined: pd.DataFrame,
    champion: str | None,
    challenger: str | None,
    *,
    seed: int = SEED,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> PairedComparison:
    """The paired comparison on the orders both versions scored (see the module doc)."""

    if champion is None or challenger is None:
        missing = "champion" if champion is None else "challenger (shadow)"
        return PairedComparison(
            "undecided", 0, champion, challenger, reason=f"no joined {missing} predictions"
        )

    def errors(role: str, version: str) -> pd.Series:
        rows = joined[(joined["role"] == role) & (joined["model_version"] == version)]
        absolute = (rows["eta_p50_s"].astype(float) - rows[schema.TARGET]).abs()
        return absolute.set_axis(rows[schema.ORDER_ID]).groupby(level=0).last()

    pairs = (
        errors(CHAMPION, champion)
        .to_frame("champion")
        .join(errors(CHALLENGER, challenger).to_frame("challenger"), how="inner")
    )
    base = {"champion_version": champion, "challenger_version": challenger}
    if len(pairs) < 2:
        return PairedComparison(
            "undecided", len(pairs), **base, reason="fewer than 2 orders scored by both"
        )
    diff = (pairs["challenger"] - pairs["champion"]).to_numpy(float)
    low, high = bootstrap_ci(diff, resamples=resamples, seed=seed, confidence=confidence)
    winner = "challenger" if high < 0 else "champion" if low > 0 else "undecided"
    reason = {
        "challenger": "the challenger's error is lower: the whole interval is below 0",
        "champion": "the champion's error is lower: the whole interval is above 0",
        "undecided": "the interval contains 0: no reliable difference yet",
    }[winner]
    return PairedComparison(
        winner,
        len(pairs),
        **base,
        champion_mae=float(pairs["champion"].mean()),
        challenger_mae=float(pairs["challenger"].mean()),
        mae_difference=float(diff.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        resamples=resamples,
        reason=reason,
    )


def bootstrap_ci(
    values: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, reproducible by ``seed``.

    Resampled in steps of at most :data:`BOOTSTRAP_CELLS` indices, so a million paired
    orders take bounded memory.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(values)
    step = max(1, BOOTSTRAP_CELLS // max(n, 1))
    means = np.empty(resamples)
    for begin in range(0, resamples, step):
        size = min(step, resamples - begin)
        means[begin : begin + size] = values[rng.integers(0, n, size=(size, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------- promotion


def promotion_decision(comparison: PairedComparison, min_orders: int) -> Promotion:
    """The live-promotion policy as a pure decision: win, enough orders, interval clear of 0."""
    c = comparison
    if c.winner != "challenger" or c.ci_high is None or c.ci_high >= 0:
        return Promotion(False, f"challenger did not win (verdict {c.winner})")
    if c.orders < min_orders:
        return Promotion(
            False,
            f"challenger v{c.challenger_version} won on {c.orders} paired orders, fewer than "
            f"the {min_orders} required (ETA_LIVE_MIN_ORDERS)",
        )
    return Promotion(
        True,
        f"live evaluation: challenger v{c.challenger_version} beat champion "
        f"v{c.champion_version} on {c.orders} paired orders, MAE difference "
        f"{c.mae_difference:.1f} s ({100 * c.confidence:g} % CI {c.ci_low:.1f} to {c.ci_high:.1f})",
        c.challenger_version,
    )


def promote_on_evidence(settings: Settings, comparison: PairedComparison) -> Promotion:
    """Apply :func:`promotion_decision`; move ``champion`` only if both aliases still point
    at the versions compared (a version registered since was never measured live)."""
    from eta_cli import registration, registry

    decision = promotion_decision(comparison, settings.live_min_orders)
    if not decision.promoted:
        return decision
    name = settings.model_name
    now = {role: registry.resolve_version(settings, name, role) for role in (CHAMPION, CHALLENGER)}
    compared = {CHAMPION: comparison.champion_version, CHALLENGER: comparison.challenger_version}
    if now != compared:
        return Promotion(
            False,
            f"aliases moved since these predictions (now champion v{now[CHAMPION]}, challenger "
            f"v{now[CHALLENGER]}; compared v{compared[CHAMPION]} and v{compared[CHALLENGER]})",
        )
    registration.promote(settings, str(decision.version), reason=decision.reason)
    return decision


# --------------------------------------------------------------------------- storage


def store_evaluation(settings: Settings, result: Evaluation) -> None:
    """One ``live_evaluations`` row and one ``live_quality`` row per model, in one
    transaction (a dashboard never sees an evaluation without its models)."""
    import sqlalchemy as sa

    engine = database.engine_for(settings)
    where = engine.url.render_as_string(hide_password=True)
    c = result.comparison
    try:
        database.ensure_schema(engine)
        with engine.begin() as conn:
            inserted = conn.execute(
                database.live_evaluations.insert().values(
                    evaluated_at=result.evaluated_at,
                    window_start=result.window_start,
                    model_name=result.model_name,
                    predictions=result.predictions,
                    joined_orders=result.joined_orders,
                    champion_version=c.champion_version,
                    challenger_version=c.challenger_version,
                    paired_orders=c.orders,
                    mae_difference_s=c.mae_difference,
                    ci_low_s=c.ci_low,
                    ci_high_s=c.ci_high,
                    winner=c.winner,
                    promoted=result.promoted,
                )
            )
            evaluation_id = inserted.inserted_primary_key[0]
            rows = [
                {
                    "evaluation_id": evaluation_id,
                    "evaluated_at": result.evaluated_at,
                    "model_version": m.version,
                    "role": m.role,
                    "orders": m.orders,
                    "mae_s": m.mae,
                    "interval_coverage": m.coverage,
                    "lateness_rate": m.lateness,
                    "bias_s": m.bias,
                }
                for m in result.models
            ]
            if rows:
                conn.execute(database.live_quality.insert(), rows)
    except sa.exc.SQLAlchemyError as exc:
        raise database.MonitoringError(f"{where}: {first_line(exc)}") from exc
    finally:
        engine.dispose()
