"""Which model version an alias (or a version number) names, asked cheaply and read-only.

``mlflow``'s client costs seconds before its first answer: importing it, then, for a
database store, the SQLAlchemy store's set-up and schema check. A one-off
``eta predict`` only needs one row, so :func:`find_version` asks the registry itself:

- an ``http(s)://`` tracking server: MLflow's REST API
  (``GET /api/2.0/mlflow/registered-models/alias``, ``.../model-versions/get``), with
  the credentials MLflow's client would send (``MLFLOW_TRACKING_USERNAME`` /
  ``_PASSWORD`` or ``_TOKEN``);
- ``sqlite:///``: one read-only query through Python's ``sqlite3``;
- ``postgresql+psycopg2://``: the same query through psycopg2, in a read-only session.

Nothing is created, migrated or written. Whenever the answer is not certain (another
backend, MLflow workspaces, TLS or auth settings we do not reproduce, an unknown
schema, an error, no such alias) the answer is ``None`` and the caller asks MLflow's
client, which also gives the proper error message. The answer is never cached: every
call asks the registry, so a moved alias is seen by the very next call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from eta_cli import config

TIMEOUT_S = 5
READY = "READY"
# MLflow soft-deletes model versions with this stage; their aliases are gone too.
DELETED_STAGE = "Deleted_Internal"
DEFAULT_WORKSPACE = "default"

_SELECT = "SELECT v.name, v.version, v.source, v.run_id, v.status FROM model_versions v"
_BY_ALIAS = (
    f"{_SELECT} JOIN registered_model_aliases a ON a.workspace = v.workspace "
    "AND a.name = v.name AND a.version = v.version "
    "WHERE a.workspace = {p} AND a.name = {p} AND a.alias = {p} "
    "AND (v.current_stage IS NULL OR v.current_stage <> {p})"
)
_BY_VERSION = (
    f"{_SELECT} WHERE v.workspace = {{p}} AND v.name = {{p}} AND v.version = {{p}} "
    "AND (v.current_stage IS NULL OR v.current_stage <> {p})"
)


@dataclass(frozen=True)
class VersionRow:
    """A registered model version as the registry stores it: what identifies its files."""

    name: str
    version: str
    source: str
    run_id: str | None


def find_version(
    registry_uri: str, name: str, *, alias: str | None = None, version: str | None = None
) -> VersionRow | None:
    """The READY version that ``alias`` (or the number ``version``) names, or None when
    the registry cannot be asked cheaply or did not answer with exactly one such version.
    """
    if (alias is None) == (version is None):
        raise ValueError("give exactly one of alias and version")
    if version is not None and not version.isdigit():
        return None
    client_env = config.mlflow_client_environment()
    if "MLFLOW_WORKSPACE" in client_env or "MLFLOW_ENABLE_WORKSPACES" in client_env:
        return None  # the default workspace is the only one we know how to read
    scheme = urlsplit(registry_uri).scheme.lower()
    try:
        if scheme in ("http", "https"):
            return _from_server(registry_uri, name, alias, version, client_env)
        if scheme == "sqlite":
            return _from_sqlite(registry_uri, name, alias, version)
        if scheme == "postgresql+psycopg2":
            return _from_postgresql(registry_uri, name, alias, version)
    except Exception:  # any doubt: MLflow's client answers instead (and explains errors)
        return None
    return None


def _params(
    name: str, alias: str | None, version: str | None, placeholder: str
) -> tuple[str, list[Any]]:
    """The one query (by alias or by number) in the driver's placeholder style."""
    if alias is not None:
        sql, key = _BY_ALIAS, alias
    else:
        sql, key = _BY_VERSION, int(version)  # type: ignore[arg-type]
    return sql.format(p=placeholder), [DEFAULT_WORKSPACE, name, key, DELETED_STAGE]


def _row(rows: list[tuple]) -> VersionRow | None:
    if len(rows) != 1:
        return None
    name, version, source, run_id, status = rows[0]
    if status != READY or not source:
        return None
    return VersionRow(str(name), str(version), str(source), run_id or None)


def _from_sqlite(uri: str, name: str, alias: str | None, version: str | None) -> VersionRow | None:
    import sqlite3

    from eta_cli.tracking import sqlite_path

    path = sqlite_path(uri)
    if path is None or not path.is_file():
        return None
    sql, params = _params(name, alias, version, "?")
    target = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(target, uri=True, timeout=TIMEOUT_S)
    try:
        return _row(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def _from_postgresql(
    uri: str, name: str, alias: str | None, version: str | None
) -> VersionRow | None:
    import psycopg2

    parts = urlsplit(uri)
    kwargs: dict[str, Any] = {"connect_timeout": TIMEOUT_S}
    kwargs.update(dict(parse_qsl(parts.query)))
    for key, value in (
        ("user", parts.username),
        ("password", parts.password),
        ("host", parts.hostname),
        ("port", parts.port),
        ("dbname", parts.path.lstrip("/")),
    ):
        if value not in (None, ""):
            kwargs[key] = unquote(value) if isinstance(value, str) else value
    sql, params = _params(name, alias, version, "%s")
    conn = psycopg2.connect(**kwargs)
    try:
        conn.set_session(readonly=True, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return _row(cur.fetchall())
    finally:
        conn.close()


def _from_server(
    uri: str,
    name: str,
    alias: str | None,
    version: str | None,
    client_env: dict[str, str],
) -> VersionRow | None:
    import base64
    import urllib.request

    if set(client_env) - {
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    }:
        return None  # custom auth or TLS set-up: MLflow's client knows how
    parts = urlsplit(uri)
    headers = {"Accept": "application/json"}
    user, password = (
        client_env.get("MLFLOW_TRACKING_USERNAME"),
        client_env.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if parts.username is not None:  # credentials in the URI, as requests would send them
        user, password = unquote(parts.username), unquote(parts.password or "")
    if user is not None and password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif "MLFLOW_TRACKING_TOKEN" in client_env:
        headers["Authorization"] = f"Bearer {client_env['MLFLOW_TRACKING_TOKEN']}"
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if alias is not None:
        path, query = "registered-models/alias", {"name": name, "alias": alias}
    else:
        path, query = "model-versions/get", {"name": name, "version": version}
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/{path}?{urlencode(query)}", headers=headers
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        if response.status != 200:
            return None
        payload = json.loads(response.read())
    mv = payload.get("model_version") if isinstance(payload, dict) else None
    if not isinstance(mv, dict) or str(mv.get("name")) != name:
        return None
    if alias is None and str(mv.get("version")) != version:
        return None
    if mv.get("current_stage") == DELETED_STAGE:
        return None
    return _row(
        [(mv.get("name"), mv.get("version"), mv.get("source"), mv.get("run_id"), mv.get("status"))]
    )
