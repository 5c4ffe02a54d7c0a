"""The model registry: load a model by URI, resolve an alias to its version.

Models are registered under ``settings.model_name`` with MLflow *aliases*
(``champion``, ``challenger``), never the deprecated stages. Serving, batch
scoring and drift reports load :class:`~eta_cli.model.EtaModel` directly from the
``model_dir`` artifact of the logged pyfunc model (no pyfunc predict on the hot path).
Registering a run and moving the aliases is :mod:`eta_cli.registration`.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli.config import Settings, redact_url
from eta_cli.errors import EtaError, first_line
from eta_cli.promotion import CHAMPION

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


def is_not_found(exc: BaseException) -> bool:
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
                if is_not_found(exc):
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
                if is_not_found(exc):
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
        if is_not_found(exc):
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


def run_test_metrics(run: Any) -> dict[str, float]:
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
        metrics = run_test_metrics(client.get_run(resolved.run_id))
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
            if is_not_found(exc):
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
