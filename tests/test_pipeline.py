"""``eta pipeline``: real ingest, drift report, training and registration on small data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from eta_cli import pipeline, synthetic
from eta_cli.cli import main
from eta_cli.config import Settings

ROUNDS = 30  # a real booster, trained in seconds


def _run(settings: Settings, lines: list[str], **kwargs: object) -> pipeline.PipelineResult:
    return pipeline.run_pipeline(settings, max_rounds=ROUNDS, log=lines.append, **kwargs)


@pytest.mark.slow
def test_pipeline_trains_first_model_keeps_it_on_stable_data_and_retrains_on_drift(
    settings: Settings,
) -> None:
    from eta_cli import registry

    lines: list[str] = []
    first = _run(settings, lines, synthetic=4000, seed=0)
    assert first.exit_code == pipeline.EXIT_OK
    assert [(s.name, s.status) for s in first.steps] == [
        ("ingest", "ok"),
        ("evaluate", "skipped"),  # no prediction logged yet: nothing to join
        ("drift", "skipped"),  # nothing to compare with yet
        ("train", "ok"),
        ("register", "ok"),
    ]
    assert "no champion" in first.step("drift").detail
    assert first.step("register").data["register"]["action"] == "champion"
    assert registry.resolve_version(settings, settings.model_name, "champion") == "1"

    # More orders of the same weeks the champion was trained on: none is new to it.
    stable = _run(settings, lines, synthetic=1500, seed=0)
    assert stable.exit_code == pipeline.EXIT_OK
    assert stable.dataset_drift is None and not stable.retrained
    assert stable.step("ingest").data["ingest"]["rows_written"] > 0
    assert stable.new_orders == 0
    assert "no new orders" in stable.step("drift").detail
    assert "champion v1's data" in stable.step("drift").detail
    assert stable.step("train").status == "skipped"
    assert registry.resolve_version(settings, settings.model_name, "champion") == "1"

    drifted = _run(settings, lines, synthetic=1500, seed=0, drift=True)
    assert drifted.dataset_drift is True and drifted.retrained
    assert drifted.step("train").status == "ok"
    assert "dataset drift detected" in drifted.step("train").detail
    action = drifted.step("register").data["register"]["action"]
    assert action in ("champion", "challenger")  # the gate decides, not the pipeline
    expected = (
        pipeline.EXIT_DRIFT_PROMOTED if action == "champion" else (pipeline.EXIT_DRIFT_NOT_PROMOTED)
    )
    assert drifted.exit_code == expected
    # The drift report compared only the new batch, and its row is in the monitoring DB.
    report = drifted.step("drift").data["report"]
    assert report["current"]["rows"] == drifted.new_orders
    assert report["model"]["version"] == "1"
    assert report["report_id"] is not None

    # One log line per step with its timing, a start and an end line per run.
    step_lines = [line for line in lines if line.startswith("step=")]
    assert len(step_lines) == 5 + 4 + 5
    assert all(" seconds=" in line and " status=" in line for line in step_lines)
    assert sum(line.startswith("done exit=") for line in lines) == 3
    runs = (settings.home_path / "pipeline" / "runs.jsonl").read_text().splitlines()
    assert [json.loads(r)["exit_code"] for r in runs] == [0, 0, drifted.exit_code]

    # Nothing new: the next run says so and does nothing else.
    idle = _run(settings, lines)
    assert idle.exit_code == 0 and idle.new_orders == 0
    assert [(s.name, s.status) for s in idle.steps] == [
        ("ingest", "skipped"),
        ("evaluate", "skipped"),
        ("drift", "skipped"),
        ("train", "skipped"),
    ]


def test_second_concurrent_run_exits_at_once(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from eta_cli.config import load_settings
                from eta_cli.pipeline import pipeline_lock
                with pipeline_lock(load_settings()):
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(SystemExit) as exit_info:
            main(["pipeline", "--synthetic", "100"])
        assert time.monotonic() - started < 5
        assert exit_info.value.code == pipeline.EXIT_BUSY == 75
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "pipeline.lock" in err
        assert not (settings.home_path / "data").exists()  # nothing was ingested
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder: the next run may start.
    with pipeline.pipeline_lock(settings):
        pass


def test_inbox_files_are_ingested_once(settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    synthetic.write_csv(synthetic.generate_orders(300, seed=0), inbox / "a.csv")
    synthetic.write_csv(synthetic.generate_orders(200, seed=0), inbox / "b.csv")
    lines: list[str] = []

    first = _run(settings, lines, inbox=str(inbox), retrain="never")
    ingest = first.step("ingest")
    assert ingest.status == "ok" and "sources=2" in ingest.detail
    assert first.step("train").detail == "--retrain never"
    manifest = json.loads((settings.home_path / "pipeline" / "ingested_files.json").read_text())
    assert sorted(Path(p).name for p in manifest) == ["a.csv", "b.csv"]

    again = _run(settings, lines, inbox=str(inbox), retrain="never")
    assert again.step("ingest").status == "skipped"
    assert again.step("ingest").detail == "no new files (2 already ingested)"

    synthetic.write_csv(synthetic.generate_orders(150, seed=0), inbox / "c.csv")
    third = _run(settings, lines, inbox=str(inbox), retrain="never")
    assert "sources=1 skipped_files=2" in third.step("ingest").detail
    rows = third.step("ingest").data["ingest"]["rows_written"]
    assert 140 <= rows <= 150


def test_failed_step_gives_exit_code_6_and_later_steps_still_run(
    settings: Settings, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "broken.csv").write_text("not,an,orders,file\n1,2,3,4\n")
    lines: list[str] = []
    result = _run(settings, lines, inbox=str(inbox), retrain="never")
    assert result.step("ingest").status == "failed"
    assert "broken.csv" in result.step("ingest").detail
    assert result.step("train") is not None  # the run went on
    assert result.exit_code == pipeline.EXIT_STEP_FAILED == 6
    assert any(line.startswith("step=ingest status=failed") for line in lines)
    manifest = settings.home_path / "pipeline" / "ingested_files.json"
    assert not manifest.exists()  # a failed file is retried next time


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--retrain", "sometimes"], "allowed: on-drift, always, never"),
        (["--inbox", "/nonexistent/inbox"], "inbox /nonexistent/inbox is not a folder"),
        (["--upload-s3"], "--upload-s3 needs a bucket: set ETA_S3_BUCKET"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["pipeline", "--help"])
    out = capsys.readouterr().out
    for code in pipeline.EXIT_CODES:
        assert f"  {code} " in out


def test_crontab_example_runs_valid_eta_commands() -> None:
    import shlex

    import typer.main

    from eta_cli.cli import build_app

    crontab = Path(__file__).resolve().parent.parent / "configs" / "crontab.example"
    jobs = [
        line
        for line in crontab.read_text().splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert jobs, "no cron job lines"
    group = typer.main.get_command(build_app())
    commands = set()
    for line in jobs:
        fields = line.split(None, 5)
        assert len(fields) == 6 and all(f[0].isdigit() or f[0] == "*" for f in fields[:5])
        assert "%" not in fields[5].replace("\\%", "")  # cron would cut the line at a bare %
        words = shlex.split(fields[5])
        start = next(i for i, w in enumerate(words) if w.endswith("/eta"))
        end = next(i for i, w in enumerate(words) if w.startswith(">>"))
        name, *args = words[start + 1 : end]
        command = group.get_command(None, name)  # type: ignore[attr-defined]
        assert command is not None, name
        command.make_context(name, list(args))  # raises on an unknown option
        commands.add(name)
    assert commands == {"pipeline", "drift-report"}
