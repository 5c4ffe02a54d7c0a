"""One training run, whichever engine built its matrices: fit, score, log, return.

:func:`fit_and_log` is where both engines end: the local engine after building
:class:`~eta_cli.train.data.Matrices` from the whole split, the Dask engine after
building them from bounded samples and fitting the booster on the cluster. So a
run, its nested runs and the pyfunc model look the same whoever trained them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from eta_cli.config import Settings
from eta_cli.progress import ProgressCallback, report
from eta_cli.train import fit as fitting
from eta_cli.train import log
from eta_cli.train.data import Matrices, Split
from eta_cli.train.fit import FitResult
from eta_cli.train.log import TrainingRun, TrainResult

if TYPE_CHECKING:
    from eta_cli.model import EtaModel

LOGGING_TASK = "logging to MLflow"


def fit_and_log(
    settings: Settings,
    m: Matrices,
    split: Split,
    run: TrainingRun,
    *,
    fit_booster: Callable[[], FitResult] | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Baselines, the XGBoost fit, test metrics and everything logged to MLflow.

    ``split`` frames feed the plots, the reference sample and the test artifact (the
    Dask engine passes bounded samples of them). ``fit_booster`` replaces the local
    XGBoost fit (Dask engine). Every candidate is reported to ``progress``.
    """
    levels = fitting.output_levels(settings)
    tick = time.perf_counter()
    candidates = fitting.fit_reference_candidates(m, levels, progress)
    run.timings["baselines_s"] = time.perf_counter() - tick
    trained_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    with log.parent_run(run, trained_at) as run_id:
        fit = _fit_model_booster(settings, m, run, run_id, fit_booster, progress)
        model = fitting.eta_model_from(fit, m.state, settings, m.x_val, m.y_val)
        candidates.append(fitting.booster_candidate(fit, model, m.x_test, run.max_rounds))
        fitting.report_candidate(progress, candidates[-1])
        results = log.log_candidates(run, run_id, candidates, m.y_test, levels)

        tick = time.perf_counter()
        report(progress, LOGGING_TASK, done=0, total=None, note="...")
        summary = log.log_summary(settings, run, fit, results, m.x_train.shape[1])
        log.log_plots(m, split, candidates[-1].test_predictions, fit.booster)
        model.metadata.update(_model_metadata(run, run_id, trained_at, summary, fit))
        model_id = log.log_artifacts(model, split, run.seed)
        log.set_model_id(model_id)
        run.timings["logging_s"] = time.perf_counter() - tick
        run.timings["total_s"] = time.perf_counter() - run.started
        log.log_timings(run.timings)
    report(
        progress,
        LOGGING_TASK,
        done=1,
        total=1,
        message=f"logged run {run_id} in {run.timings['logging_s']:.1f} s",
    )
    return _result(run, run_id, trained_at, model_id, results, model)


def _fit_model_booster(
    settings: Settings,
    m: Matrices,
    run: TrainingRun,
    run_id: str,
    fit_booster: Callable[[], FitResult] | None,
    progress: ProgressCallback | None,
) -> FitResult:
    """The engine's own booster fit, else the local one (with trials logged as nested runs)."""
    if fit_booster is not None:
        fit = fit_booster()
        run.timings["xgb_fit_s"] = fit.seconds
        return fit
    fit, seconds = fitting.fit_booster(
        m,
        fitting.model_quantiles(settings),
        trials=run.trials,
        max_rounds=run.max_rounds,
        seed=run.seed,
        on_trial_done=log.trial_logger(run, run_id),
        progress=progress,
    )
    run.timings["xgb_fit_s"] = seconds
    return fit


def _model_metadata(
    run: TrainingRun, run_id: str, trained_at: str, summary: dict[str, float], fit: FitResult
) -> dict[str, object]:
    """What the saved model remembers of the run that made it."""
    from eta_cli import __version__

    return {
        "run_id": run_id,
        "experiment_id": run.experiment_id,
        "trained_at": trained_at,
        "metrics": summary,
        "data_fingerprint": run.data_fingerprint,
        "data_source": run.source,
        "rows": run.rows,
        "split": run.boundaries,
        "best_iteration": fit.best_iteration,
        "params": fit.params,
        "eta_version": __version__,
    }


def _result(
    run: TrainingRun,
    run_id: str,
    trained_at: str,
    model_id: str | None,
    results: list[log.CandidateResult],
    model: EtaModel,
) -> TrainResult:
    """What the caller gets back (``--json`` prints its ``to_dict``)."""
    from eta_cli import registry

    return TrainResult(
        run_id=run_id,
        experiment_id=run.experiment_id,
        experiment_name=run.experiment_name,
        model_uri=f"runs:/{run_id}/{registry.MODEL_ARTIFACT}",
        model_id=model_id,
        best_candidate=log.best_candidate(results),
        candidates=results,
        rows=run.rows,
        boundaries=run.boundaries,
        data_source=run.source,
        data_fingerprint=run.data_fingerprint,
        trained_at=trained_at,
        timings=run.timings,
        trials=run.trials,
        model=model,
    )
