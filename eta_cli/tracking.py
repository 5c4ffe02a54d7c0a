"""Connect to MLflow (tracking + registry) explicitly, and fail fast with a clear message.

Nothing is configured at import time: every command calls :func:`configure` with its
:class:`~eta_cli.config.Settings`, which sets the tracking and registry URIs, creates
the experiment when missing and checks that the stores are reachable. An unreachable
or misconfigured backend becomes a :class:`TrackingError` naming the (redacted) URI
and what failed, within seconds rather than after MLflow's minutes of retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from eta_cli import config
from eta_cli.config import Settings, redact_url
from eta_cli.errors import EtaError, first_line

if TYPE_CHECKING:
    import requests
    from mlflow import MlflowClient
    from mlflow.entities import Experiment

# Short limits for checks: a dead server must fail in seconds.
PROBE_TIMEOUT_S = 5
# MLflow's HTTP client retries 7 times with exponential backoff by default (minutes).
FAST_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


class TrackingError(EtaError):
    """MLflow (tracking store, registry or artifact store) is unreachable or misconfigured."""


@contextlib.contextmanager
def fast_http() -> Iterator[None]:
    """Within the block, MLflow HTTP calls do not retry for minutes (unless the user set it)."""
    with config.environment_restored(FAST_HTTP_ENV):
        for name, value in FAST_HTTP_ENV.items():
            config.export_default(name, value)
        yield


QUIET_ENV = {
    # "View run ... at" lines on stdout when a run ends on a tracking server.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # tqdm bars on stderr for every artifact download.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


# Libraries whose INFO logs and warnings are MLflow's chatter, not eta's output.
CHATTY_LIBRARIES = ("mlflow", "alembic", "optuna")


def quiet_mlflow(debug: bool = False) -> None:
    """Keep MLflow's own output out of a command's: once per process, before MLflow is used.

    Sets MLflow's log level (read when mlflow is first imported) and its artifact progress
    bars off unless the user set them, turns the ``mlflow``, ``alembic`` and ``optuna``
    loggers down to errors, and ignores the warnings raised from inside those libraries.
    Warnings of every other library, and eta's own, still show. ``debug`` (the ``debug``
    setting, ``ETA_DEBUG``) keeps everything.
    """
    import logging
    import warnings

    if debug:
        return
    config.export_default("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    config.export_default("MLFLOW_LOGGING_LEVEL", "ERROR")
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")


@contextlib.contextmanager
def quiet_stdout(debug: bool = False) -> Iterator[None]:
    """Within the block MLflow prints nothing of its own: stdout stays ours (``--json``).

    Silences the run-URL lines, artifact progress bars and MLflow's INFO/WARNING log
    chatter (errors still show); restores everything afterwards. ``debug`` (the ``debug``
    setting, ``ETA_DEBUG``) keeps it.
    """
    import logging

    if debug:
        yield
        return
    with config.environment_restored(QUIET_ENV):
        config.export(QUIET_ENV)
        logger = logging.getLogger("mlflow")
        level = logger.level
        logger.setLevel(max(level, logging.ERROR))
        try:
            yield
        finally:
            logger.setLevel(level)


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI; None for an in-memory database."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    if rest in ("", "/", "/:memory:"):
        return None
    return Path(unquote(rest[1:] if rest.startswith("/") else rest))


def _probe_sql(uri: str, role: str, create_home: Path | None) -> None:
    """Open one connection with a short timeout; a clear error instead of MLflow's retries."""
    shown = redact_url(uri)
    if uri.startswith("sqlite:"):
        path = sqlite_path(uri)
        if path is None:
            return
        if create_home is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.is_dir():
            raise TrackingError(
                f"MLflow {role} {shown}: folder {path.parent} does not exist "
                "(create it or fix MLFLOW_TRACKING_URI)"
            )
        return
    import sqlalchemy

    connect_args: dict[str, Any] = {}
    if uri.startswith(("postgresql", "mysql")):
        connect_args["connect_timeout"] = PROBE_TIMEOUT_S
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=connect_args, poolclass=None)
    except Exception as exc:  # bad URL, missing driver
        raise TrackingError(
            f"MLflow {role} {shown} is not a usable URI: {first_line(exc)}"
        ) from exc
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise TrackingError(f"cannot connect to MLflow {role} {shown}: {first_line(exc)}") from exc
    finally:
        engine.dispose()


def probe_http(uri: str, role: str) -> requests.Response:
    """GET ``<uri>/health`` of an MLflow server within :data:`PROBE_TIMEOUT_S`.

    Returns the answer (doctor also wants it to be exactly 200); raises
    :class:`TrackingError` when the server cannot be reached or answers 5xx. The
    ``requests`` exception stays the error's ``__cause__``, for hints.
    """
    import requests

    shown = redact_url(uri)
    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.Timeout as exc:
        raise TrackingError(
            f"MLflow {role} {shown} did not answer within {PROBE_TIMEOUT_S} s"
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise TrackingError(
            f"cannot connect to MLflow {role} {shown}: connection refused or host unreachable "
            "(is `mlflow server` running there?)"
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise TrackingError(f"cannot connect to MLflow {role} {shown}: {first_line(exc)}") from exc
    if response.status_code >= 500:
        raise TrackingError(
            f"MLflow {role} {shown} answered HTTP {response.status_code} on /health"
        )
    return response


def probe(uri: str, role: str = "tracking store") -> None:
    """Check quickly that an MLflow store answers; raise :class:`TrackingError` if not."""
    _probe(uri, role, None)


def _probe(uri: str, role: str, create_home: Path | None) -> None:
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        probe_http(uri, role)
    elif scheme.startswith(("sqlite", "postgresql", "mysql", "mssql")):
        _probe_sql(uri, role, create_home)
    elif scheme in ("", "file"):
        path = Path(unquote(urlsplit(uri).path)) if scheme == "file" else Path(uri)
        if create_home is None and not path.parent.is_dir():
            raise TrackingError(f"MLflow {role} {redact_url(uri)}: folder {path.parent} is missing")
    elif scheme == "databricks":
        return
    else:
        raise TrackingError(
            f"MLflow {role} {redact_url(uri)} has an unsupported scheme {scheme!r}; "
            "allowed: sqlite:///, postgresql+psycopg2://, http(s)://, a folder"
        )


def probe_s3_config() -> Any:
    """botocore settings for probes: short timeouts, no retries for minutes."""
    from botocore.config import Config

    return Config(
        connect_timeout=PROBE_TIMEOUT_S,
        read_timeout=PROBE_TIMEOUT_S,
        retries={"max_attempts": 1},
    )


def prepare_default_artifact_folder(settings: Settings, location: str) -> None:
    """Create the embedded default's artifact folder (under ETA_HOME), as MLflow will not."""
    if location.startswith("file:") and not settings.artifact_location:
        Path(unquote(urlsplit(location).path)).mkdir(parents=True, exist_ok=True)


def check_artifact_store(settings: Settings, location: str) -> None:
    """An s3:// artifact location must name an existing bucket we can reach."""
    if not location.startswith("s3://"):
        prepare_default_artifact_folder(settings, location)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    from eta_cli.storage import parse_s3, s3_client

    bucket = parse_s3(location).bucket
    client = s3_client(settings, config=probe_s3_config())
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        what = (
            "does not exist" if code in ("404", "NoSuchBucket") else f"is not accessible ({code})"
        )
        raise TrackingError(
            f"MLflow artifact location {location}: bucket {bucket!r} {what}"
        ) from exc
    except BotoCoreError as exc:
        raise TrackingError(
            f"MLflow artifact location {location}: cannot reach S3 "
            f"({settings.s3_endpoint_url or 'AWS'}): {first_line(exc)}"
        ) from exc


def _export_s3_endpoint(settings: Settings) -> None:
    """MLflow's S3 artifact repository reads MLFLOW_S3_ENDPOINT_URL, not our setting."""
    if settings.s3_endpoint_url:
        config.export_default("MLFLOW_S3_ENDPOINT_URL", settings.s3_endpoint_url)


def client_for(settings: Settings) -> MlflowClient:
    """A client for the configured URIs without any checks (cheap; for polling)."""
    import mlflow
    from mlflow import MlflowClient

    _export_s3_endpoint(settings)
    # mlflow.set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, which our own
    # settings would then read as if the user had set them: keep the environment as it was
    # (the fluent API uses the in-process value first).
    with config.environment_restored(("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")):
        mlflow.set_tracking_uri(settings.effective_tracking_uri)
        mlflow.set_registry_uri(settings.effective_registry_uri)
    return MlflowClient(settings.effective_tracking_uri, settings.effective_registry_uri)


def configure(settings: Settings, experiment_name: str | None = None) -> MlflowClient:
    """Point MLflow at the configured stores, ensure the experiment exists, check reachability.

    Returns a client bound to the tracking and registry URIs. The fluent API
    (``mlflow.start_run``, ``mlflow.pyfunc.log_model``) is pointed at the same URIs.
    """
    tracking_uri = settings.effective_tracking_uri
    registry_uri = settings.effective_registry_uri
    name = experiment_name or settings.experiment_name
    default_home = settings.home_path if not settings.tracking_uri else None
    if default_home is not None:
        default_home.mkdir(parents=True, exist_ok=True)

    _probe(tracking_uri, "tracking store", default_home)
    if registry_uri != tracking_uri:
        _probe(registry_uri, "model registry", None)

    with fast_http():
        try:
            client = client_for(settings)
            experiment, _ = ensure_experiment(client, settings, name)
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment.experiment_id)
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(
                f"MLflow tracking store {redact_url(tracking_uri)} failed: {first_line(exc)}"
            ) from exc
    check_artifact_store(settings, experiment.artifact_location or "")
    return client


def ensure_experiment(
    client: MlflowClient, settings: Settings, name: str | None = None
) -> tuple[Experiment, bool]:
    """The experiment, created (with the configured artifact location) when missing.

    Returns it and whether it was created now; a deleted experiment is returned as it
    is (:func:`configure` restores it, doctor only reports it).
    """
    name = name or settings.experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment, False
    location = settings.effective_artifact_location or None
    if location:
        prepare_default_artifact_folder(settings, location)
    try:
        client.create_experiment(name, artifact_location=location)
    except Exception:
        if client.get_experiment_by_name(name) is None:  # not just created concurrently
            raise
    return client.get_experiment_by_name(name), True


def experiment_id(client: MlflowClient, settings: Settings, name: str | None = None) -> str:
    """The id of the (already configured) experiment."""
    experiment = client.get_experiment_by_name(name or settings.experiment_name)
    if experiment is None:
        raise TrackingError(f"experiment {name or settings.experiment_name!r} does not exist")
    return experiment.experiment_id
