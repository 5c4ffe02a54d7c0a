"""The `eta` entry points: version, help, usage errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from eta_cli import __version__
from eta_cli.cli import build_app, main


def test_version_through_the_runner():
    result = CliRunner().invoke(build_app(), ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"eta {__version__}"


def test_python_dash_m_eta_cli_version():
    proc = subprocess.run(
        [sys.executable, "-m", "eta_cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"eta {__version__}"


def test_help_lists_the_commands(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(build_app(), ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "config"):
        assert command in result.stdout
    ingest_help = CliRunner().invoke(build_app(), ["ingest", "--help"])
    assert ingest_help.exit_code == 0
    for option in ("--synthetic", "--seed", "--drift", "--output", "--json"):
        assert option in ingest_help.stdout


def test_no_arguments_shows_help():
    result = CliRunner().invoke(build_app(), [])
    assert "Usage" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-option"],
        ["ingest", "--no-such-option"],
        ["no-such-command"],
        ["ingest", "--synthetic", "many"],
    ],
)
def test_usage_errors_exit_2_without_traceback(args, capsys):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "Usage:" in captured.err
    assert captured.out == ""


def test_usage_error_in_a_real_process():
    proc = subprocess.run(
        [sys.executable, "-m", "eta_cli", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert proc.returncode == 2
    assert "No such option" in proc.stderr
    assert "Traceback" not in proc.stderr
