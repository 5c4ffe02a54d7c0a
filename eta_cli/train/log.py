"""Everything MLflow of a training run: tags, params, metrics, nested runs, plots, artifacts.

Layout (one experiment): a parent run per training (tag ``eta.run_type=training``)
carries the chosen model's test metrics, the tags (data fingerprint, row counts,
split boundaries, git commit), plots, the reference sample, the test split (for the
registration gate) and the model as one pyfunc model named ``model``. Each
candidate is a nested child run (``eta.run_type=candidate``) and each Optuna trial a
nested run (``eta.run_type=trial``) under the same parent.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eta_cli import schema
from eta_cli.config import Settings
from eta_cli.train.data import Matrices, Split
from eta_cli.train.fit import (
    DEFAULT_MAX_ROUNDS,
    DEFAULT_SEED,
    EARLY_STOPPING_ROUNDS,
    MODEL_CANDIDATE,
    Candidate,
    FitResult,
)

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.model import EtaModel

REFERENCE_ROWS = 20_000
TEST_ARTIFACT_ROWS = 100_000


@dataclass
class TrainingRun:
    """Where a training run is logged and what it trained on: everything but the fits.

    Both engines fill one in and hand it to :func:`eta_cli.train.run.fit_and_log`;
    ``rows``/``boundaries``/``data_fingerprint`` describe the full split even when
    the frames logged beside them are bounded samples (Dask engine). ``timings``
    collects each phase's seconds; ``started`` is when the whole call began.
    """

    client: Any  # mlflow.MlflowClient
    experiment_id: str
    experiment_name: str
    source: str
    data_fingerprint: str
    rows: dict[str, int]
    boundaries: dict[str, str]
    trials: int = 0
    max_rounds: int = DEFAULT_MAX_ROUNDS
    seed: int = DEFAULT_SEED
    extra_tags: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


def run_tags(run: TrainingRun) -> dict[str, str]:
    """The parent run's tags: run type, version, data, split and the git commit when known."""
    from eta_cli import __version__, registry

    tags = {
        registry.TAG_RUN_TYPE: registry.RUN_TYPE_TRAINING,
        "eta.version": __version__,
        "eta.data_source": run.source,
        "eta.data_fingerprint": run.data_fingerprint,
        "eta.trials": str(run.trials),
        **{f"eta.rows_{k}": str(v) for k, v in run.rows.items()},
        **{f"eta.{k}": v for k, v in run.boundaries.items()},
        **run.extra_tags,
    }
    commit = _git_commit()
    if commit:
        tags["eta.git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    return tags


@contextlib.contextmanager
def parent_run(run: TrainingRun, trained_at: str) -> Iterator[str]:
    """The active parent run (MLflow's fluent API logs into it); yields its id."""
    import mlflow

    from eta_cli import tracking

    with (
        tracking.quiet_stdout(),
        mlflow.start_run(
            experiment_id=run.experiment_id,
            run_name=f"train-{trained_at.replace(':', '').replace('+0000', 'Z')}",
            tags=run_tags(run),
        ) as active,
    ):
        yield active.info.run_id


def trial_logger(run: TrainingRun, parent_id: str) -> Callable[[int, FitResult], None]:
    """What logs each Optuna trial as a nested ``trial-N`` run of the parent."""

    def log_trial(number: int, fit: FitResult) -> None:
        _log_child(
            run.client,
            run.experiment_id,
            parent_id,
            f"trial-{number}",
            "trial",
            {**fit.params, "best_iteration": fit.best_iteration},
            {"val_pinball": fit.val_pinball, "fit_seconds": fit.seconds},
        )

    return log_trial


def log_candidates(
    run: TrainingRun,
    parent_id: str,
    candidates: Sequence[Candidate],
    y_test: np.ndarray,
    levels: Sequence[float],
) -> list[CandidateResult]:
    """Score every candidate on the test split; each becomes a nested ``candidate`` run."""
    from eta_cli.train import metrics as evaluation

    results: list[CandidateResult] = []
    for cand in candidates:
        metrics = evaluation.eta_metrics(y_test, cand.test_predictions, levels)
        child = _log_child(
            run.client,
            run.experiment_id,
            parent_id,
            cand.name,
            "candidate",
            cand.params,
            {**_prefixed(metrics, "test_"), "fit_seconds": cand.seconds},
            {"eta.candidate": cand.name, "eta.description": cand.description},
        )
        results.append(
            CandidateResult(cand.name, cand.description, metrics, cand.params, child, cand.seconds)
        )
    return results


def best_candidate(results: Sequence[CandidateResult]) -> str:
    """The candidate with the lowest test MAE."""
    return min(results, key=lambda r: r.metrics["mae"]).name


def log_summary(
    settings: Settings,
    run: TrainingRun,
    fit: FitResult,
    results: Sequence[CandidateResult],
    n_features: int,
) -> dict[str, float]:
    """The parent run's params, its summary metrics (returned) and the best-candidate tags."""
    import mlflow

    mlflow.log_params(
        {
            **{f"xgb_{k}": v for k, v in fit.params.items()},
            "max_rounds": run.max_rounds,
            "best_iteration": fit.best_iteration,
            "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
            "seed": run.seed,
            "trials": run.trials,
            "quantile_low": settings.quantile_low,
            "quantile_high": settings.quantile_high,
            "quoted_quantile": settings.quoted_quantile,
            "validation_fraction": settings.validation_fraction,
            "test_fraction": settings.test_fraction,
            "n_features": n_features,
        }
    )
    model_metrics = next(r.metrics for r in results if r.name == MODEL_CANDIDATE)
    summary = _prefixed(model_metrics, "test_")
    summary["val_pinball"] = fit.val_pinball
    for r in results:
        summary.update(_prefixed({"mae": r.metrics["mae"]}, f"{r.name}_test_"))
    mlflow.log_metrics(summary)
    mlflow.set_tags(
        {"eta.best_candidate": best_candidate(results), "eta.model_candidate": MODEL_CANDIDATE}
    )
    return summary


def log_plots(m: Matrices, split: Split, predictions: np.ndarray, booster: Any) -> None:
    """The test-set plots as PNG artifacts under ``plots/``."""
    import matplotlib.pyplot as plt
    import mlflow

    for path, fig in _plots(m, split, predictions, booster).items():
        mlflow.log_figure(fig, path)
        plt.close(fig)


def log_artifacts(model: EtaModel, split: Split, seed: int) -> str | None:
    """Reference sample, test split and the pyfunc model; returns the logged model's id.

    The reference sample (training rows + the model's predictions) is what drift
    reports compare against; the test split lets ``eta register`` re-score champion
    and candidate on the same orders.
    """
    import mlflow

    from eta_cli.model import MODEL_DIR_ARTIFACT, OUTPUT_COLUMNS

    with tempfile.TemporaryDirectory(prefix="eta-train-") as tmp:
        tmp_path = Path(tmp)
        reference = split.train
        if len(reference) > REFERENCE_ROWS:
            reference = reference.sample(REFERENCE_ROWS, random_state=seed).sort_index()
        reference = reference[_clean_columns(reference)].copy()
        predicted = model.predict_frame(reference)
        for name in OUTPUT_COLUMNS:
            reference[name] = predicted[name].to_numpy()
        (tmp_path / "reference").mkdir()
        reference.to_parquet(tmp_path / "reference" / "orders.parquet", index=False)
        mlflow.log_artifact(str(tmp_path / "reference" / "orders.parquet"), "reference")

        test = split.test
        if len(test) > TEST_ARTIFACT_ROWS:
            test = test.sample(TEST_ARTIFACT_ROWS, random_state=seed).sort_index()
        (tmp_path / "evaluation").mkdir()
        test[_clean_columns(test)].to_parquet(
            tmp_path / "evaluation" / "test_orders.parquet", index=False
        )
        mlflow.log_artifact(str(tmp_path / "evaluation" / "test_orders.parquet"), "evaluation")

        model_dir = model.save(tmp_path / MODEL_DIR_ARTIFACT)
        info = _log_pyfunc(model_dir, _signature_frame(split.test.head(5)))
    return info.model_id


@dataclass
class CandidateResult:
    name: str
    description: str
    metrics: dict[str, float]
    params: dict[str, Any]
    run_id: str | None
    seconds: float


@dataclass
class TrainResult:
    """What ``eta train`` produced; ``to_dict`` is the ``--json`` output."""

    run_id: str
    experiment_id: str
    experiment_name: str
    model_uri: str
    model_id: str | None
    best_candidate: str
    candidates: list[CandidateResult]
    rows: dict[str, int]
    boundaries: dict[str, str]
    data_source: str
    data_fingerprint: str
    trained_at: str
    timings: dict[str, float]
    trials: int
    model: EtaModel | None = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        return next(c.metrics for c in self.candidates if c.name == MODEL_CANDIDATE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "experiment": self.experiment_name,
            "model_uri": self.model_uri,
            "model_id": self.model_id,
            "best_candidate": self.best_candidate,
            "metrics": self.metrics,
            "candidates": {
                c.name: {
                    "metrics": c.metrics,
                    "params": c.params,
                    "run_id": c.run_id,
                    "seconds": round(c.seconds, 3),
                }
                for c in self.candidates
            },
            "rows": self.rows,
            "split": self.boundaries,
            "data_source": self.data_source,
            "data_fingerprint": self.data_fingerprint,
            "trained_at": self.trained_at,
            "trials": self.trials,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _prefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if np.isfinite(v)}


def _log_child(
    client: Any,
    experiment_id: str,
    parent_id: str,
    name: str,
    run_type: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
) -> str:
    """A nested run with params/metrics in one batch (cheap on a remote server)."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={"mlflow.parentRunId": parent_id, "eta.run_type": run_type, **(tags or {})},
    )
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if np.isfinite(v)],
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[RunTag("eta.description", tags.get("eta.description", "") if tags else "")],
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _signature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Order inputs with the types of the model signature (numbers as double, nulls allowed)."""
    out = {}
    for name in schema.INPUT_COLUMNS:
        column = schema.BY_NAME[name]
        if column.kind == "timestamp":
            out[name] = frame[name].astype("datetime64[ns]")
        elif column.kind == "str":
            out[name] = frame[name].astype(object).where(frame[name].notna(), None)
        else:
            out[name] = frame[name].astype("float64")
    import pandas as pd

    return pd.DataFrame(out, index=frame.index)


def model_signature() -> Any:
    """Inputs: the order columns known at order time (nullable ones optional); outputs: ETAs.

    Numeric inputs are typed ``Any``: MLflow's enforcement refuses int64 -> double and
    nullable Int64, yet callers send integers, nulls and floats; the feature builder
    coerces them itself.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from eta_cli.model import OUTPUT_COLUMNS

    inputs = []
    for column in schema.COLUMNS:
        if not column.known_at_order_time:
            continue
        kind = {"timestamp": "datetime", "str": "string"}.get(column.kind, AnyType())
        inputs.append(ColSpec(kind, column.name, required=not column.nullable))
    outputs = [ColSpec("double", name) for name in OUTPUT_COLUMNS]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _plots(m: Matrices, split: Split, predictions: np.ndarray, booster: Any) -> dict[str, Any]:
    """Predicted vs actual, residuals by hour of day, feature importance (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figures = {}
    y = m.y_test
    p50 = predictions[:, 1]
    rng = np.random.default_rng(0)
    idx = rng.choice(y.size, size=min(y.size, 5000), replace=False)

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(y[idx] / 60, p50[idx] / 60, s=4, alpha=0.3)
    top = float(np.quantile(np.concatenate([y, p50]), 0.995) / 60)
    ax.plot([0, top], [0, top], color="black", linewidth=1)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="actual (min)", ylabel="predicted p50 (min)")
    ax.set_title("Test set: predicted vs actual")
    figures["plots/predicted_vs_actual.png"] = fig

    hours = split.test[schema.CREATED_AT].dt.hour.to_numpy()
    residual = (y - p50) / 60
    fig, ax = plt.subplots(figsize=(8, 4))
    present = [h for h in range(24) if (hours == h).sum() > 0]
    ax.boxplot([residual[hours == h] for h in present], positions=present, showfliers=False)
    ax.axhline(0, color="black", linewidth=1)
    ax.set(xlabel="hour of day (UTC)", ylabel="actual - p50 (min)")
    ax.set_title("Test residuals by hour")
    figures["plots/residuals_by_hour.png"] = fig

    gain = booster.get_score(importance_type="total_gain")
    ranked = sorted(gain.items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh([k for k, _ in ranked], [v for _, v in ranked])
    ax.set(xlabel="total gain")
    ax.set_title("XGBoost feature importance")
    fig.tight_layout()
    figures["plots/feature_importance.png"] = fig
    return figures


def _clean_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in schema.CLEAN_COLUMNS if c in frame.columns]


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("mlflow", "xgboost", "numpy", "pandas", "pyarrow", "scikit-learn"):
        try:
            out.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return out


def _log_pyfunc(model_dir: Path, example: pd.DataFrame) -> Any:
    """The model as one pyfunc (``mlflow models serve`` / ``pyfunc.load_model`` work on it)."""
    import warnings

    import mlflow

    from eta_cli.model import MODEL_DIR_ARTIFACT
    from eta_cli.pyfunc import EtaPyfunc
    from eta_cli.registry import MODEL_ARTIFACT

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=EtaPyfunc(),
            artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
            signature=model_signature(),
            input_example=example,
            pip_requirements=_pip_requirements(),
        )


def set_model_id(model_id: str | None) -> None:
    """Tag the parent run with the logged model's id (``eta register`` looks it up)."""
    import mlflow

    from eta_cli import registry

    mlflow.set_tag(registry.TAG_MODEL_ID, model_id or "")


def log_timings(timings: Mapping[str, float]) -> None:
    """Each phase's seconds as a ``timing_*`` metric of the parent run."""
    import mlflow

    mlflow.log_metrics({f"timing_{k}": v for k, v in timings.items()})
