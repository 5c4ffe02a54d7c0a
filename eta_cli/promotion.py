"""The champion/challenger gate: does a new model earn the ``champion`` alias?

A pure decision over two models and one set of orders, kept apart from the MLflow
plumbing of :mod:`eta_cli.registry` (which loads the models and the orders, applies
the decision and tags it). The candidate becomes champion only if its MAE on the
candidate run's test orders beats the champion's MAE on the *same* orders by the
relative ``margin``; ``force`` promotes it anyway, with the reason saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.model import EtaModel

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class GateDecision:
    """The alias the candidate gets, why, and the figures behind it (for tags and output)."""

    alias: str  # CHAMPION or CHALLENGER
    reason: str
    candidate_mae: float | None = None
    champion_mae: float | None = None
    compared_rows: int | None = None


def score_mae(model: EtaModel, orders: pd.DataFrame) -> float:
    """Mean absolute error of the model's median ETA on orders with known delivery times."""
    import numpy as np

    from eta_cli import schema

    predicted = model.predict_frame(orders)["eta_p50_s"].to_numpy()
    actual = orders[schema.TARGET].to_numpy(dtype=float)
    return float(np.mean(np.abs(predicted - actual)))


def first_registration() -> GateDecision:
    """No champion yet: the first registered model takes the alias."""
    return GateDecision(CHAMPION, "first registration: no champion yet")


def unloadable_champion(
    version: str, error: Exception, candidate_mae: float, rows: int
) -> GateDecision:
    """The champion cannot be loaded by this eta version: the candidate replaces it."""
    return GateDecision(
        CHAMPION,
        f"champion v{version} cannot be loaded by this eta version ({error}); replaced",
        candidate_mae,
        None,
        rows,
    )


def decide(
    candidate_mae: float,
    champion_mae: float,
    champion_version: str,
    rows: int,
    margin: float,
    force: bool,
) -> GateDecision:
    """Compare the two MAEs measured on the same ``rows`` orders."""
    needed = champion_mae * (1.0 - margin)
    summary = (
        f"on the candidate run's {rows} test orders: candidate MAE {candidate_mae:.1f} s, "
        f"champion v{champion_version} MAE {champion_mae:.1f} s"
    )
    if candidate_mae <= needed and candidate_mae < champion_mae:
        reason = (
            f"beats champion by {100 * (1 - candidate_mae / champion_mae):.2f} % "
            f"(margin {100 * margin:g} %) {summary}"
        )
        return GateDecision(CHAMPION, reason, candidate_mae, champion_mae, rows)
    if force:
        reason = f"forced (--force) although it does not beat the champion {summary}"
        return GateDecision(CHAMPION, reason, candidate_mae, champion_mae, rows)
    reason = (
        f"does not beat champion by the {100 * margin:g} % margin (needs MAE <= {needed:.1f} s) "
        f"{summary}"
    )
    return GateDecision(CHALLENGER, reason, candidate_mae, champion_mae, rows)
