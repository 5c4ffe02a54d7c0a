"""Metrics of probabilistic ETAs, shared by training, registration and benchmarks.

Every candidate predicts four columns in seconds: p_low, p50, p_high and the
quoted quantile (:data:`eta_cli.model.OUTPUT_COLUMNS` order), so baselines and
models are scored the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WITHIN_SECONDS = 600.0  # "within +/- 10 minutes"


def pinball(actual: np.ndarray, predicted: np.ndarray, quantile: float) -> float:
    """Mean quantile (pinball) loss in seconds: under-prediction costs ``quantile`` per second."""
    diff = actual - predicted
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1.0) * diff)))


def eta_metrics(
    actual: np.ndarray,
    predictions: np.ndarray,
    quantiles: Sequence[float],
) -> dict[str, float]:
    """MAE, RMSE, R^2, share within 10 min, interval coverage, lateness, pinball.

    ``predictions`` is (n, 4): p_low, p50, p_high, quoted; ``quantiles`` their levels.
    Coverage is the share of actuals inside [p_low, p_high]; lateness the share of
    actuals later than the quoted ETA (what a customer experiences as "late").
    """
    y = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    median = p[:, 1]
    err = median - y
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0,
        "within_10min": float(np.mean(np.abs(err) <= WITHIN_SECONDS)),
        "coverage": float(np.mean((y >= p[:, 0]) & (y <= p[:, 2]))),
        "interval_width": float(np.mean(p[:, 2] - p[:, 0])),
        "lateness_rate": float(np.mean(y > p[:, 3])),
        "bias": float(np.mean(err)),
        "pinball": float(np.mean([pinball(y, p[:, i], q) for i, q in enumerate(quantiles)])),
    }
