"""What a drift report is asked, which columns it compares, and what it found.

The vocabulary shared by the drift modules (gather in :mod:`~eta_cli.monitor.data`,
score in :mod:`~eta_cli.monitor.drift`, compare in :mod:`~eta_cli.monitor.quality`,
deliver in :mod:`~eta_cli.monitor.report` and :mod:`~eta_cli.monitor.deliver`), kept
apart so that none of them imports another's internals.

Which columns are compared (:data:`NUMERIC_COLUMNS`, :data:`CATEGORICAL_COLUMNS`):
the model's input columns, with ``market_id``, ``order_protocol`` and
``store_primary_category`` as categories. ``store_id`` is left out of the
per-column tests: ~6,700 ids make a categorical test that flags any change in
which restaurants are busy, and a histogram of ids nobody can read. Store mix
is summarised instead by the share of current orders from stores the model has
no history for (``unseen_store_share``). ``created_at`` is compared as the hour
of day (``order_hour``): the raw timestamp always "drifts" as time passes, and a
one-day window would always differ from the reference in day of week.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
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
MIN_SAMPLE_ROWS = 100
# Below this many current orders a drift test says more about chance than about traffic
# (one order "drifts" half the columns): the report is still written, with no verdict.
MIN_CURRENT_ROWS = 200

CURRENT_ORDERS = "orders"
CURRENT_PREDICTIONS = "predictions"
REFERENCE_CHAMPION = "champion"


class DriftInputError(EtaError):
    """The reference or current data cannot be used; the message says which and why."""


# --------------------------------------------------------------------------- request


@dataclass(frozen=True)
class DriftRequest:
    """What one drift report compares and where it goes (the options of ``eta drift-report``).

    ``reference``: None or ``"champion"`` (the champion's reference sample) or a path.
    ``current``: None or ``"orders"`` (latest ingested orders), ``"predictions"`` (the
    prediction log over ``since``, default 24 h), a path, or a DataFrame (``eta
    pipeline`` passes the batch it just ingested, named by ``current_label``).
    ``model``: an already loaded ``registry.LoadedModel`` to score with instead of the
    champion; ``model_uri``: another registered model to take the reference from and
    score with. ``store=False`` writes the files without a monitoring database row (and
    without a workspace run). ``include_data`` keeps the compared orders in the Evidently
    workspace run (None: ``settings.workspace_include_data``).
    """

    reference: str | None = None
    current: str | pd.DataFrame | None = None
    since: str | timedelta | datetime | None = None
    upload_s3: bool = False
    sample_rows: int | None = None
    fail_on_drift: bool = False
    alert_webhook: str | None = None
    model: Any = None
    model_uri: str | None = None
    current_label: str | None = None
    store: bool = True
    include_data: bool | None = None

    def sample_limit(self, settings: Settings) -> int:
        """Rows kept per side (0 = all), checked: a tiny sample makes every test noise."""
        rows = settings.drift_sample_rows if self.sample_rows is None else int(self.sample_rows)
        if rows < 0:
            raise DriftInputError(f"--sample {rows} must be >= 0 (0 keeps every row)")
        if rows and rows < MIN_SAMPLE_ROWS:
            raise DriftInputError(
                f"--sample {rows} is too small: use 0 (all rows) or >= {MIN_SAMPLE_ROWS}"
            )
        return rows

    @property
    def champion_reference(self) -> bool:
        """The reference is the champion's sample (so the champion is loaded to name it)."""
        return self.reference in (None, "", REFERENCE_CHAMPION)


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
    workspace_run: str | None = None  # the run's file in the Evidently workspace
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
    def meaningful(self) -> bool:
        """Whether enough current orders were compared for a verdict (:data:`MIN_CURRENT_ROWS`)."""
        return self.current_sampled_rows >= MIN_CURRENT_ROWS

    @property
    def dataset_drift(self) -> bool:
        """Evidently's rule: drifted share of columns at or above the threshold, and only
        on a meaningful sample (a tiny batch neither alarms nor triggers a retrain)."""
        return bool(self.columns) and self.meaningful and self.drift_share >= self.threshold

    @property
    def sampled(self) -> bool:
        return (
            self.reference_sampled_rows < self.reference_rows
            or self.current_sampled_rows < self.current_rows
        )

    @property
    def tested_columns(self) -> list[ColumnDrift]:
        """The input columns, then the prediction when it was tested (report and DB order)."""
        return [*self.columns, *([self.prediction] if self.prediction else [])]

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
            "sampling": self._sampling_dict(),
            "data_drift": self._data_drift_dict(),
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
                "workspace_run": self.workspace_run,
            },
            "alert": self.alert,
            "errors": self.errors,
            "exit_code": self.exit_code,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def _sampling_dict(self) -> dict[str, Any]:
        return {
            "sample_rows": self.sample_rows,
            "sampled": self.sampled,
            "seed": SAMPLE_SEED,
            "note": "every figure in this summary and the HTML report is computed on the "
            "sampled rows (a seeded uniform random sample of at most sample_rows per side)",
        }

    def _data_drift_dict(self) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "meaningful": self.meaningful,
            "drift_share": self.drift_share,
            "threshold": self.threshold,
            "drifted_columns": self.drifted_columns,
            "total_columns": self.total_columns,
            "columns": [asdict(c) for c in self.columns],
        }
