"""What every command shares: settings from the global options, consoles, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from eta_cli.config import Settings, load_settings

console = Console()
err_console = Console(stderr=True)


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """Settings built from the global ``--profile``/``--home`` and a command's own options."""
    root = ctx.find_root()
    options = dict(root.obj or {})
    options.update({k: v for k, v in overrides.items() if v is not None})
    profile = options.pop("profile", None)
    return load_settings(profile=profile, overrides=options)


def print_json(payload: Any) -> None:
    """One JSON object on stdout, for machines (``--json``)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def is_terminal() -> bool:
    return console.is_terminal
