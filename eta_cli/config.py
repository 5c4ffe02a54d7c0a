"""Settings for every eta command, built explicitly and passed in.

Precedence, lowest to highest: built-in defaults, the profile file
``configs/<profile>.toml``, environment variables, command-line options.
Nothing here runs at import time: callers build a :class:`Settings` with
:func:`load_settings` and hand it to the library functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from eta_cli.errors import EtaError, first_line
from eta_cli.redact import REDACTED, redact_text, redact_url  # noqa: F401 (re-exported)

PROFILES_ENV = "ETA_PROFILE"
CONFIG_DIR_ENV = "ETA_CONFIG_DIR"
DEFAULT_PROFILE = "local"


class ConfigError(EtaError):
    """A setting is missing or malformed; the message names it and what is allowed."""


@dataclass(frozen=True)
class Settings:
    """Effective configuration. ``sources`` says where each value came from."""

    profile: str = DEFAULT_PROFILE
    home: Path = Path("~/.eta")
    # MLflow: empty means "derive from home" (SQLite file + local artifact folder).
    tracking_uri: str = ""
    registry_uri: str = ""
    artifact_location: str = ""
    experiment_name: str = "eta"
    model_name: str = "eta"
    # Data lake (local folder or s3:// prefix), reports, monitoring database.
    data_uri: str = ""
    reports_dir: str = ""
    database_url: str = ""
    # S3 and AWS: credentials come only from the standard AWS chain.
    s3_bucket: str = ""
    s3_prefix: str = "eta"
    s3_endpoint_url: str = ""
    aws_region: str = ""
    aws_profile: str = ""
    # Cleaning rules applied by ingest (seconds).
    min_duration_s: int = 300
    max_duration_s: int = 14_400
    ingest_chunk_rows: int = 250_000
    # One writer per lake: how long a second `eta ingest` waits for the lock before it gives
    # up, and the lease of an S3 lock (renewed while the run lives; a crashed run's lock
    # may be taken over once its lease has run out).
    lake_lock_wait_s: float = 60.0
    lake_lock_lease_s: float = 120.0
    # Training and the probabilistic ETA.
    quantile_low: float = 0.1
    quantile_high: float = 0.9
    quoted_quantile: float = 0.7
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    promotion_margin: float = 0.01
    # Serving.
    serve_host: str = "127.0.0.1"
    serve_port: int = 9696
    serve_threads: int = 8
    max_batch_orders: int = 1000
    max_body_bytes: int = 1_048_576
    reload_interval_s: float = 30.0
    prediction_log_queue: int = 10_000
    # Shadow scoring: the model under this alias also scores a share of requests, off the
    # request path, and is logged as role 'challenger'. Empty: no shadow.
    shadow_alias: str = "challenger"
    shadow_sample: float = 1.0
    # Bearer token of POST /reload and every state-changing route; empty: those routes are off.
    admin_token: str = field(default="", repr=False)  # never in a repr, a log or a traceback
    # Monitoring.
    drift_sample_rows: int = 20_000
    drift_share_threshold: float = 0.3
    alert_webhook: str = ""
    # Evidently workspace (a folder; on the stack, the volume the UI shares): every drift
    # report and live evaluation becomes a run of the model's project there. Empty: home.
    workspace: str = ""
    workspace_include_data: bool = False
    # Live evaluation (eta evaluate): joined orders the challenger needs to be promoted.
    live_min_orders: int = 200
    # The local Dask cluster of ``--engine dask`` without ``--scheduler`` (0 or empty: sized
    # to this machine; see dask_engine.local_cluster_shape). Memory is per worker, e.g. "2GB".
    dask_workers: int = 0
    dask_threads_per_worker: int = 0
    dask_memory_limit: str = ""
    # Diagnostics: keep MLflow's logs and warnings, print tracebacks of unexpected errors.
    debug: bool = False
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    # Derived locations: everything defaults to a place under ``home``.
    @property
    def home_path(self) -> Path:
        return Path(os.path.expanduser(str(self.home))).resolve()

    @property
    def effective_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.home_path / 'mlflow.db'}"

    @property
    def effective_registry_uri(self) -> str:
        return self.registry_uri or self.effective_tracking_uri

    @property
    def effective_artifact_location(self) -> str:
        if self.artifact_location:
            return self.artifact_location
        if self.tracking_uri.startswith(("http://", "https://")):
            return ""  # let the tracking server choose (it may proxy artifacts)
        return (self.home_path / "mlartifacts").as_uri()

    @property
    def effective_data_uri(self) -> str:
        return self.data_uri or str(self.home_path / "data")

    @property
    def effective_reports_dir(self) -> str:
        return self.reports_dir or str(self.home_path / "reports")

    @property
    def effective_workspace(self) -> str:
        return self.workspace or str(self.home_path / "workspace")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_path / 'monitoring.db'}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and recorded as coming from the caller."""
        sources = dict(self.sources)
        for key in changes:
            sources[key] = "option"
        return dataclasses.replace(self, **changes, sources=sources)


# Environment variables per setting: standard names first where they exist.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "profile": ("ETA_PROFILE",),
    "home": ("ETA_HOME",),
    "tracking_uri": ("MLFLOW_TRACKING_URI",),
    "registry_uri": ("MLFLOW_REGISTRY_URI",),
    "artifact_location": ("ETA_ARTIFACT_LOCATION",),
    "experiment_name": ("ETA_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_NAME"),
    "model_name": ("ETA_MODEL_NAME",),
    "data_uri": ("ETA_DATA_URI",),
    "reports_dir": ("ETA_REPORTS_DIR",),
    "database_url": ("ETA_DATABASE_URL",),
    "s3_bucket": ("ETA_S3_BUCKET",),
    "s3_prefix": ("ETA_S3_PREFIX",),
    "s3_endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_profile": ("AWS_PROFILE",),
    "min_duration_s": ("ETA_MIN_DURATION_S",),
    "max_duration_s": ("ETA_MAX_DURATION_S",),
    "ingest_chunk_rows": ("ETA_INGEST_CHUNK_ROWS",),
    "lake_lock_wait_s": ("ETA_LAKE_LOCK_WAIT_S",),
    "lake_lock_lease_s": ("ETA_LAKE_LOCK_LEASE_S",),
    "quantile_low": ("ETA_QUANTILE_LOW",),
    "quantile_high": ("ETA_QUANTILE_HIGH",),
    "quoted_quantile": ("ETA_QUOTED_QUANTILE",),
    "validation_fraction": ("ETA_VALIDATION_FRACTION",),
    "test_fraction": ("ETA_TEST_FRACTION",),
    "promotion_margin": ("ETA_PROMOTION_MARGIN",),
    "serve_host": ("ETA_SERVE_HOST",),
    "serve_port": ("ETA_SERVE_PORT",),
    "serve_threads": ("ETA_SERVE_THREADS",),
    "max_batch_orders": ("ETA_MAX_BATCH_ORDERS",),
    "max_body_bytes": ("ETA_MAX_BODY_BYTES",),
    "reload_interval_s": ("ETA_RELOAD_INTERVAL_S",),
    "prediction_log_queue": ("ETA_PREDICTION_LOG_QUEUE",),
    "shadow_alias": ("ETA_SHADOW_ALIAS",),
    "shadow_sample": ("ETA_SHADOW_SAMPLE",),
    "admin_token": ("ETA_ADMIN_TOKEN",),
    "drift_sample_rows": ("ETA_DRIFT_SAMPLE_ROWS",),
    "drift_share_threshold": ("ETA_DRIFT_SHARE_THRESHOLD",),
    "alert_webhook": ("ETA_ALERT_WEBHOOK",),
    "workspace": ("ETA_WORKSPACE",),
    "workspace_include_data": ("ETA_WORKSPACE_INCLUDE_DATA",),
    "live_min_orders": ("ETA_LIVE_MIN_ORDERS",),
    "dask_workers": ("ETA_DASK_WORKERS",),
    "dask_threads_per_worker": ("ETA_DASK_THREADS_PER_WORKER",),
    "dask_memory_limit": ("ETA_DASK_MEMORY_LIMIT",),
    "debug": ("ETA_DEBUG",),
}

# Settings whose variable, set but empty, is a value (``ETA_SHADOW_ALIAS=`` turns the
# shadow off) rather than "not set".
EMPTY_IS_A_VALUE = frozenset({"shadow_alias"})

SECRET_NAME = re.compile(r"(password|secret|token|key|webhook)", re.IGNORECASE)


def _field_types() -> dict[str, Any]:
    defaults = Settings()
    return {
        f.name: type(getattr(defaults, f.name)) for f in fields(Settings) if f.name != "sources"
    }


def _coerce(name: str, raw: Any, origin: str) -> Any:
    kind = _field_types()[name]
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if kind is Path or issubclass(kind, Path):
            return Path(str(raw))
        if kind is int and not isinstance(raw, bool):
            return int(raw)
        if kind is float and not isinstance(raw, bool):
            return float(raw)
        if kind is str:
            return str(raw)
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{name} = {raw!r} (from {origin}) is not a valid {kind.__name__}")


def config_dirs(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where profile files are looked up, first match wins."""
    dirs: list[Path] = []
    if explicit:
        dirs.append(Path(explicit))
    env_dir = os.environ.get(CONFIG_DIR_ENV)
    if env_dir:
        dirs.append(Path(env_dir))
    dirs.append(Path.cwd() / "configs")
    dirs.append(Path(__file__).resolve().parent.parent / "configs")
    return dirs


def read_profile(
    profile: str, config_dir: str | os.PathLike[str] | None = None
) -> tuple[dict, str]:
    """Return the profile's settings and the file they came from."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", profile):
        raise ConfigError(f"profile {profile!r} is not valid: use letters, digits, '-' or '_'")
    for directory in config_dirs(config_dir):
        path = directory / f"{profile}.toml"
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(
                    f"profile file {path} is not valid TOML: {first_line(exc)}"
                ) from exc
            values = data.get("eta", data)
            known = _field_types()
            unknown = sorted(set(values) - set(known))
            if unknown:
                raise ConfigError(
                    f"profile file {path} has unknown setting(s) {', '.join(unknown)}; "
                    f"allowed: {', '.join(sorted(known))}"
                )
            return values, str(path)
    if profile == DEFAULT_PROFILE:
        return {}, "built-in"
    searched = ", ".join(dict.fromkeys(str(d) for d in config_dirs(config_dir)))
    raise ConfigError(
        f"profile {profile!r} not found: the profiles that exist are "
        f"{', '.join(available_profiles(config_dir))} (no {profile}.toml in {searched})"
    )


def available_profiles(config_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Every profile name that can be chosen: the built-in default and each profile file."""
    names = {DEFAULT_PROFILE}
    for directory in config_dirs(config_dir):
        if directory.is_dir():
            names.update(
                path.stem
                for path in directory.glob("*.toml")
                if re.fullmatch(r"[A-Za-z0-9_-]+", path.stem)
            )
    return sorted(names)


def load_settings(
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build the effective settings from defaults, profile file, environment and options."""
    env = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(_field_types()))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {name: "default" for name in _field_types()}

    chosen = overrides.get("profile") or env.get(PROFILES_ENV) or DEFAULT_PROFILE
    profile_values, profile_file = read_profile(profile or str(chosen), config_dir)
    for name, raw in profile_values.items():
        values[name] = _coerce(name, raw, profile_file)
        sources[name] = f"profile {profile_file}"
    for name, env_names in ENV_VARS.items():
        for env_name in env_names:
            raw = env.get(env_name)
            if raw not in (None, "") or (raw == "" and name in EMPTY_IS_A_VALUE):
                values[name] = _coerce(name, raw, f"${env_name}")
                sources[name] = f"${env_name}"
                break
    for name, raw in overrides.items():
        values[name] = _coerce(name, raw, "command line")
        sources[name] = "option"
    values["profile"] = profile or str(chosen)
    if profile or overrides.get("profile"):
        sources["profile"] = "option"
    elif env.get(PROFILES_ENV):
        sources["profile"] = f"${PROFILES_ENV}"
    settings = Settings(**values, sources=sources)
    validate(settings)
    return settings


def debug_requested(environ: Mapping[str, str] | None = None) -> bool:
    """``ETA_DEBUG`` for the CLI's entry point, which runs before any command builds its
    :class:`Settings` (MLflow's log level must be set before MLflow is imported, and the
    last-resort error handler has no settings). Everything else reads ``settings.debug``."""
    env = os.environ if environ is None else environ
    (name,) = ENV_VARS["debug"]
    raw = env.get(name)
    return raw not in (None, "") and bool(_coerce("debug", raw, f"${name}"))


# MLflow's own client variables that change how a registry request has to be made
# (credentials, TLS, workspaces). MLflow reads them itself; the registry fast path
# (eta_cli.registry_lookup) reads them here to make the same request, or to leave
# the request to MLflow's client when it cannot.
MLFLOW_CLIENT_VARS: tuple[str, ...] = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_WORKSPACE",
    "MLFLOW_ENABLE_WORKSPACES",
)


def mlflow_client_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The :data:`MLFLOW_CLIENT_VARS` that are set (non-empty), by name."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in MLFLOW_CLIENT_VARS if env.get(name)}


def validate(settings: Settings) -> None:
    """Refuse settings that cannot work, naming the setting and what is allowed."""
    checks = [
        (0 < settings.quantile_low < 0.5, "quantile_low must be between 0 and 0.5"),
        (0.5 < settings.quantile_high < 1, "quantile_high must be between 0.5 and 1"),
        (0 < settings.quoted_quantile < 1, "quoted_quantile must be between 0 and 1"),
        (
            0 <= settings.min_duration_s < settings.max_duration_s,
            "min_duration_s must be >= 0 and below max_duration_s",
        ),
        (0 < settings.validation_fraction < 0.5, "validation_fraction must be in (0, 0.5)"),
        (0 < settings.test_fraction < 0.5, "test_fraction must be in (0, 0.5)"),
        (1 <= settings.serve_port <= 65535, "serve_port must be between 1 and 65535"),
        (settings.serve_threads >= 1, "serve_threads must be at least 1"),
        (settings.max_batch_orders >= 1, "max_batch_orders must be at least 1"),
        (settings.ingest_chunk_rows >= 1, "ingest_chunk_rows must be at least 1"),
        (settings.lake_lock_wait_s >= 0, "lake_lock_wait_s must be 0 or more seconds"),
        (settings.lake_lock_lease_s >= 1, "lake_lock_lease_s must be at least 1 second"),
        (settings.promotion_margin >= 0, "promotion_margin must be >= 0"),
        (0 < settings.drift_share_threshold <= 1, "drift_share_threshold must be in (0, 1]"),
        (0 <= settings.shadow_sample <= 1, "shadow_sample must be between 0 and 1"),
        (settings.live_min_orders >= 1, "live_min_orders must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message + _given(settings, message.split()[0]))
    for name in ("dask_workers", "dask_threads_per_worker"):
        # 0 is the default ("sized to this machine"); set explicitly it must be a real count.
        if getattr(settings, name) < 1 and settings.sources.get(name, "default") != "default":
            raise ConfigError(
                f"{name} = {getattr(settings, name)} (from {settings.sources[name]}) "
                "is not a positive whole number"
            )
    if "://" in settings.workspace:
        raise ConfigError(
            f"workspace = {settings.workspace!r} (from {settings.sources.get('workspace')}) "
            "must be a folder path: Evidently's UI reads its workspace from a file system "
            "(on the compose stack, the shared volume mounted at /workspace)"
        )
    for name in ("tracking_uri", "database_url"):
        value = getattr(settings, name)
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            raise ConfigError(
                f"{name} uses {value.split('://')[0]}://; use postgresql+psycopg2:// "
                "(psycopg2 is the installed driver)"
            )


def _given(settings: Settings, name: str) -> str:
    """' (got 99999 from $ETA_SERVE_PORT)': the value refused and where it was set, so the
    user knows what to change (a command-line option is named by its command's own check)."""
    if not hasattr(settings, name):
        return ""
    source = settings.sources.get(name, "default")
    where = {"option": "the command line"}.get(source, source)
    return f" (got {redact(name, getattr(settings, name))!r} from {where})"


def redact(name: str, value: Any) -> Any:
    if isinstance(value, str) and value and SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)  # URLs, and secret pairs of a DSN (``password=...``)
    return value


def describe(settings: Settings) -> list[tuple[str, Any, str]]:
    """(name, redacted effective value, source) rows for ``eta config show``."""
    derived = {
        "tracking_uri": settings.effective_tracking_uri,
        "registry_uri": settings.effective_registry_uri,
        "artifact_location": settings.effective_artifact_location,
        "data_uri": settings.effective_data_uri,
        "reports_dir": settings.effective_reports_dir,
        "database_url": settings.effective_database_url,
        "workspace": settings.effective_workspace,
        "home": str(settings.home_path),
    }
    rows = []
    for f in fields(Settings):
        if f.name == "sources":
            continue
        raw = getattr(settings, f.name)
        value = derived.get(f.name, raw)
        source = settings.sources.get(f.name, "default")
        if f.name in derived and not raw and f.name != "home" and source == "default":
            source = (
                "derived from tracking_uri" if f.name == "registry_uri" else ("derived from home")
            )
            if f.name == "artifact_location" and not value:
                source = "chosen by the tracking server"
        rows.append(
            (f.name, redact(f.name, value if not isinstance(value, Path) else str(value)), source)
        )
    return rows


# ------------------------------------------------------- the process environment of libraries
# MLflow, botocore and child processes read variables of their own (MLFLOW_*, AWS_*). eta
# sets or keeps them only through these helpers, so the one module that touches
# ``os.environ`` stays this one.


def export_default(name: str, value: str) -> None:
    """Give a library's variable ``value`` unless the user set it (read when it is used)."""
    os.environ.setdefault(name, value)


def export(values: Mapping[str, str]) -> None:
    """Set library variables for this process (inside :func:`environment_restored`)."""
    os.environ.update(values)


@contextlib.contextmanager
def environment_restored(names: Iterable[str]) -> Iterator[None]:
    """Whatever the block (or a library it calls) does to ``names``, they are as before
    afterwards: set ones get their value back, unset ones are removed."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def aws_keys_in_environment() -> bool:
    """Whether AWS credentials come from ``AWS_ACCESS_KEY_ID`` (for a doctor hint)."""
    return bool(os.environ.get("AWS_ACCESS_KEY_ID"))


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, for a child process eta starts."""
    return {**os.environ, **extra}
