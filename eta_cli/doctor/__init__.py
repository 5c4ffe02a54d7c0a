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

import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from eta_cli import tracking
from eta_cli.config import ConfigError, Settings, redact_url
from eta_cli.doctor.outcome import (
    CHECKS,
    DEFAULT_CHECK_TIMEOUT_S,
    DEFAULT_MIN_FREE_GIB,
    FAIL,
    MODEL_TIMEOUT_FACTOR,
    NOT_APPLICABLE,
    NOT_RUN,
    OK_STATUSES,
    PASS,
    PROBE_TIMEOUT_S,
    TITLES,
    CheckResult,
    Failed,
    Verdict,
    all_ok,
    env_name,
    scheme_of,
    to_dict,
)
from eta_cli.doctor.storage import check_artifact_store, check_s3_bucket
from eta_cli.errors import EtaError, first_line
from eta_cli.redact import redact_text

__all__ = [
    "CHECKS",
    "FAIL",
    "NOT_APPLICABLE",
    "NOT_RUN",
    "OK_STATUSES",
    "PASS",
    "TITLES",
    "CheckResult",
    "Verdict",
    "all_ok",
    "run_bounded",
    "run_checks",
    "to_dict",
]

_SERVER_DB_SCHEMES = ("postgresql", "mysql", "mssql", "oracle")
_DB_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mssql": "SQL Server"}


@dataclass
class _State:
    """What later checks need from earlier ones."""

    settings: Settings | None = None
    tracking_ok: bool = False
    experiment: Any = None


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

    def record(name: str, check: Callable[[], Verdict], limit: float = timeout_s) -> Verdict:
        debug = state.settings.debug if state.settings is not None else False
        verdict, seconds = run_bounded(check, limit, debug=debug)
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
    record("artifact_store", lambda: check_artifact_store(current, state.experiment))
    record("s3_bucket", lambda: check_s3_bucket(current))
    record("model", lambda: _check_model(current, state), timeout_s * MODEL_TIMEOUT_FACTOR)
    record("monitoring_db", lambda: _check_monitoring(current, fix))
    record("disk", lambda: _check_disk(current, min_free_gib))
    return results


# ---------------------------------------------------------------- running one check


def run_bounded(
    check: Callable[[], Verdict], timeout_s: float, *, debug: bool = False
) -> tuple[Verdict, float]:
    """Run ``check`` in a daemon thread; past ``timeout_s`` it is abandoned and fails.

    ``debug`` (the ``debug`` setting) prints the traceback of an unexpected error to stderr.
    """
    box: dict[str, Verdict] = {}

    def target() -> None:
        try:
            box["verdict"] = check()
        except Failed as failed:
            box["verdict"] = Verdict(FAIL, failed.detail, failed.hint)
        except EtaError as exc:
            box["verdict"] = Verdict(
                FAIL,
                redact_text(str(exc)),
                "`eta config show` lists the settings in use and their sources",
            )
        except Exception as exc:  # a check must never end doctor with a traceback
            if debug:
                traceback.print_exc()
            box["verdict"] = Verdict(
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
            Verdict(
                FAIL,
                f"did not finish within {timeout_s:g} s",
                "a server accepts connections but does not answer; "
                "raise the limit with --timeout if it is only slow",
            ),
            seconds,
        )
    verdict = box.get("verdict") or Verdict(
        FAIL, "the check stopped without a result", "set ETA_DEBUG=1 and run again"
    )
    return verdict, seconds


# ---------------------------------------------------------------- 1. configuration


def _profile_file(settings: Settings) -> str:
    for source in settings.sources.values():
        if source.startswith("profile "):
            return source[len("profile ") :]
    return "built-in defaults"


def _check_config(settings: Settings | Callable[[], Settings]) -> Verdict:
    try:
        loaded = settings() if callable(settings) else settings
    except ConfigError as exc:
        raise Failed(
            redact_text(str(exc)),
            "fix that setting in the environment (.env) or configs/<profile>.toml; "
            ".env.example documents every variable",
        ) from exc
    ok = Verdict(
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
    return Verdict(
        FAIL,
        f"profile aws, but {', '.join(defaults)} still "
        f"{'falls' if len(defaults) == 1 else 'fall'} back to the local default",
        f"set {', '.join(env_name(n) for n in names)} (see .env.example; "
        "docker/compose.yaml builds them from .env)",
        data={"settings": loaded},
    )


# ---------------------------------------------------------------- databases (shared)


def _backend(uri: str) -> str:
    return scheme_of(uri).split("+", 1)[0]


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
        raise Failed(
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
        raise Failed(f"cannot connect to {what} {shown}: {reason}", _db_hint(reason, env)) from exc
    finally:
        engine.dispose()
    name = _DB_NAMES.get(_backend(uri), _backend(uri))
    version = ".".join(str(part) for part in info[:2])
    return f"{name} {version}".strip(), revision


# ---------------------------------------------------------------- 2. MLflow tracking


def _http_hint(cause: BaseException | None, env: str) -> str:
    """What to do about an MLflow server that failed tracking's probe, from the cause."""
    import requests

    if isinstance(cause, requests.exceptions.Timeout):
        return f"is the server overloaded, or a firewall dropping packets? Check {env}"
    if isinstance(cause, requests.exceptions.ConnectionError):
        return (
            "start the MLflow server (compose: `docker compose ... up -d mlflow`, then "
            f"`... logs mlflow`) or fix {env}"
        )
    if cause is not None:
        return f"fix {env}"
    return (
        "an MLflow server answers 200; 403 means the Host header is not allowed "
        "(MLFLOW_SERVER_ALLOWED_HOSTS)"
    )


def _probe_http(uri: str, role: str, env: str) -> str:
    """Reach an MLflow server with tracking's probe; it must answer 200; name its version."""
    import requests

    what = f"MLflow {role} server"
    try:
        response = tracking.probe_http(uri, f"{role} server")
    except tracking.TrackingError as exc:
        raise Failed(redact_text(str(exc)), _http_hint(exc.__cause__, env)) from exc
    if response.status_code != 200:
        raise Failed(
            f"{what} {redact_url(uri)} answered HTTP {response.status_code} on /health",
            _http_hint(None, env),
        )
    version = ""
    try:
        reply = requests.get(f"{uri.rstrip('/')}/version", timeout=PROBE_TIMEOUT_S)
        if reply.status_code == 200 and len(reply.text) < 40:
            version = f" {reply.text.strip()}"
    except requests.exceptions.RequestException:
        pass
    return f"MLflow server{version} at {redact_url(uri)}"


def _probe_store(settings: Settings, uri: str, role: str, setting: str) -> str:
    """Reach an MLflow tracking store or registry quickly; describe it or raise Failed."""
    env = env_name(setting)
    what = f"MLflow {role} store"
    shown = redact_url(uri)
    scheme = scheme_of(uri)
    if scheme in ("http", "https"):
        return _probe_http(uri, role, env)
    if scheme.startswith("sqlite"):
        path = tracking.sqlite_path(uri)
        if path is None:
            return f"in-memory SQLite store ({shown})"
        if not getattr(settings, setting):  # the embedded default: created like any command does
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.is_dir():
            raise Failed(
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
            raise Failed(f"{what} {shown}: folder {path.parent} is missing", f"fix {env}")
        return f"file store {path}"
    if scheme == "databricks":
        return f"Databricks ({shown})"
    raise Failed(
        f"{what} {shown} has an unsupported scheme {scheme!r}",
        f"use sqlite:///, postgresql+psycopg2://, http(s):// or a folder in {env}",
    )


NOT_CREATED = "not created yet (created on first use)"


def _fresh_embedded_store(settings: Settings) -> Path | None:
    """The embedded default's MLflow database when it does not exist yet (a fresh home):
    looking at it must not create it (MLflow would, with an experiment and migrations)."""
    if settings.tracking_uri or settings.registry_uri:
        return None
    path = tracking.sqlite_path(settings.effective_tracking_uri)
    return path if path is not None and not path.exists() else None


def _check_tracking(settings: Settings) -> Verdict:
    fresh = _fresh_embedded_store(settings)
    if fresh is not None:
        return Verdict(PASS, f"SQLite store {fresh} (embedded default): {NOT_CREATED}")
    uri = settings.effective_tracking_uri
    described = _probe_store(settings, uri, "tracking", "tracking_uri")
    if settings.effective_registry_uri != uri:
        registry = _probe_store(
            settings, settings.effective_registry_uri, "registry", "registry_uri"
        )
        described = f"{described}; registry: {registry}"
    name = settings.experiment_name
    with tracking.fast_http():
        try:
            client = tracking.client_for(settings)
            experiment, created = tracking.ensure_experiment(client, settings, name)
        except Exception as exc:
            raise Failed(
                f"MLflow tracking store {redact_url(uri)} failed: {first_line(exc)}",
                f"check {env_name('tracking_uri')} (an old database may need "
                "`mlflow db upgrade <uri>`)",
            ) from exc
    state = " created now" if created else ""
    if experiment.lifecycle_stage == "deleted":
        state = " deleted (the next `eta train` restores it)"
    detail = f"{described}; experiment {name!r} (id {experiment.experiment_id}){state}"
    return Verdict(PASS, detail, data={"experiment": experiment})


# ---------------------------------------------------------------- 3. backend database


def _check_backend_db(settings: Settings) -> Verdict:
    stores = [("tracking_uri", "tracking", settings.effective_tracking_uri)]
    if settings.effective_registry_uri != settings.effective_tracking_uri:
        stores.append(("registry_uri", "registry", settings.effective_registry_uri))
    direct = [store for store in stores if _is_server_db(store[2])]
    if not direct:
        uri = settings.effective_tracking_uri
        scheme = scheme_of(uri)
        if scheme in ("http", "https"):
            reason = f"tracking goes through the MLflow server {redact_url(uri)}, which owns its DB"
        elif scheme.startswith("sqlite"):
            reason = "the tracking store is a SQLite file, not a database server"
        else:
            reason = f"the tracking store {redact_url(uri)} is not a database server"
        return Verdict(NOT_APPLICABLE, reason)
    parts = []
    for setting, role, uri in direct:
        label, revision = _db_connect(uri, f"MLflow {role} backend database", env_name(setting))
        schema = f"MLflow schema {revision}" if revision else "no MLflow schema yet"
        parts.append(f"{label} at {redact_url(uri)}, {schema}")
    return Verdict(PASS, "; ".join(parts))


# ---------------------------------------------------------------- 5. model


def _check_model(settings: Settings, state: _State) -> Verdict:
    if _fresh_embedded_store(settings) is not None:
        return Verdict(
            NOT_APPLICABLE,
            f"no model yet: the embedded registry is {NOT_CREATED}",
            "`eta train`, then `eta register`",
        )
    if not state.tracking_ok:
        return Verdict(
            NOT_RUN,
            "MLflow tracking is not reachable (see above)",
            "fix the MLflow tracking row first",
        )
    from eta_cli import registry

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
            raise Failed(
                f"model registry {shown} failed: {first_line(exc)}",
                f"check {env_name('registry_uri')} / {env_name('tracking_uri')}",
            ) from exc
    if model is None:
        raise Failed(
            f"no registered model {name!r} in registry {shown}",
            "train and register one: `eta train`, then `eta register`",
        )
    champion = (model.aliases or {}).get(registry.CHAMPION)
    if champion is None:
        latest = versions[-1] if versions else None
        raise Failed(
            f"model {name!r} has {len(versions)} version(s) but no {registry.CHAMPION!r} alias",
            f"promote one: `eta register --promote {latest}`"
            if latest
            else "`eta train`, then `eta register`",
        )
    try:
        loaded = registry.load_model(settings)
    except registry.ModelNotFoundError as exc:
        raise Failed(
            f"champion v{champion} of {name!r} does not load: {first_line(exc)}",
            "roll back with `eta register --promote <version>` or register a new model",
        ) from exc
    except tracking.TrackingError as exc:
        raise Failed(
            f"champion v{champion} of {name!r} cannot be fetched: {first_line(exc)}",
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
    return Verdict(PASS, ", ".join(facts))


# ---------------------------------------------------------------- 6. monitoring database


def _check_monitoring(settings: Settings, fix: bool) -> Verdict:
    import sqlalchemy as sa

    from eta_cli.monitor import database

    url = settings.effective_database_url
    shown = redact_url(url)
    env = env_name("database_url")
    subject = f"monitoring database {shown}"
    sqlite_file = tracking.sqlite_path(url) if url.startswith("sqlite") else None
    if sqlite_file is not None and not sqlite_file.exists() and not fix:  # connecting creates it
        return Verdict(PASS, f"{subject}: {NOT_CREATED}")
    try:
        engine = database.make_engine(url)
    except Exception as exc:
        raise Failed(f"{subject} is not a usable URL: {first_line(exc)}", f"fix {env}") from exc
    try:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            version = database.current_schema_version(engine)
            inspector = sa.inspect(engine)
            missing = [t for t in database.metadata.tables if not inspector.has_table(t)]
        except sa.exc.SQLAlchemyError as exc:
            reason = first_line(exc)
            raise Failed(f"cannot connect to {subject}: {reason}", _db_hint(reason, env)) from exc
        target = database.SCHEMA_VERSION
        if version is not None and version < target:
            if not fix:
                raise Failed(
                    f"{subject} has schema v{version}, older than this eta's v{target}",
                    "`eta doctor --fix` migrates it in place (additive: new columns and "
                    "tables, no row changed); run it once as the database owner",
                )
            database.ensure_schema(engine)
            return Verdict(PASS, f"{subject}: migrated schema v{version} to v{target} (--fix)")
        if version is not None and version > target:
            raise Failed(
                f"{subject} has schema v{version}, newer than this eta's v{target}",
                "upgrade eta to the release that created the schema",
            )
        if version is None and sqlite_file is not None and not fix:
            # A SQLite file is the embedded default's: eta creates its schema on first use.
            return Verdict(PASS, f"{subject}: schema {NOT_CREATED}")
        if version is None or missing:
            what = "no eta schema yet" if version is None else f"no table {', '.join(missing)}"
            if not fix:
                raise Failed(
                    f"{subject} has {what}",
                    "created on first use by `eta serve` / `eta drift-report`; "
                    "`eta doctor --fix` creates it now",
                )
            database.ensure_schema(engine)
            return Verdict(PASS, f"{subject}: had {what}; created schema v{target} (--fix)")
        return Verdict(PASS, f"{subject}, schema v{version}")
    finally:
        engine.dispose()


# ---------------------------------------------------------------- 7. disk


def _check_disk(settings: Settings, min_free_gib: float) -> Verdict:
    home = settings.home_path
    existing = home
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = shutil.disk_usage(existing)
    free = usage.free / 2**30
    total = usage.total / 2**30
    if free < min_free_gib:
        raise Failed(
            f"only {free:.1f} GiB free on the disk of ETA_HOME {home}, below the "
            f"{min_free_gib:g} GiB minimum",
            "free space (old reports and pipeline logs under ETA_HOME) or move ETA_HOME to a "
            "larger volume; --min-free-gib sets the threshold",
        )
    return Verdict(
        PASS,
        f"{free:.1f} GiB free of {total:.1f} GiB on the disk of ETA_HOME {home} "
        f"(minimum {min_free_gib:g} GiB)",
    )
