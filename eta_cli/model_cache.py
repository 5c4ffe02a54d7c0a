"""The fast path of a one-off prediction: registry models from a local cache of their files.

``eta predict`` used to pay for MLflow's whole start-up on every call (importing
mlflow, the store's set-up and schema check, downloading the model, importing
xgboost): seconds for one order. :func:`load_model` instead

1. asks the registry which version the alias names, cheaply and on every call
   (:func:`eta_cli.registry_lookup.find_version`: nothing about aliases is cached, so
   after ``eta register --promote N`` or an alias moved through MLflow the very next
   call uses version N);
2. loads that version's model files from ``ETA_HOME/cache/models/<registry>/<name>/
   <version>/``, where ``<registry>`` is a hash of the redacted registry URI, through
   XGBoost's C library (:class:`eta_cli.booster.NativeBooster`), without mlflow or the
   xgboost package;
3. otherwise (no cheap answer, no or a damaged cache entry) loads the model the full
   way (:func:`eta_cli.registry.load_model`) and writes the entry for the next call.

An entry is trusted only for the exact version it was written for: its manifest
names the registry, model, version, the version's source and run, and each file's
SHA-256; all must match what the registry says now, or the entry is ignored and
rewritten. Entries are written under a temporary name and renamed into place, so a
reader never sees half an entry. The cache is optional: when it cannot be written
(a read-only home) predictions still work, the full way.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from eta_cli.config import Settings, redact_url
from eta_cli.registry_lookup import VersionRow, find_version

if TYPE_CHECKING:
    from eta_cli.registry import LoadedModel

CACHE_FOLDER = ("cache", "models")
MANIFEST = "manifest.json"
FORMAT = 1
# Versions kept per registry and model; older entries are removed when a new one is written.
KEEP_VERSIONS = 3
_REGISTRY_URI = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[0-9]+))/?$"
)


def cache_root(settings: Settings) -> Path:
    """Where cached model files live (under ``ETA_HOME``)."""
    return settings.home_path.joinpath(*CACHE_FOLDER)


def registry_key(registry_uri: str) -> str:
    """A folder name for a registry: a hash of its redacted URI (no secret on disk)."""
    return hashlib.sha256(redact_url(registry_uri).encode()).hexdigest()[:16]


def entry_dir(settings: Settings, name: str, version: str) -> Path:
    """The cache folder of one model version of the configured registry."""
    key = registry_key(settings.effective_registry_uri)
    return cache_root(settings) / key / quote(name, safe="") / str(version)


def load_model(settings: Settings, model_uri: str | None = None) -> LoadedModel:
    """What :func:`eta_cli.registry.load_model` returns for ``model_uri``, from the cache
    when the registry confirms the cached version (see the module docstring).

    Only ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` use the cache; other URIs
    (runs, folders) load the full way.
    """
    from eta_cli import registry

    uri = model_uri or registry.default_uri(settings)
    match = _REGISTRY_URI.match(uri)
    if match is None:
        return registry.load_model(settings, uri)
    name, alias, version = match["name"], match["alias"], match["version"]
    registry_uri = settings.effective_registry_uri
    row = find_version(registry_uri, name, alias=alias, version=version)
    if row is not None:
        cached = _read(settings, row, alias, uri)
        if cached is not None:
            return cached
    loaded = registry.load_model(settings, uri)
    if loaded.name and loaded.version:
        stored = find_version(registry_uri, loaded.name, version=loaded.version)
        if stored is not None and stored.run_id == loaded.run_id:
            _store(settings, loaded, stored)
    return loaded


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(settings: Settings, row: VersionRow) -> dict[str, Any]:
    """The fields an entry must share with the registry's answer to be used."""
    return {
        "format": FORMAT,
        "registry": redact_url(settings.effective_registry_uri),
        "name": row.name,
        "version": row.version,
        "source": row.source,
        "run_id": row.run_id,
    }


def _read(settings: Settings, row: VersionRow, alias: str | None, uri: str) -> LoadedModel | None:
    """The cached model of exactly this version, or None (missing, stale or damaged)."""
    from eta_cli.model import EtaModel
    from eta_cli.registry import LoadedModel

    folder = entry_dir(settings, row.name, row.version)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        expected = _manifest(settings, row)
        if any(manifest.get(key) != value for key, value in expected.items()):
            return None
        files = manifest["files"]
        if not files or any(_digest(folder / f) != digest for f, digest in files.items()):
            return None
        model = EtaModel.load(folder, native=True)
        metrics = {str(k): float(v) for k, v in (manifest.get("metrics") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return LoadedModel(
        model=model,
        name=row.name,
        version=row.version,
        alias=alias,
        run_id=row.run_id or model.metadata.get("run_id"),
        uri=uri,
        metrics=metrics,
        trained_at=manifest.get("trained_at"),
    )


def _store(settings: Settings, loaded: LoadedModel, row: VersionRow) -> None:
    """Write the entry of ``row`` atomically; a failure only means no cache next time."""
    final = entry_dir(settings, row.name, row.version)
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{row.version}-", dir=final.parent))
        loaded.model.save(tmp)
        files = {p.name: _digest(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {
            **_manifest(settings, row),
            "metrics": loaded.metrics,
            "trained_at": loaded.trained_at,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if final.exists():  # stale or damaged (a valid one would have been used)
            stale = final.with_name(f".{row.version}-stale-{tmp.name}")
            final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp.rename(final)
        tmp = None
        _prune(final.parent)
    except OSError:
        pass  # e.g. a read-only home, or another process wrote the entry first
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _prune(model_folder: Path) -> None:
    """Keep the :data:`KEEP_VERSIONS` newest entries of one model."""
    entries = [p for p in model_folder.iterdir() if p.is_dir() and p.name.isdigit()]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP_VERSIONS:]:
        shutil.rmtree(old, ignore_errors=True)
