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

SCHEMA_VERSION = 1

metadata = sa.MetaData()

schema_version = sa.Table(
    "eta_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
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
)

drift_reports = sa.Table(
    "drift_reports",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
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
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "report_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("drift_reports.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("column_name", sa.String(200), nullable=False),
    sa.Column("method", sa.String(100), nullable=False),
    sa.Column("drift_score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("drifted", sa.Boolean, nullable=False),
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


def engine_for(settings: Settings) -> sa.Engine:
    return make_engine(settings.effective_database_url)


def ensure_schema(engine: sa.Engine) -> None:
    """Create the tables on first use and record the schema version."""
    from datetime import UTC, datetime

    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if current is None:
                conn.execute(
                    schema_version.insert().values(
                        version=SCHEMA_VERSION, applied_at=datetime.now(UTC)
                    )
                )
    except sa.exc.SQLAlchemyError as exc:
        raise MonitoringError(
            f"monitoring database {engine.url.render_as_string(hide_password=True)}: "
            f"{first_line(exc)}"
        ) from exc


def current_schema_version(engine: sa.Engine) -> int | None:
    """The recorded schema version, or None when the schema was never created."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(schema_version.name):
        return None
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
