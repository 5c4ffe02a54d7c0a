"""The monitoring database: prediction log and drift results, for dashboards.

SQLite under ``ETA_HOME`` by default, PostgreSQL in production
(``ETA_DATABASE_URL=postgresql+psycopg2://...``). One schema, created on first use,
and queried by the Grafana dashboard in ``docker/grafana/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from eta_cli.errors import EtaError, first_line

if TYPE_CHECKING:
    from eta_cli.config import Settings

# 2: predictions.role (champion | challenger, for the shadow) and the live-evaluation tables.
SCHEMA_VERSION = 2
ROLE_CHAMPION = "champion"
ROLE_CHALLENGER = "challenger"

metadata = sa.MetaData()


def _id_column() -> sa.Column:
    """A table's own key: BIGINT on PostgreSQL, INTEGER on SQLite (its rowid alias)."""
    key = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    return sa.Column("id", key, primary_key=True, autoincrement=True)


def _parent_id(name: str, target: str) -> sa.Column:
    """A child row's key of its parent row, deleted with it."""
    key = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    fk = sa.ForeignKey(target, ondelete="CASCADE")
    return sa.Column(name, key, fk, nullable=False, index=True)


schema_version = sa.Table(
    "eta_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

predictions = sa.Table(
    "predictions",
    metadata,
    _id_column(),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("order_id", sa.String(64), nullable=True, index=True),
    sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("order_created_at", sa.DateTime(timezone=False), nullable=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("eta_p10_s", sa.Float, nullable=False),
    sa.Column("eta_p50_s", sa.Float, nullable=False),
    sa.Column("eta_p90_s", sa.Float, nullable=False),
    sa.Column("eta_quoted_s", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    # Who made the prediction: the served model (its answer went to the client) or the
    # shadow challenger. The default keeps rows of schema v1 and older writers correct.
    sa.Column("role", sa.String(20), nullable=False, server_default=ROLE_CHAMPION),
)

drift_reports = sa.Table(
    "drift_reports",
    metadata,
    _id_column(),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_name", sa.String(200), nullable=True),
    sa.Column("model_version", sa.String(50), nullable=True),
    sa.Column("reference_rows", sa.Integer, nullable=False),
    sa.Column("current_rows", sa.Integer, nullable=False),
    sa.Column("sampled_rows", sa.Integer, nullable=False),
    sa.Column("drifted_columns", sa.Integer, nullable=False),
    sa.Column("total_columns", sa.Integer, nullable=False),
    sa.Column("drift_share", sa.Float, nullable=False),
    sa.Column("dataset_drift", sa.Boolean, nullable=False),
    sa.Column("prediction_drift_score", sa.Float, nullable=True),
    sa.Column("prediction_drifted", sa.Boolean, nullable=True),
    sa.Column("mae_s", sa.Float, nullable=True),
    sa.Column("interval_coverage", sa.Float, nullable=True),
    sa.Column("lateness_rate", sa.Float, nullable=True),
    sa.Column("html_uri", sa.Text, nullable=True),
    sa.Column("json_uri", sa.Text, nullable=True),
)

drift_columns = sa.Table(
    "drift_columns",
    metadata,
    _id_column(),
    _parent_id("report_id", "drift_reports.id"),
    sa.Column("column_name", sa.String(200), nullable=False),
    sa.Column("method", sa.String(100), nullable=False),
    sa.Column("drift_score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("drifted", sa.Boolean, nullable=False),
)


# One row per `eta evaluate` run: the window and the paired champion/challenger verdict.
live_evaluations = sa.Table(
    "live_evaluations",
    metadata,
    _id_column(),
    sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("predictions", sa.Integer, nullable=False),
    sa.Column("joined_orders", sa.Integer, nullable=False),
    sa.Column("champion_version", sa.String(50), nullable=True),
    sa.Column("challenger_version", sa.String(50), nullable=True),
    sa.Column("paired_orders", sa.Integer, nullable=False),
    sa.Column("mae_difference_s", sa.Float, nullable=True),  # challenger minus champion
    sa.Column("ci_low_s", sa.Float, nullable=True),
    sa.Column("ci_high_s", sa.Float, nullable=True),
    sa.Column("winner", sa.String(20), nullable=False),  # champion | challenger | undecided
    sa.Column("promoted", sa.Boolean, nullable=False),
)

# Live quality per model version and role, one row each per `eta evaluate` run.
live_quality = sa.Table(
    "live_quality",
    metadata,
    _id_column(),
    _parent_id("evaluation_id", "live_evaluations.id"),
    sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("orders", sa.Integer, nullable=False),
    sa.Column("mae_s", sa.Float, nullable=False),
    sa.Column("interval_coverage", sa.Float, nullable=False),
    sa.Column("lateness_rate", sa.Float, nullable=False),
    sa.Column("bias_s", sa.Float, nullable=False),
)


class MonitoringError(EtaError):
    """The monitoring database cannot be reached or used; the message names it."""


def make_engine(database_url: str) -> sa.Engine:
    """An engine for the monitoring database; creates the SQLite file's folder if needed."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 5}
    return sa.create_engine(url, **kwargs)


def sqlite_file_missing(database_url: str) -> bool:
    """True when the monitoring database is a SQLite file that does not exist yet.

    Connecting would create it (and :func:`make_engine` its folder), so a reader that
    finds nothing to read (``eta evaluate``, the pipeline's evaluate step) asks first:
    an empty ``monitoring.db`` appearing after a read-only command surprises its owner.
    """
    from eta_cli.tracking import sqlite_path

    if not database_url.startswith("sqlite"):
        return False
    path = sqlite_path(database_url)
    return path is not None and not path.expanduser().exists()


def engine_for(settings: Settings) -> sa.Engine:
    return make_engine(settings.effective_database_url)


def ensure_schema(engine: sa.Engine) -> None:
    """Create the tables on first use, migrate an older schema, record the version.

    Migrations are additive only (v1 -> v2 adds ``predictions.role`` with a default that
    is right for every v1 row), so older readers keep working. A role that may not alter
    tables (the service's INSERT-only role) gets a message naming the fix.
    """
    from datetime import UTC, datetime

    shown = engine.url.render_as_string(hide_password=True)
    try:
        metadata.create_all(engine)
        has_role = "role" in {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
        with engine.begin() as conn:
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if not has_role:
                _add_role_column(conn)
            if current is None or not has_role:
                conn.execute(
                    schema_version.insert().values(
                        version=SCHEMA_VERSION, applied_at=datetime.now(UTC)
                    )
                )
    except sa.exc.SQLAlchemyError as exc:
        hint = ""
        if "permission denied" in str(exc).lower() or "must be owner" in str(exc).lower():
            hint = (
                f" (schema v{SCHEMA_VERSION} adds predictions.role: run `eta doctor --fix` "
                "once as the database owner)"
            )
        raise MonitoringError(f"monitoring database {shown}: {first_line(exc)}{hint}") from exc


def _add_role_column(conn: sa.Connection) -> None:
    """v1 -> v2: ``predictions.role``, every existing row being the served model's."""
    column = predictions.c.role
    type_sql = column.type.compile(dialect=conn.dialect)
    conn.execute(
        sa.text(
            f"ALTER TABLE {predictions.name} ADD COLUMN role {type_sql} "
            f"NOT NULL DEFAULT '{ROLE_CHAMPION}'"
        )
    )


def current_schema_version(engine: sa.Engine) -> int | None:
    """The recorded schema version, or None when the schema was never created."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(schema_version.name):
        return None
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
