"""What a doctor check reports: its status, detail and hint, and the ``--json`` shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from eta_cli import tracking
from eta_cli.config import ENV_VARS

PASS = "pass"
FAIL = "fail"
NOT_APPLICABLE = "n/a"
NOT_RUN = "not run"
OK_STATUSES = (PASS, NOT_APPLICABLE)

# Network timeout of each probe (connect and read), seconds: tracking's, for every probe.
PROBE_TIMEOUT_S = tracking.PROBE_TIMEOUT_S
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


class Failed(Exception):
    """The component failed: ``detail`` names it and what is wrong, ``hint`` what to do."""

    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


@dataclass
class Verdict:
    """What a check found; ``data`` carries what later checks need (settings, experiment)."""

    status: str
    detail: str
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def all_ok(results: list[CheckResult]) -> bool:
    """Every check passed or does not apply here."""
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


def env_name(setting: str) -> str:
    """The variable that sets ``setting`` (its first name), for hints."""
    return ENV_VARS[setting][0]


def scheme_of(uri: str) -> str:
    """The URI's scheme in lower case (``""`` for a plain path)."""
    return urlsplit(uri).scheme.lower()
