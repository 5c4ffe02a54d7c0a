"""What a new user meets in the first hour, through the commands as they are typed:
plain flags, completed values, error messages in the user's terms, layouts that stay
readable at 80 columns, and a fresh home that nothing is created in by looking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eta_cli.cli import build_app, main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``eta ARGS`` through the real entry point (errors become messages and exit codes)."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def eta_subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """``eta ARGS`` as a separate process, as a shell runs it (stdout is a pipe)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "eta_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


# --- flags and completion -------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["register"], ["config", "show"], ["predict"], ["drift-report"], []]
)
def test_flags_show_as_plain_flags(monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(build_app(), [*command, "--help"], prog_name="eta")
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output


def test_a_flag_given_a_value_is_refused_plainly(capsys):
    code, _, err = run_cli(capsys, "config", "show", "--json", "true")
    assert code == 2 and "unexpected extra argument" in err.lower()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("eta predict --engine ", ["local", "dask"]),
        ("eta train --engine ", ["local", "dask"]),
        ("eta ingest --engine d", ["dask"]),
        ("eta predict --format ", ["auto", "table", "json"]),
    ],
)
def test_shell_completion_offers_the_values(words, expected):
    # Completion runs the installed `eta` script, as bash's completion function does.
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("eta"))],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "_ETA_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        },
    )
    assert proc.stdout.split() == expected, proc.stderr


def test_an_unknown_engine_names_the_flag_and_the_choices(capsys):
    code, _, err = run_cli(capsys, "train", "--engine", "spark")
    assert code == 2
    assert "--engine" in err and "local" in err and "dask" in err
