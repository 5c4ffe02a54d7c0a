"""Compare what Evidently does not know about this model: its quality and the store mix.

Regression quality (MAE, p10-p90 coverage, lateness against the quoted ETA) of the
current orders whose actual delivery time is known, next to the same figures on the
reference sample and the champion's own test metrics; and the share of current
orders from stores the model has no history for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eta_cli import schema
from eta_cli.monitor.result import PREDICTION_COLUMN, PREDICTION_COLUMNS, Quality

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.config import Settings
    from eta_cli.monitor.data import Gathered


@dataclass(frozen=True)
class Comparison:
    """Quality (None when no delivery time is known) and the unseen-store share."""

    quality: Quality | None
    unseen_store_share: float
    unseen_store_basis: str


def compare(settings: Settings, gathered: Gathered) -> Comparison:
    """Quality of the current sample against reference and training, and unseen stores."""
    valid = (float(settings.min_duration_s), float(settings.max_duration_s))
    quality = None
    figures = quality_of(gathered.current, valid)
    if figures:
        rows = int(figures.pop("rows"))
        loaded = gathered.model
        training = training_metrics(loaded.metrics) if loaded is not None else None
        reference = quality_of(gathered.reference, valid) or {}
        quality = Quality(
            rows=rows,
            **figures,
            reference={k: v for k, v in reference.items() if k != "rows"} or None,
            training=training,
            mae_vs_training=(
                figures["mae_s"] / training["mae_s"] if training and training.get("mae_s") else None
            ),
        )
    share, basis = unseen_stores(gathered.current, gathered.reference_raw, gathered.model)
    return Comparison(quality, share, basis)


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


def training_metrics(metrics: Mapping[str, float]) -> dict[str, float] | None:
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


def unseen_stores(current: pd.DataFrame, reference: pd.DataFrame, loaded: Any) -> tuple[float, str]:
    """Share of current orders from stores the model (or else the reference) never saw."""
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
