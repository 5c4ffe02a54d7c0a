"""Registration: a training run becomes a model version, and the aliases move.

A new version becomes ``champion`` only if it beats the current champion by
``settings.promotion_margin`` (relative MAE) when both are re-scored on the *same*
orders: the candidate run's test split, logged with the run as
:data:`eta_cli.registry.TEST_ARTIFACT`. Otherwise it gets ``challenger`` and the reason
is tagged. ``promote`` moves ``champion`` to a chosen version (roll back or forward);
``list_versions`` is ``eta register --list``. Loading a model is :mod:`eta_cli.registry`.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from eta_cli import promotion, registry
from eta_cli.config import Settings, redact_url
from eta_cli.errors import first_line
from eta_cli.promotion import CHALLENGER, CHAMPION
from eta_cli.registry import (
    MODEL_ARTIFACT,
    RUN_TYPE_TRAINING,
    TAG_MODEL_ID,
    TAG_RUN_TYPE,
    TEST_ARTIFACT,
    ModelNotFoundError,
    RegistryError,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from eta_cli.model import EtaModel

# Model-version tags written by ``eta register``.
TAG_REASON = "eta.gate_reason"
TAG_DECISION = "eta.gate_decision"
VERSION_METRICS = ("test_mae", "test_coverage", "test_lateness_rate", "test_pinball")


@dataclass
class RegisterResult:
    """What ``eta register`` did, for the table and ``--json``."""

    name: str
    version: str
    run_id: str | None
    action: str  # champion | challenger | promoted | unchanged
    aliases: list[str]
    reason: str
    candidate_mae: float | None = None
    champion_version: str | None = None
    champion_mae: float | None = None
    compared_rows: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_run(settings: Settings, client: MlflowClient | None = None) -> Any:
    """The finished training run of the experiment with the lowest test MAE."""
    from eta_cli import tracking

    client = client or tracking.configure(settings)
    experiment_id = tracking.experiment_id(client, settings)
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{TAG_RUN_TYPE}` = '{RUN_TYPE_TRAINING}' and attributes.status = 'FINISHED'"
        ),
        order_by=["metrics.test_mae ASC", "attributes.start_time DESC"],
        max_results=1,
    )
    runs = [r for r in runs if "test_mae" in r.data.metrics]
    if not runs:
        raise RegistryError(
            f"no finished training run in experiment {settings.experiment_name!r} "
            f"({redact_url(settings.effective_tracking_uri)}): run `eta train` first"
        )
    return runs[0]


def _aliases_by_version(client: MlflowClient, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        model = client.get_registered_model(name)
    except Exception:
        return out
    for alias, version in (model.aliases or {}).items():
        out.setdefault(str(version), []).append(alias)
    return out


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not registry.is_not_found(exc):
            raise
        try:
            client.create_registered_model(
                name, description="Food-delivery ETA model (eta train / eta register)."
            )
        except MlflowException:
            client.get_registered_model(name)  # created concurrently


def _set_version_tags(client: MlflowClient, name: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        if value is not None:
            client.set_model_version_tag(name, version, key, str(value))


def _create_version(client: MlflowClient, name: str, run: Any) -> Any:
    run_id = run.info.run_id
    model_id = run.data.tags.get(TAG_MODEL_ID)
    root_source = f"models:/{model_id}" if model_id else f"runs:/{run_id}/{MODEL_ARTIFACT}"
    _ensure_registered_model(client, name)
    return client.create_model_version(
        name,
        source=root_source,
        run_id=run_id,
        model_id=model_id or None,
        tags={"eta.data_fingerprint": run.data.tags.get("eta.data_fingerprint", "")},
    )


def register(settings: Settings, run_id: str | None = None, force: bool = False) -> RegisterResult:
    """Register a training run (default: the best by test MAE) and apply the promotion gate."""
    from mlflow.exceptions import MlflowException

    from eta_cli import tracking

    client = tracking.configure(settings)
    name = settings.model_name
    try:
        run = client.get_run(run_id) if run_id else best_run(settings, client)
    except MlflowException as exc:
        raise RegistryError(
            f"no run {run_id!r} in {redact_url(settings.effective_tracking_uri)}: {first_line(exc)}"
        ) from exc
    run_id = run.info.run_id
    if run.data.tags.get(TAG_RUN_TYPE) != RUN_TYPE_TRAINING:
        raise RegistryError(
            f"run {run_id} is not an `eta train` run (tag {TAG_RUN_TYPE}="
            f"{run.data.tags.get(TAG_RUN_TYPE)!r}); pass the parent training run's id"
        )
    run_metrics = registry.run_test_metrics(run)

    existing = (
        [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == run_id]
        if _model_exists(client, name)
        else []
    )
    if existing:
        version = str(max(int(v.version) for v in existing))
        return _already_registered(client, name, version, run_id, force, run_metrics)

    champion = _champion_version(client, name)
    candidate_loaded = registry.load_model(settings, f"runs:/{run_id}/{MODEL_ARTIFACT}")
    gate = _gate(client, settings, run_id, candidate_loaded.model, champion, force)

    with tracking.quiet_stdout(settings.debug):
        mv = _create_version(client, name, run)
    version = str(mv.version)
    _set_version_tags(
        client,
        name,
        version,
        {
            TAG_DECISION: gate.alias,
            TAG_REASON: gate.reason,
            **{f"eta.{k}": f"{v:.6g}" for k, v in run_metrics.items() if k in VERSION_METRICS},
        },
    )
    client.set_registered_model_alias(name, gate.alias, version)
    return RegisterResult(
        name=name,
        version=version,
        run_id=run_id,
        action=gate.alias,
        aliases=sorted(_aliases_by_version(client, name).get(version, [])),
        reason=gate.reason,
        candidate_mae=gate.candidate_mae,
        champion_version=str(champion.version) if champion else None,
        champion_mae=gate.champion_mae,
        compared_rows=gate.compared_rows,
        metrics=run_metrics,
    )


def _already_registered(
    client: MlflowClient,
    name: str,
    version: str,
    run_id: str,
    force: bool,
    metrics: dict[str, float],
) -> RegisterResult:
    """A run registers once: nothing changes, unless ``force`` makes its version champion."""
    aliases = sorted(_aliases_by_version(client, name).get(version, []))
    if force and CHAMPION not in aliases:
        return _move_champion(client, name, version, run_id, "forced (--force)", metrics)
    reason = f"run {run_id} is already registered as version {version}"
    return RegisterResult(name, version, run_id, "unchanged", aliases, reason, metrics=metrics)


def _model_exists(client: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException as exc:
        if registry.is_not_found(exc):
            return False
        raise


def _champion_version(client: MlflowClient, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    if not _model_exists(client, name):
        return None
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if registry.is_not_found(exc):
            return None
        raise


def _gate(
    client: MlflowClient,
    settings: Settings,
    run_id: str,
    candidate: EtaModel,
    champion: Any,
    force: bool,
) -> promotion.GateDecision:
    """Re-score the candidate and the current champion on the candidate run's test orders."""
    if champion is None:
        return promotion.first_registration()
    orders = registry.run_artifact_frame(
        client, run_id, TEST_ARTIFACT, "test split", debug=settings.debug
    )
    candidate_mae = promotion.score_mae(candidate, orders)
    version = str(champion.version)
    try:
        champ = registry.load_model(settings, f"models:/{settings.model_name}/{version}")
    except ModelNotFoundError as exc:
        return promotion.unloadable_champion(version, exc, candidate_mae, len(orders))
    champion_mae = promotion.score_mae(champ.model, orders)
    return promotion.decide(
        candidate_mae, champion_mae, version, len(orders), settings.promotion_margin, force
    )


def _move_champion(
    client: MlflowClient,
    name: str,
    version: str,
    run_id: str | None,
    reason: str,
    metrics: dict[str, float],
) -> RegisterResult:
    previous = _champion_version(client, name)
    client.set_registered_model_alias(name, CHAMPION, version)
    if CHALLENGER in _aliases_by_version(client, name).get(version, []):
        client.delete_registered_model_alias(name, CHALLENGER)
    prev = str(previous.version) if previous else None
    full = f"{reason}; previous champion: v{prev}" if prev and prev != version else reason
    _set_version_tags(client, name, version, {TAG_DECISION: CHAMPION, TAG_REASON: full})
    return RegisterResult(
        name=name,
        version=version,
        run_id=run_id,
        action="promoted",
        aliases=sorted(_aliases_by_version(client, name).get(version, [])),
        reason=full,
        champion_version=prev,
        metrics=metrics,
    )


def promote(settings: Settings, version: str, *, reason: str | None = None) -> RegisterResult:
    """Move ``champion`` to ``version`` (roll back or forward), whatever the metrics say;
    ``reason`` (tagged on the version) says why when it is not a manual promotion."""
    from mlflow.exceptions import MlflowException

    from eta_cli import tracking

    client = tracking.configure(settings)
    name = settings.model_name
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        known = []
        if _model_exists(client, name):
            known = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise RegistryError(
            f"model {name!r} has no version {version!r}; versions: "
            f"{', '.join(map(str, known)) or 'none (run `eta register` first)'}"
        ) from exc
    metrics = {}
    if mv.run_id:
        with contextlib.suppress(MlflowException):
            metrics = registry.run_test_metrics(client.get_run(mv.run_id))
    reason = reason or f"promoted manually to v{mv.version}"
    return _move_champion(client, name, str(mv.version), mv.run_id, reason, metrics)


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every version of the model, newest first, with aliases, gate decision and metrics."""
    from eta_cli import tracking

    client = tracking.configure(settings)
    name = settings.model_name
    if not _model_exists(client, name):
        return []
    aliases = _aliases_by_version(client, name)
    rows = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        tags = mv.tags or {}
        metrics = {}
        for key in VERSION_METRICS:
            if f"eta.{key}" in tags:
                with contextlib.suppress(ValueError):
                    metrics[key] = float(tags[f"eta.{key}"])
        rows.append(
            {
                "name": name,
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "created": mv.creation_timestamp,
                "decision": tags.get(TAG_DECISION),
                "reason": tags.get(TAG_REASON),
                "metrics": metrics,
            }
        )
    rows.sort(key=lambda r: int(r["version"]), reverse=True)
    return rows
