"""The model registry: load a model by URI, and the champion/challenger registration.

Models are registered under ``settings.model_name`` with MLflow *aliases*
(``champion``, ``challenger``), never the deprecated stages. Serving, batch
scoring and drift reports load :class:`~eta_cli.model.EtaModel` directly from the
``model_dir`` artifact of the logged pyfunc model (no pyfunc predict on the hot path).

A new version becomes ``champion`` only if it beats the current champion by
``settings.promotion_margin`` (relative MAE) when both are re-scored on the *same*
orders: the candidate run's test split, logged with the run as
:data:`TEST_ARTIFACT`. Otherwise it gets ``challenger`` and the reason is tagged.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli import promotion
from eta_cli.config import Settings, redact_url
from eta_cli.errors import EtaError, first_line
from eta_cli.promotion import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from eta_cli.model import EtaModel

MODEL_ARTIFACT = "model"  # name of the logged pyfunc model in the training run
REFERENCE_ARTIFACT = "reference/orders.parquet"
TEST_ARTIFACT = "evaluation/test_orders.parquet"
# Run tags written by ``eta train`` and read here.
TAG_RUN_TYPE = "eta.run_type"
TAG_MODEL_ID = "eta.model_id"
RUN_TYPE_TRAINING = "training"
# Model-version tags written by ``eta register``.
TAG_REASON = "eta.gate_reason"
TAG_DECISION = "eta.gate_decision"
VERSION_METRICS = ("test_mae", "test_coverage", "test_lateness_rate", "test_pinball")


class ModelNotFoundError(EtaError):
    """No model at the given URI / alias / version / run, or it has no ETA model inside."""


class RegistryError(EtaError):
    """A registration request cannot be carried out (unknown version, no runs, ...)."""


@dataclass
class LoadedModel:
    """An :class:`EtaModel` and where it came from."""

    model: EtaModel
    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    uri: str
    metrics: dict[str, float]
    trained_at: str | None


@dataclass
class _Resolved:
    root: str | None  # artifact URI of the logged pyfunc model (folder with MLmodel)
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None


def default_uri(settings: Settings) -> str:
    return f"models:/{settings.model_name}@{CHAMPION}"


def _not_found_hint(settings: Settings) -> str:
    return (
        f"in registry {redact_url(settings.effective_registry_uri)}: "
        "run `eta train` and `eta register` first"
    )


def _is_not_found(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", "") or ""
    text = str(exc)
    return (
        "RESOURCE_DOES_NOT_EXIST" in code
        or "not found" in text.lower()
        or "does not exist" in text.lower()
        or "INVALID_PARAMETER_VALUE" in code
    )


def _logged_model_root(client: MlflowClient, model_id: str) -> str:
    return client.get_logged_model(model_id).artifact_location


def _run_model_root(client: MlflowClient, run_id: str, name: str = MODEL_ARTIFACT) -> str:
    """Artifact root of the pyfunc model logged by a run (MLflow 3 logged model)."""
    run = client.get_run(run_id)
    model_id = run.data.tags.get(TAG_MODEL_ID)
    if not model_id:
        outputs = getattr(run, "outputs", None)
        for output in getattr(outputs, "model_outputs", None) or []:
            model_id = output.model_id
            break
    if not model_id:
        found = client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
            max_results=1,
        )
        if found:
            model_id = found[0].model_id
    if model_id:
        return _logged_model_root(client, model_id)
    return f"runs:/{run_id}/{name}"  # MLflow 2 style: the model lives in the run's artifacts


def _version_root(client: MlflowClient, source: str) -> str:
    match = re.fullmatch(r"models:/(m-[0-9a-f]+)", source or "")
    if match:
        return _logged_model_root(client, match.group(1))
    return source


def _resolve(client: MlflowClient, settings: Settings, uri: str) -> _Resolved:
    from mlflow.exceptions import MlflowException

    try:
        if uri.startswith("runs:/"):
            rest = uri[len("runs:/") :].strip("/")
            run_id, _, path = rest.partition("/")
            if not run_id:
                raise ModelNotFoundError(f"{uri!r} has no run id (expected runs:/<run_id>/model)")
            return _Resolved(_run_model_root(client, run_id, path or MODEL_ARTIFACT), run_id=run_id)
        if not uri.startswith("models:/"):
            raise ModelNotFoundError(
                f"model URI {uri!r} is not supported: use models:/<name>@<alias>, "
                "models:/<name>/<version>, runs:/<run_id>/model or a local model folder"
            )
        rest = uri[len("models:/") :].strip("/")
        if re.fullmatch(r"m-[0-9a-f]+", rest):
            logged = client.get_logged_model(rest)
            return _Resolved(logged.artifact_location, run_id=logged.source_run_id)
        if "@" in rest:
            name, alias = rest.split("@", 1)
            try:
                mv = client.get_model_version_by_alias(name, alias)
            except MlflowException as exc:
                if _is_not_found(exc):
                    raise ModelNotFoundError(
                        f"no model {name!r} with alias {alias!r} {_not_found_hint(settings)}"
                    ) from exc
                raise
        else:
            name, _, version = rest.partition("/")
            if not version:
                raise ModelNotFoundError(
                    f"model URI {uri!r} names no version or alias "
                    f"(use models:/{name}@{CHAMPION} or models:/{name}/<version>)"
                )
            alias = None
            if version == "latest":
                versions = client.search_model_versions(f"name = '{name}'")
                if not versions:
                    raise ModelNotFoundError(
                        f"no versions of model {name!r} {_not_found_hint(settings)}"
                    )
                version = str(max(int(v.version) for v in versions))
            try:
                mv = client.get_model_version(name, version)
            except MlflowException as exc:
                if _is_not_found(exc):
                    raise ModelNotFoundError(
                        f"no version {version} of model {name!r} {_not_found_hint(settings)}"
                    ) from exc
                raise
        return _Resolved(
            _version_root(client, mv.source),
            name=mv.name,
            version=str(mv.version),
            alias=alias,
            run_id=mv.run_id or None,
        )
    except MlflowException as exc:
        if _is_not_found(exc):
            raise ModelNotFoundError(f"no model at {uri!r}: {first_line(exc)}") from exc
        from eta_cli.tracking import TrackingError

        raise TrackingError(
            f"MLflow registry {redact_url(settings.effective_registry_uri)} failed while "
            f"resolving {uri!r}: {first_line(exc)}"
        ) from exc


def _download(artifact_uri: str, dst: str) -> str:
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=dst)


def _model_dir_from_root(root: str, dst: str) -> Path:
    """Download only the EtaModel folder of a logged pyfunc model (path read from MLmodel)."""
    import yaml

    root = root.rstrip("/")
    mlmodel = Path(_download(f"{root}/MLmodel", dst))
    spec = yaml.safe_load(mlmodel.read_text())
    artifacts = spec.get("flavors", {}).get("python_function", {}).get("artifacts") or {}
    from eta_cli.model import MODEL_DIR_ARTIFACT

    entry = artifacts.get(MODEL_DIR_ARTIFACT)
    if not entry:
        raise ModelNotFoundError(f"model at {root} is not an eta model (no {MODEL_DIR_ARTIFACT!r})")
    return Path(_download(f"{root}/{entry['path']}", dst))


def _local_model_dir(path: Path) -> Path | None:
    """A folder saved by EtaModel.save, or a downloaded pyfunc model folder containing one."""
    from eta_cli.model import META_FILE, MODEL_DIR_ARTIFACT

    if (path / META_FILE).is_file():
        return path
    mlmodel = path / "MLmodel"
    if mlmodel.is_file():
        import yaml

        spec = yaml.safe_load(mlmodel.read_text())
        artifacts = spec.get("flavors", {}).get("python_function", {}).get("artifacts") or {}
        entry = artifacts.get(MODEL_DIR_ARTIFACT)
        if entry and (path / entry["path"] / META_FILE).is_file():
            return path / entry["path"]
    return None


def _test_metrics(run: Any) -> dict[str, float]:
    """A training run's metrics on its test split (``test_mae``, ``test_coverage``, ...)."""
    return {k: float(v) for k, v in run.data.metrics.items() if k.startswith("test_")}


def _metrics_of(model: EtaModel) -> dict[str, float]:
    raw = model.metadata.get("metrics") or {}
    out = {}
    for key, value in raw.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _load_eta_model(directory: Path, uri: str) -> EtaModel:
    from eta_cli.model import EtaModel

    try:
        return EtaModel.load(directory)
    except (ValueError, OSError, KeyError) as exc:
        raise ModelNotFoundError(f"model at {uri} cannot be loaded: {first_line(exc)}") from exc


def load_model(settings: Settings, model_uri: str | None = None) -> LoadedModel:
    """Load an :class:`EtaModel` from the registry, a run, or a local folder.

    ``model_uri`` defaults to ``models:/<model_name>@champion``; also accepted:
    ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``runs:/<run_id>/model``
    and a folder written by :meth:`EtaModel.save` (or a downloaded pyfunc model).
    """
    uri = model_uri or default_uri(settings)
    local = Path(uri).expanduser() if "://" not in uri and ":/" not in uri else None
    if local is not None:
        directory = _local_model_dir(local) if local.is_dir() else None
        if directory is None:
            raise ModelNotFoundError(
                f"{uri} is not a model folder (expected {local}/eta_model.json or an MLmodel "
                "folder from `mlflow artifacts download`)"
            )
        model = _load_eta_model(directory, uri)
        return LoadedModel(
            model=model,
            name=None,
            version=None,
            alias=None,
            run_id=model.metadata.get("run_id"),
            uri=str(local.resolve()),
            metrics=_metrics_of(model),
            trained_at=model.metadata.get("trained_at"),
        )

    from eta_cli import tracking

    client = tracking.configure(settings)
    resolved = _resolve(client, settings, uri)
    with (
        tracking.fast_http(),
        tracking.quiet_stdout(settings.debug),
        tempfile.TemporaryDirectory(prefix="eta-model-") as tmp,
    ):
        try:
            directory = _model_dir_from_root(resolved.root or uri, tmp)
        except EtaError:
            raise
        except Exception as exc:
            raise ModelNotFoundError(
                f"could not download the model of {uri} from {resolved.root}: {first_line(exc)}"
            ) from exc
        model = _load_eta_model(directory, uri)
    metrics = _metrics_of(model)
    if not metrics and resolved.run_id:
        metrics = _test_metrics(client.get_run(resolved.run_id))
    return LoadedModel(
        model=model,
        name=resolved.name,
        version=resolved.version,
        alias=resolved.alias,
        run_id=resolved.run_id or model.metadata.get("run_id"),
        uri=uri,
        metrics=metrics,
        trained_at=model.metadata.get("trained_at"),
    )


def resolve_version(settings: Settings, name: str, alias: str) -> str | None:
    """The version an alias points at, or None if unset. Cheap: no checks, one registry call.

    Meant for hot-reload polling; an unreachable registry raises ``TrackingError``.
    """
    from mlflow.exceptions import MlflowException

    from eta_cli import tracking

    default = not (settings.tracking_uri or settings.registry_uri)
    if default and not (settings.home_path / "mlflow.db").exists():
        return None  # embedded default never used: nothing registered yet
    # A short probe first: MLflow itself retries a dead database or server for minutes.
    tracking.probe(settings.effective_registry_uri, "model registry")
    with tracking.fast_http():
        try:
            client = tracking.client_for(settings)
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if _is_not_found(exc):
                return None
            raise tracking.TrackingError(
                f"MLflow registry {redact_url(settings.effective_registry_uri)} failed: "
                f"{first_line(exc)}"
            ) from exc
        except Exception as exc:
            raise tracking.TrackingError(
                f"MLflow registry {redact_url(settings.effective_registry_uri)} unreachable: "
                f"{first_line(exc)}"
            ) from exc


def run_artifact_frame(
    client: MlflowClient, run_id: str, path: str, what: str, *, debug: bool = False
) -> pd.DataFrame:
    """A Parquet artifact of a training run (reference sample, test split) as a frame."""
    import pandas as pd

    from eta_cli import tracking

    with (
        tracking.fast_http(),
        tracking.quiet_stdout(debug),
        tempfile.TemporaryDirectory(prefix="eta-artifact-") as tmp,
    ):
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception as exc:
            raise ModelNotFoundError(
                f"training run {run_id} has no {what} ({path}): {first_line(exc)}"
            ) from exc
        return pd.read_parquet(local)


def reference_sample(settings: Settings, model_uri: str | None = None) -> pd.DataFrame:
    """The reference sample logged with the model's training run (for drift reports).

    Clean order columns, ``delivery_seconds``, ``order_id`` and the model's
    predictions (``eta_p50_s`` ...), up to 20,000 rows of the training split.
    """
    from eta_cli import tracking

    uri = model_uri or default_uri(settings)
    client = tracking.configure(settings)
    if "://" not in uri and ":/" not in uri:
        run_id = load_model(settings, uri).run_id
    else:
        run_id = _resolve(client, settings, uri).run_id
    if not run_id:
        raise ModelNotFoundError(f"model {uri} has no training run, so no reference sample")
    return run_artifact_frame(
        client, run_id, REFERENCE_ARTIFACT, "reference sample", debug=settings.debug
    )


# ---------------------------------------------------------------- registration


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
        if not _is_not_found(exc):
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
    run_metrics = _test_metrics(run)

    existing = (
        [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == run_id]
        if _model_exists(client, name)
        else []
    )
    if existing:
        version = str(max(int(v.version) for v in existing))
        return _already_registered(client, name, version, run_id, force, run_metrics)

    champion = _champion_version(client, name)
    candidate_loaded = load_model(settings, f"runs:/{run_id}/{MODEL_ARTIFACT}")
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
        if _is_not_found(exc):
            return False
        raise


def _champion_version(client: MlflowClient, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    if not _model_exists(client, name):
        return None
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if _is_not_found(exc):
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
    orders = run_artifact_frame(client, run_id, TEST_ARTIFACT, "test split", debug=settings.debug)
    candidate_mae = promotion.score_mae(candidate, orders)
    version = str(champion.version)
    try:
        champ = load_model(settings, f"models:/{settings.model_name}/{version}")
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
            metrics = _test_metrics(client.get_run(mv.run_id))
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
