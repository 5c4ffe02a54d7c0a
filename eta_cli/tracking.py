"""Connect to MLflow (tracking + registry) explicitly, and fail fast with a clear message.

Nothing is configured at import time: every command calls :func:`configure` with its
:class:`~eta_cli.config.Settings`, which sets the tracking and registry URIs, creates
the experiment when missing and checks that the stores are reachable. An unreachable
or misconfigured backend becomes a :class:`TrackingError` naming the (redacted) URI
and what failed, within seconds rather than after MLflow's minutes of retries.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from eta_cli.config import Settings, redact_url
from eta_cli.errors import EtaError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Short limits for checks: a dead server must fail in seconds.
PROBE_TIMEOUT_S = 5
# MLflow's HTTP client retries 7 times with exponential backoff by default (minutes).
FAST_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


class TrackingError(EtaError):
    """MLflow (tracking store, registry or artifact store) is unreachable or misconfigured."""


def _reason(exc: BaseException) -> str:
    """The first meaningful line of an exception, for a one-line message."""
    orig = getattr(exc, "orig", None)  # sqlalchemy wraps the driver's error
    text = str(orig if orig is not None else exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:300]
    return type(exc).__name__


@contextlib.contextmanager
def fast_http() -> Iterator[None]:
    """Within the block, MLflow HTTP calls do not retry for minutes (unless the user set it)."""
    saved = {name: os.environ.get(name) for name in FAST_HTTP_ENV}
    for name, value in FAST_HTTP_ENV.items():
        if saved[name] is None:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


QUIET_ENV = {
    # "View run ... at" lines on stdout when a run ends on a tracking server.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # tqdm bars on stderr for every artifact download.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Within the block MLflow prints nothing of its own: stdout stays ours (``--json``).

    Silences the run-URL lines, artifact progress bars and MLflow's INFO/WARNING log
    chatter (errors still show); restores everything afterwards. ``ETA_DEBUG=1`` keeps it.
    """
    import logging

    if os.environ.get("ETA_DEBUG"):
        yield
        return
    saved = {name: os.environ.get(name) for name in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _sqlite_path(uri: str) -> Path | None:
    rest = uri[len("sqlite://") :]
    if rest in ("", "/", "/:memory:"):
        return None
    return Path(unquote(rest[1:] if rest.startswith("/") else rest))


def _probe_sql(uri: str, role: str, create_home: Path | None) -> None:
    """Open one connection with a short timeout; a clear error instead of MLflow's retries."""
    shown = redact_url(uri)
    if uri.startswith("sqlite:"):
        path = _sqlite_path(uri)
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
        raise TrackingError(f"MLflow {role} {shown} is not a usable URI: {_reason(exc)}") from exc
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise TrackingError(f"cannot connect to MLflow {role} {shown}: {_reason(exc)}") from exc
    finally:
        engine.dispose()


def _probe_http(uri: str, role: str) -> None:
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
        raise TrackingError(f"cannot connect to MLflow {role} {shown}: {_reason(exc)}") from exc
    if response.status_code >= 500:
        raise TrackingError(
            f"MLflow {role} {shown} answered HTTP {response.status_code} on /health"
        )


def probe(uri: str, role: str = "tracking store") -> None:
    """Check quickly that an MLflow store answers; raise :class:`TrackingError` if not."""
    _probe(uri, role, None)


def _probe(uri: str, role: str, create_home: Path | None) -> None:
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        _probe_http(uri, role)
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


def _check_artifact_store(settings: Settings, location: str) -> None:
    """An s3:// artifact location must name an existing bucket we can reach."""
    if not location.startswith("s3://"):
        if location.startswith("file:") and settings.artifact_location == "":
            Path(unquote(urlsplit(location).path)).mkdir(parents=True, exist_ok=True)
        return
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from eta_cli.storage import parse_s3

    bucket = parse_s3(location).bucket
    session = boto3.session.Session(
        profile_name=settings.aws_profile or None, region_name=settings.aws_region or None
    )
    client = session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        config=Config(
            connect_timeout=PROBE_TIMEOUT_S,
            read_timeout=PROBE_TIMEOUT_S,
            retries={"max_attempts": 1},
        ),
    )
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
            f"({settings.s3_endpoint_url or 'AWS'}): {_reason(exc)}"
        ) from exc


def _export_s3_endpoint(settings: Settings) -> None:
    """MLflow's S3 artifact repository reads MLFLOW_S3_ENDPOINT_URL, not our setting."""
    if settings.s3_endpoint_url and not os.environ.get("MLFLOW_S3_ENDPOINT_URL"):
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url


def client_for(settings: Settings) -> MlflowClient:
    """A client for the configured URIs without any checks (cheap; for polling)."""
    import mlflow
    from mlflow import MlflowClient

    _export_s3_endpoint(settings)
    # mlflow.set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, which our own
    # settings would then read as if the user had set them: keep the environment as it was
    # (the fluent API uses the in-process value first).
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        mlflow.set_tracking_uri(settings.effective_tracking_uri)
        mlflow.set_registry_uri(settings.effective_registry_uri)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
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
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                location = settings.effective_artifact_location or None
                if location and location.startswith("file:") and not settings.artifact_location:
                    Path(unquote(urlsplit(location).path)).mkdir(parents=True, exist_ok=True)
                try:
                    client.create_experiment(name, artifact_location=location)
                except Exception:
                    # Another process may have created it in between.
                    if client.get_experiment_by_name(name) is None:
                        raise
                experiment = client.get_experiment_by_name(name)
            elif experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment.experiment_id)
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(
                f"MLflow tracking store {redact_url(tracking_uri)} failed: {_reason(exc)}"
            ) from exc
    _check_artifact_store(settings, experiment.artifact_location or "")
    return client


def experiment_id(client: MlflowClient, settings: Settings, name: str | None = None) -> str:
    """The id of the (already configured) experiment."""
    experiment = client.get_experiment_by_name(name or settings.experiment_name)
    if experiment is None:
        raise TrackingError(f"experiment {name or settings.experiment_name!r} does not exist")
    return experiment.experiment_id
