"""``eta doctor``: check that every part a deployment needs works, one row per part.

Checks, in order: configuration, MLflow tracking, the backend database (direct
``postgresql+psycopg2://`` tracking URIs only), the artifact store, the S3 bucket,
the registered model and its ``champion`` alias, the monitoring database and its
schema, free disk under ``ETA_HOME``. A check either passes, fails with a message
naming the component and a hint, is ``n/a`` (it does not apply to this setup, and
says why) or is ``not run`` (a check it depends on failed; counts as a failure).

Every network call has a short timeout, and every check runs in a worker thread with
a deadline, so a stopped or hung server costs seconds, never a hang. Doctor changes
nothing except what any eta command would do on first use (the embedded default's
folders, the MLflow experiment), probe objects it deletes again, and, only with
``fix=True``, a missing monitoring schema.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from eta_cli.config import ENV_VARS, ConfigError, Settings, redact_url
from eta_cli.errors import EtaError, first_line

PASS = "pass"
FAIL = "fail"
NOT_APPLICABLE = "n/a"
NOT_RUN = "not run"
OK_STATUSES = (PASS, NOT_APPLICABLE)

# Network timeout of each probe (connect and read), seconds.
PROBE_TIMEOUT_S = 5
# Deadline of one check, seconds: a backstop above the probe timeouts (imports of MLflow
# and a model download count too). The model check gets MODEL_TIMEOUT_FACTOR times as long.
DEFAULT_CHECK_TIMEOUT_S = 30.0
MODEL_TIMEOUT_FACTOR = 4
DEFAULT_MIN_FREE_GIB = 1.0
PROBE_DIR = ".eta-doctor"

CHECKS: tuple[tuple[str, str], ...] = (
    ("config", "configuration"),
    ("tracking", "MLflow tracking"),
    ("backend_db", "backend database"),
    ("artifact_store", "artifact store"),
    ("s3_bucket", "S3 bucket"),
    ("model", "champion model"),
    ("monitoring_db", "monitoring database"),
    ("disk", "disk space"),
)
TITLES = dict(CHECKS)
_SERVER_DB_SCHEMES = ("postgresql", "mysql", "mssql", "oracle")
_DB_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mssql": "SQL Server"}


@dataclass
class CheckResult:
    """The outcome of one check, for the table and ``--json``."""

    name: str
    status: str
    detail: str
    hint: str = ""
    duration_s: float = 0.0

    @property
    def title(self) -> str:
        return TITLES.get(self.name, self.name)

    @property
    def ok(self) -> bool:
        """Passed, or does not apply here; ``fail`` and ``not run`` are not ok."""
        return self.status in OK_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "ok": self.ok,
            "detail": self.detail,
            "hint": self.hint,
            "duration_s": round(self.duration_s, 3),
        }


class _Failed(Exception):
    """The component failed: ``detail`` names it and what is wrong, ``hint`` what to do."""

    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


@dataclass
class _Verdict:
    status: str
    detail: str
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _State:
    """What later checks need from earlier ones."""

    settings: Settings | None = None
    tracking_ok: bool = False
    experiment: Any = None


def all_ok(results: list[CheckResult]) -> bool:
    return all(result.ok for result in results)


def to_dict(results: list[CheckResult], profile: str | None = None) -> dict[str, Any]:
    """The ``--json`` object: overall ``ok``, the profile and every check in order."""
    return {
        "ok": all_ok(results),
        "profile": profile,
        "failed": [r.name for r in results if not r.ok],
        "duration_s": round(sum(r.duration_s for r in results), 3),
        "checks": [r.to_dict() for r in results],
    }


def run_checks(
    settings: Settings | Callable[[], Settings],
    *,
    min_free_gib: float = DEFAULT_MIN_FREE_GIB,
    fix: bool = False,
    timeout_s: float = DEFAULT_CHECK_TIMEOUT_S,
) -> list[CheckResult]:
    """Run every check in order and return one result per check (never raises).

    ``settings`` may be a function that builds them, so that a configuration error
    becomes the first check's failure instead of an exception. ``fix`` lets the
    monitoring check create a missing schema (what ``eta serve`` does on first use).
    """
    state = _State()
    results: list[CheckResult] = []

    def record(name: str, check: Callable[[], _Verdict], limit: float = timeout_s) -> _Verdict:
        verdict, seconds = _run_bounded(check, limit)
        results.append(CheckResult(name, verdict.status, verdict.detail, verdict.hint, seconds))
        return verdict

    verdict = record("config", lambda: _check_config(settings))
    state.settings = verdict.data.get("settings")
    if state.settings is None:
        for name, _ in CHECKS[1:]:
            results.append(
                CheckResult(name, NOT_RUN, "the configuration did not load", "fix it first")
            )
        return results
    current = state.settings

    verdict = record("tracking", lambda: _check_tracking(current))
    state.tracking_ok = verdict.status == PASS
    state.experiment = verdict.data.get("experiment")
    record("backend_db", lambda: _check_backend_db(current))
    record("artifact_store", lambda: _check_artifact_store(current, state))
    record("s3_bucket", lambda: _check_s3_bucket(current))
    record("model", lambda: _check_model(current, state), timeout_s * MODEL_TIMEOUT_FACTOR)
    record("monitoring_db", lambda: _check_monitoring(current, fix))
    record("disk", lambda: _check_disk(current, min_free_gib))
    return results


# ---------------------------------------------------------------- running one check


def _run_bounded(check: Callable[[], _Verdict], timeout_s: float) -> tuple[_Verdict, float]:
    """Run ``check`` in a daemon thread; past ``timeout_s`` it is abandoned and fails."""
    box: dict[str, _Verdict] = {}

    def target() -> None:
        try:
            box["verdict"] = check()
        except _Failed as failed:
            box["verdict"] = _Verdict(FAIL, failed.detail, failed.hint)
        except EtaError as exc:
            box["verdict"] = _Verdict(
                FAIL, str(exc), "`eta config show` lists the settings in use and their sources"
            )
        except Exception as exc:  # a check must never end doctor with a traceback
            if os.environ.get("ETA_DEBUG"):
                traceback.print_exc()
            box["verdict"] = _Verdict(
                FAIL,
                f"unexpected {type(exc).__name__}: {first_line(exc)}",
                "set ETA_DEBUG=1 for the traceback",
            )

    start = time.perf_counter()
    worker = threading.Thread(target=target, name="eta-doctor-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    seconds = time.perf_counter() - start
    if worker.is_alive():
        return (
            _Verdict(
                FAIL,
                f"did not finish within {timeout_s:g} s",
                "a server accepts connections but does not answer; "
                "raise the limit with --timeout if it is only slow",
            ),
            seconds,
        )
    verdict = box.get("verdict") or _Verdict(
        FAIL, "the check stopped without a result", "set ETA_DEBUG=1 and run again"
    )
    return verdict, seconds


def _env_name(setting: str) -> str:
    return ENV_VARS[setting][0]


# ---------------------------------------------------------------- 1. configuration


def _profile_file(settings: Settings) -> str:
    for source in settings.sources.values():
        if source.startswith("profile "):
            return source[len("profile ") :]
    return "built-in defaults"


def _check_config(settings: Settings | Callable[[], Settings]) -> _Verdict:
    try:
        loaded = settings() if callable(settings) else settings
    except ConfigError as exc:
        raise _Failed(
            str(exc),
            "fix that setting in the environment (.env) or configs/<profile>.toml; "
            ".env.example documents every variable",
        ) from exc
    ok = _Verdict(
        PASS,
        f"profile {loaded.profile} ({_profile_file(loaded)}), home {loaded.home_path}",
        data={"settings": loaded},
    )
    if loaded.profile != "aws":
        return ok
    defaults = []
    if not loaded.tracking_uri:
        defaults.append(f"tracking_uri ({loaded.effective_tracking_uri})")
    if not loaded.data_uri:
        defaults.append(f"data_uri ({loaded.effective_data_uri})")
    if not loaded.database_url:
        defaults.append(f"database_url ({loaded.effective_database_url})")
    if not loaded.s3_bucket:
        defaults.append("s3_bucket (not set)")
    if not defaults:
        return ok
    names = [item.split(" ", 1)[0] for item in defaults]
    return _Verdict(
        FAIL,
        f"profile aws, but {', '.join(defaults)} still "
        f"{'falls' if len(defaults) == 1 else 'fall'} back to the local default",
        f"set {', '.join(_env_name(n) for n in names)} (see .env.example; "
        "docker/compose.yaml builds them from .env)",
        data={"settings": loaded},
    )


# ---------------------------------------------------------------- databases (shared)


def _scheme(uri: str) -> str:
    return urlsplit(uri).scheme.lower()


def _backend(uri: str) -> str:
    return _scheme(uri).split("+", 1)[0]


def _is_server_db(uri: str) -> bool:
    return _backend(uri) in _SERVER_DB_SCHEMES


def _db_hint(reason: str, env: str) -> str:
    """What to do about a failed database connection, from the driver's message."""
    low = reason.lower()
    if (
        "password authentication failed" in low
        or ("role" in low and "does not exist" in low)
        or "access denied" in low
        or "no password supplied" in low
    ):
        return f"check the user and password in {env}"
    if "database" in low and "does not exist" in low:
        return f"create the database, or fix its name in {env}"
    if "timeout" in low or "timed out" in low:
        return (
            f"no answer within {PROBE_TIMEOUT_S} s: check the host and port in {env} and that "
            "the network (security group) lets this machine reach the server"
        )
    if "refused" in low or "translate host name" in low or "not known" in low:
        return f"is the database server running at the host and port of {env}?"
    if "ssl" in low:
        return f"check sslmode in {env} (require for RDS, disable for the local container)"
    return f"check {env}"


def _db_connect(uri: str, what: str, env: str) -> tuple[str, str | None]:
    """One connection with a short timeout: the server's name and version, MLflow's revision."""
    import sqlalchemy as sa

    shown = redact_url(uri)
    connect_args: dict[str, Any] = {}
    if _backend(uri) in ("postgresql", "mysql"):
        connect_args["connect_timeout"] = PROBE_TIMEOUT_S
    try:
        engine = sa.create_engine(uri, connect_args=connect_args, poolclass=sa.pool.NullPool)
    except Exception as exc:  # bad URL, missing driver
        raise _Failed(
            f"{what} {shown} is not a usable URL: {first_line(exc)}", f"fix {env}"
        ) from exc
    try:
        with engine.connect() as conn:
            info = conn.dialect.server_version_info or ()
            revision = None
            if sa.inspect(conn).has_table("alembic_version"):
                revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.SQLAlchemyError as exc:
        reason = first_line(exc)
        raise _Failed(f"cannot connect to {what} {shown}: {reason}", _db_hint(reason, env)) from exc
    finally:
        engine.dispose()
    name = _DB_NAMES.get(_backend(uri), _backend(uri))
    version = ".".join(str(part) for part in info[:2])
    return f"{name} {version}".strip(), revision


# ---------------------------------------------------------------- 2. MLflow tracking


def _probe_http(uri: str, what: str, env: str) -> str:
    import requests

    shown = redact_url(uri)
    base = uri.rstrip("/")
    try:
        response = requests.get(f"{base}/health", timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.Timeout as exc:
        raise _Failed(
            f"{what} {shown} did not answer within {PROBE_TIMEOUT_S} s",
            f"is the server overloaded, or a firewall dropping packets? Check {env}",
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise _Failed(
            f"cannot connect to {what} {shown}: connection refused or host unreachable",
            f"start the MLflow server (compose: `docker compose ... up -d mlflow`, then "
            f"`... logs mlflow`) or fix {env}",
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise _Failed(f"cannot connect to {what} {shown}: {first_line(exc)}", f"fix {env}") from exc
    if response.status_code != 200:
        raise _Failed(
            f"{what} {shown} answered HTTP {response.status_code} on /health",
            "an MLflow server answers 200; 403 means the Host header is not allowed "
            "(MLFLOW_SERVER_ALLOWED_HOSTS)",
        )
    version = ""
    try:
        reply = requests.get(f"{base}/version", timeout=PROBE_TIMEOUT_S)
        if reply.status_code == 200 and len(reply.text) < 40:
            version = f" {reply.text.strip()}"
    except requests.exceptions.RequestException:
        pass
    return f"MLflow server{version} at {shown}"


def _sqlite_path(uri: str) -> Path | None:
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    if rest in ("", "/", "/:memory:"):
        return None
    return Path(unquote(rest[1:] if rest.startswith("/") else rest))


def _probe_store(settings: Settings, uri: str, role: str, setting: str) -> str:
    """Reach an MLflow tracking store or registry quickly; describe it or raise _Failed."""
    env = _env_name(setting)
    what = f"MLflow {role} store"
    shown = redact_url(uri)
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        return _probe_http(uri, f"MLflow {role} server", env)
    if scheme.startswith("sqlite"):
        path = _sqlite_path(uri)
        if path is None:
            return f"in-memory SQLite store ({shown})"
        if not getattr(settings, setting):  # the embedded default: created like any command does
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.is_dir():
            raise _Failed(
                f"{what} {shown}: folder {path.parent} does not exist",
                f"create the folder or fix {env}",
            )
        default = " (embedded default)" if not getattr(settings, setting) else ""
        return f"SQLite store {path}{default}"
    if _is_server_db(uri):
        label, _ = _db_connect(uri, f"MLflow {role} database", env)
        return f"{label} store {shown}"
    if scheme in ("", "file"):
        path = Path(unquote(urlsplit(uri).path)) if scheme == "file" else Path(uri)
        if not path.parent.is_dir():
            raise _Failed(f"{what} {shown}: folder {path.parent} is missing", f"fix {env}")
        return f"file store {path}"
    if scheme == "databricks":
        return f"Databricks ({shown})"
    raise _Failed(
        f"{what} {shown} has an unsupported scheme {scheme!r}",
        f"use sqlite:///, postgresql+psycopg2://, http(s):// or a folder in {env}",
    )


def _create_experiment(client: Any, settings: Settings) -> Any:
    """Create the experiment as every eta command does on first use (tracking.configure)."""
    name = settings.experiment_name
    location = settings.effective_artifact_location or None
    if location and location.startswith("file:") and not settings.artifact_location:
        Path(unquote(urlsplit(location).path)).mkdir(parents=True, exist_ok=True)
    try:
        client.create_experiment(name, artifact_location=location)
    except Exception:
        if client.get_experiment_by_name(name) is None:  # not just created concurrently
            raise
    return client.get_experiment_by_name(name)


def _check_tracking(settings: Settings) -> _Verdict:
    from eta_cli import tracking

    uri = settings.effective_tracking_uri
    described = _probe_store(settings, uri, "tracking", "tracking_uri")
    if settings.effective_registry_uri != uri:
        registry = _probe_store(
            settings, settings.effective_registry_uri, "registry", "registry_uri"
        )
        described = f"{described}; registry: {registry}"
    name = settings.experiment_name
    created = False
    with tracking.fast_http():
        try:
            client = tracking.client_for(settings)
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                experiment = _create_experiment(client, settings)
                created = True
        except Exception as exc:
            raise _Failed(
                f"MLflow tracking store {redact_url(uri)} failed: {first_line(exc)}",
                f"check {_env_name('tracking_uri')} (an old database may need "
                "`mlflow db upgrade <uri>`)",
            ) from exc
    state = " created now" if created else ""
    if experiment.lifecycle_stage == "deleted":
        state = " deleted (the next `eta train` restores it)"
    detail = f"{described}; experiment {name!r} (id {experiment.experiment_id}){state}"
    return _Verdict(PASS, detail, data={"experiment": experiment})


# ---------------------------------------------------------------- 3. backend database


def _check_backend_db(settings: Settings) -> _Verdict:
    stores = [("tracking_uri", "tracking", settings.effective_tracking_uri)]
    if settings.effective_registry_uri != settings.effective_tracking_uri:
        stores.append(("registry_uri", "registry", settings.effective_registry_uri))
    direct = [store for store in stores if _is_server_db(store[2])]
    if not direct:
        uri = settings.effective_tracking_uri
        scheme = _scheme(uri)
        if scheme in ("http", "https"):
            reason = f"tracking goes through the MLflow server {redact_url(uri)}, which owns its DB"
        elif scheme.startswith("sqlite"):
            reason = "the tracking store is a SQLite file, not a database server"
        else:
            reason = f"the tracking store {redact_url(uri)} is not a database server"
        return _Verdict(NOT_APPLICABLE, reason)
    parts = []
    for setting, role, uri in direct:
        label, revision = _db_connect(uri, f"MLflow {role} backend database", _env_name(setting))
        schema = f"MLflow schema {revision}" if revision else "no MLflow schema yet"
        parts.append(f"{label} at {redact_url(uri)}, {schema}")
    return _Verdict(PASS, "; ".join(parts))


# ---------------------------------------------------------------- 4. artifact store, S3


def _normalise_location(location: str) -> str:
    location = location.rstrip("/")
    scheme = _scheme(location)
    if scheme in ("", "file"):
        path = unquote(urlsplit(location).path) if scheme == "file" else location
        return Path(path).expanduser().resolve().as_uri()
    return location


def _aws_credentials_source(settings: Settings) -> str:
    if settings.aws_profile:
        return f"AWS_PROFILE={settings.aws_profile}"
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    return "the instance profile or ~/.aws"


def _probe_s3(settings: Settings, target: Any, what: str) -> str:
    """Write and delete ``<prefix>/.eta-doctor/<uuid>``; name the failure precisely."""
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    from eta_cli import storage

    bucket = target.bucket
    prefix = target.key.strip("/")
    key = target.child(PROBE_DIR, uuid.uuid4().hex).key
    place = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    subject = f"{what} {place}"
    where = settings.s3_endpoint_url or f"AWS S3 ({settings.aws_region or 'default region'})"
    client = storage.s3_client(
        settings,
        config=Config(
            connect_timeout=PROBE_TIMEOUT_S,
            read_timeout=PROBE_TIMEOUT_S,
            retries={"mode": "standard", "total_max_attempts": 2},
        ),
    )
    step = "write"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"eta doctor probe; safe to delete\n")
        step = "delete"
        client.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        leftover = f" (remove s3://{bucket}/{key} by hand)" if step == "delete" else ""
        if code in ("NoSuchBucket", "404", "NotFound"):
            raise _Failed(
                f"{subject}: bucket {bucket!r} does not exist at {where}",
                "create the bucket (Terraform on AWS, minio-init locally) or fix the bucket name",
            ) from exc
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            raise _Failed(
                f"{subject}: access denied to {step} s3://{bucket}/{key} at {where}{leftover}",
                f"the AWS credentials ({_aws_credentials_source(settings)}) need s3:PutObject "
                f"and s3:DeleteObject on arn:aws:s3:::{bucket}/*",
            ) from exc
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            raise _Failed(
                f"{subject}: S3 at {where} rejected the credentials ({code})",
                f"check {_aws_credentials_source(settings)}; on EC2 leave the keys empty "
                "so the instance profile is used",
            ) from exc
        message = error.get("Message") or first_line(exc)
        raise _Failed(
            f"{subject}: cannot {step} s3://{bucket}/{key} at {where}: {code} {message}{leftover}",
            "check the bucket and the credentials",
        ) from exc
    except NoCredentialsError as exc:
        raise _Failed(
            f"{subject}: no AWS credentials found",
            "use the EC2 instance profile, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (the local MinIO stack)",
        ) from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        if settings.s3_endpoint_url:
            hint = (
                f"is the S3-compatible server at {settings.s3_endpoint_url} running "
                "(AWS_ENDPOINT_URL_S3; local stack: MinIO)? On AWS leave it empty"
            )
        else:
            hint = "check this machine's route to S3 (NAT or VPC endpoint) and AWS_REGION"
        raise _Failed(f"{subject}: cannot reach S3 at {where}: {first_line(exc)}", hint) from exc
    except BotoCoreError as exc:
        raise _Failed(
            f"{subject}: S3 at {where} failed: {first_line(exc)}", "check the AWS settings"
        ) from exc
    return f"wrote and deleted a probe object under {place}/{PROBE_DIR}/ ({where})"


def _probe_folder(path: Path, what: str, env: str) -> str:
    if not path.is_dir():
        raise _Failed(f"{what} {path} does not exist", f"create it or fix {env}")
    probe = path / PROBE_DIR / uuid.uuid4().hex
    try:
        probe.parent.mkdir(exist_ok=True)
        probe.write_bytes(b"eta doctor probe; safe to delete\n")
        probe.unlink()
    except OSError as exc:
        raise _Failed(
            f"cannot write to {what} {path}: {exc.strerror or exc}",
            "check the folder's owner and permissions (the image runs as uid 10001)",
        ) from exc
    with contextlib.suppress(OSError):  # another doctor's probe may still be in there
        probe.parent.rmdir()
    return f"wrote and deleted a probe file in {path}"


def _probe_mlflow_repository(settings: Settings, root: str) -> str:
    """Through MLflow itself, for roots doctor cannot write directly (mlflow-artifacts:/)."""
    import tempfile

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from eta_cli import tracking

    tracking.client_for(settings)  # mlflow-artifacts:/ resolves against the tracking URI
    name = uuid.uuid4().hex
    with tracking.fast_http(), tempfile.TemporaryDirectory(prefix="eta-doctor-") as tmp:
        local = Path(tmp) / name
        local.write_bytes(b"eta doctor probe; safe to delete\n")
        try:
            repository = get_artifact_repository(root)
            repository.log_artifact(str(local), PROBE_DIR)
            repository.delete_artifacts(f"{PROBE_DIR}/{name}")
        except Exception as exc:
            raise _Failed(
                f"artifact store {root}: cannot write and delete through MLflow: {first_line(exc)}",
                "a server behind mlflow-artifacts:/ must run with --serve-artifacts and reach "
                "its artifact destination (see its logs)",
            ) from exc
    return f"wrote and deleted a probe under {root}/{PROBE_DIR}/ through MLflow"


def _check_artifact_store(settings: Settings, state: _State) -> _Verdict:
    from eta_cli import storage

    env = _env_name("artifact_location")
    experiment = state.experiment
    if experiment is not None:
        root = experiment.artifact_location or ""
        wanted = settings.artifact_location
        if wanted and _normalise_location(wanted) != _normalise_location(root):
            raise _Failed(
                f"experiment {settings.experiment_name!r} keeps its artifacts in {root}, not in "
                f"{wanted} ({settings.sources.get('artifact_location', 'setting')}): MLflow "
                "fixes an experiment's artifact location when it is created",
                f"use a new experiment ({_env_name('experiment_name')}=...) or unset {env}",
            )
    elif settings.effective_artifact_location:
        root = settings.effective_artifact_location  # tracking failed; the location is known
    else:
        return _Verdict(
            NOT_RUN,
            "the tracking server chooses the artifact location, and it did not answer",
            "fix the MLflow tracking row first",
        )
    if not root:
        raise _Failed(
            f"experiment {settings.experiment_name!r} has no artifact location",
            f"create a new experiment ({_env_name('experiment_name')}=...)",
        )
    scheme = _scheme(root)
    if storage.is_s3(root):
        detail = _probe_s3(settings, storage.parse_s3(root), "artifact store")
    elif scheme in ("", "file"):
        path = Path(unquote(urlsplit(root).path)) if scheme == "file" else Path(root)
        derived = settings.effective_artifact_location
        if not settings.artifact_location and _normalise_location(root) == _normalise_location(
            derived
        ):
            path.mkdir(parents=True, exist_ok=True)  # under ETA_HOME, as any command creates it
        detail = _probe_folder(path, "artifact folder", env)
    else:
        detail = _probe_mlflow_repository(settings, root)
    return _Verdict(PASS, detail)


def _check_s3_bucket(settings: Settings) -> _Verdict:
    from eta_cli import storage

    targets = []
    if settings.s3_bucket:
        targets.append(("S3 bucket", storage.S3Uri(settings.s3_bucket, settings.s3_prefix)))
    data = settings.effective_data_uri
    if storage.is_s3(data):
        parsed = storage.parse_s3(data)
        if parsed.bucket != settings.s3_bucket:
            targets.append(("data lake", parsed))
    if not targets:
        return _Verdict(
            NOT_APPLICABLE,
            f"no S3 bucket configured ({_env_name('s3_bucket')} is empty) and the data lake "
            f"is local ({data})",
        )
    return _Verdict(PASS, "; ".join(_probe_s3(settings, uri, what) for what, uri in targets))


# ---------------------------------------------------------------- 5. model


def _check_model(settings: Settings, state: _State) -> _Verdict:
    if not state.tracking_ok:
        return _Verdict(
            NOT_RUN,
            "MLflow tracking is not reachable (see above)",
            "fix the MLflow tracking row first",
        )
    from eta_cli import registry, tracking

    name = settings.model_name
    shown = redact_url(settings.effective_registry_uri)
    with tracking.fast_http():
        client = tracking.client_for(settings)
        try:
            found = client.search_registered_models(filter_string=f"name = '{name}'")
            model = next((m for m in found if m.name == name), None)
            versions = (
                sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
                if model is not None
                else []
            )
        except Exception as exc:
            raise _Failed(
                f"model registry {shown} failed: {first_line(exc)}",
                f"check {_env_name('registry_uri')} / {_env_name('tracking_uri')}",
            ) from exc
    if model is None:
        raise _Failed(
            f"no registered model {name!r} in registry {shown}",
            "train and register one: `eta train`, then `eta register`",
        )
    champion = (model.aliases or {}).get(registry.CHAMPION)
    if champion is None:
        latest = versions[-1] if versions else None
        raise _Failed(
            f"model {name!r} has {len(versions)} version(s) but no {registry.CHAMPION!r} alias",
            f"promote one: `eta register --promote {latest}`"
            if latest
            else "`eta train`, then `eta register`",
        )
    try:
        loaded = registry.load_model(settings)
    except registry.ModelNotFoundError as exc:
        raise _Failed(
            f"champion v{champion} of {name!r} does not load: {exc}",
            "roll back with `eta register --promote <version>` or register a new model",
        ) from exc
    except tracking.TrackingError as exc:
        raise _Failed(
            f"champion v{champion} of {name!r} cannot be fetched: {exc}",
            "see the artifact store row: the model's files must be readable",
        ) from exc
    facts = [f"{name} v{loaded.version} @{registry.CHAMPION} loads"]
    if loaded.run_id:
        facts.append(f"run {loaded.run_id}")
    if loaded.trained_at:
        facts.append(f"trained {loaded.trained_at}")
    mae = loaded.metrics.get("test_mae", loaded.metrics.get("mae"))
    if mae is not None:
        facts.append(f"test MAE {mae:.0f} s")
    return _Verdict(PASS, ", ".join(facts))


# ---------------------------------------------------------------- 6. monitoring database


def _check_monitoring(settings: Settings, fix: bool) -> _Verdict:
    import sqlalchemy as sa

    from eta_cli.monitor import database

    url = settings.effective_database_url
    shown = redact_url(url)
    env = _env_name("database_url")
    subject = f"monitoring database {shown}"
    try:
        engine = database.make_engine(url)
    except Exception as exc:
        raise _Failed(f"{subject} is not a usable URL: {first_line(exc)}", f"fix {env}") from exc
    try:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            version = database.current_schema_version(engine)
            inspector = sa.inspect(engine)
            missing = [t for t in database.metadata.tables if not inspector.has_table(t)]
        except sa.exc.SQLAlchemyError as exc:
            reason = first_line(exc)
            raise _Failed(f"cannot connect to {subject}: {reason}", _db_hint(reason, env)) from exc
        target = database.SCHEMA_VERSION
        if version is not None and version < target:
            raise _Failed(
                f"{subject} has schema v{version}, older than this eta's v{target}",
                "there is no automatic migration: back up the tables, drop them and run "
                "`eta doctor --fix`, or run the eta release that created them",
            )
        if version is not None and version > target:
            raise _Failed(
                f"{subject} has schema v{version}, newer than this eta's v{target}",
                "upgrade eta to the release that created the schema",
            )
        if version is None or missing:
            what = "no eta schema yet" if version is None else f"no table {', '.join(missing)}"
            if not fix:
                raise _Failed(
                    f"{subject} has {what}",
                    "created on first use by `eta serve` / `eta drift-report`; "
                    "`eta doctor --fix` creates it now",
                )
            database.ensure_schema(engine)
            return _Verdict(PASS, f"{subject}: had {what}; created schema v{target} (--fix)")
        return _Verdict(PASS, f"{subject}, schema v{version}")
    finally:
        engine.dispose()


# ---------------------------------------------------------------- 7. disk


def _check_disk(settings: Settings, min_free_gib: float) -> _Verdict:
    home = settings.home_path
    existing = home
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = shutil.disk_usage(existing)
    free = usage.free / 2**30
    total = usage.total / 2**30
    if free < min_free_gib:
        raise _Failed(
            f"only {free:.1f} GiB free on the disk of ETA_HOME {home}, below the "
            f"{min_free_gib:g} GiB minimum",
            "free space (old reports and pipeline logs under ETA_HOME) or move ETA_HOME to a "
            "larger volume; --min-free-gib sets the threshold",
        )
    return _Verdict(
        PASS,
        f"{free:.1f} GiB free of {total:.1f} GiB on the disk of ETA_HOME {home} "
        f"(minimum {min_free_gib:g} GiB)",
    )
