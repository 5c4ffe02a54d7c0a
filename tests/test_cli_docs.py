"""docs/cli.md is generated from the CLI's --help; this fails when it is out of date."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_committed_cli_reference_matches_the_help_texts() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETA_", "COLUMNS"))}
    generated = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate_cli_docs.py"), "-"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=ROOT,
    ).stdout
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert generated == committed, "docs/cli.md is out of date: run `make docs`"


def test_cli_reference_covers_every_command() -> None:
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in (
        "ingest",
        "synthetic",
        "train",
        "register",
        "drift-report",
        "serve",
        "predict",
        "pipeline",
        "doctor",
        "config show",
    ):
        assert f"## `eta {command}`" in committed, command
