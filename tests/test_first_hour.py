"""What a new user meets in the first hour, through the commands as they are typed:
plain flags, completed values, error messages in the user's terms, layouts that stay
readable at 80 columns, and a fresh home that nothing is created in by looking."""

from __future__ import annotations

import json
import os
import re
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


# --- JSON orders: errors on the right line, the same batch choice on both paths -------

EXAMPLE = ROOT / "examples" / "order.json"


def _without_comma_on_line(text: str, line_number: int) -> str:
    lines = text.splitlines()
    assert lines[line_number - 1].endswith(",")
    lines[line_number - 1] = lines[line_number - 1][:-1]
    return "\n".join(lines) + "\n"


def test_malformed_json_is_blamed_on_the_line_with_the_mistake(tmp_path, capsys):
    broken = tmp_path / "order.json"
    broken.write_text(_without_comma_on_line(EXAMPLE.read_text(), 10))
    code, out, err = run_cli(capsys, "predict", "--json", str(broken))
    assert code == 2 and out == ""
    line_10 = EXAMPLE.read_text().splitlines()[9]
    column = len(line_10)  # just after the value that lacks its comma
    assert f"is not valid JSON: line 10, column {column}: ',' missing after this value" in err
    assert "JSON Lines" not in err and "Traceback" not in err


def test_malformed_json_lines_name_the_line_and_column(tmp_path, capsys):
    orders = tmp_path / "orders.jsonl"
    orders.write_text('{"market_id": 1}\n{"market_id": 2}\n{"market_id": 3,, "x": 1}\n')
    code, _, err = run_cli(capsys, "predict", "--json", str(orders))
    assert code == 2
    assert "is not valid JSON Lines (one order per line): line 3, column 17:" in err


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    from helpers_model import tiny_model

    return tiny_model().save(tmp_path / "model")


def _orders_one_bad(n: int = 3) -> list[dict]:
    from helpers_model import sample_orders

    orders = sample_orders(n, seed=4, with_id=True)
    orders[1] = {**orders[1], "total_onshift_dashers": "many"}
    return orders


def test_cli_batch_is_partial_by_default_and_all_or_nothing_with_strict(
    tmp_path, tiny_model_dir, capsys
):
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(_orders_one_bad()))
    base = ["predict", "--json", str(path), "--model", str(tiny_model_dir), "--format", "json"]
    code, out, _ = run_cli(capsys, *base)
    answers = json.loads(out)["predictions"]
    assert code == 1
    assert [("eta_p50_s" in a, "error" in a) for a in answers] == [
        (True, False),
        (False, True),
        (True, False),
    ]
    code, out, _ = run_cli(capsys, *base, "--strict")
    answers = json.loads(out)["predictions"]
    assert code == 1
    assert not any("eta_p50_s" in a for a in answers)
    assert answers[1]["error"].startswith("total_onshift_dashers: expected an integer")
    assert "another order in the batch is invalid" in answers[0]["error"]


def test_strict_is_for_json_orders_only(capsys):
    code, _, err = run_cli(capsys, "predict", "--input", "a.csv", "--output", "b.csv", "--strict")
    assert code == 2 and "--strict applies to --json orders" in err


def test_server_batch_is_whole_by_default_and_partial_on_request(settings):
    from helpers_model import FakeLoaded, tiny_model

    from eta_cli.serve import ModelProvider, create_app

    provider = ModelProvider.fixed(settings, FakeLoaded(tiny_model()))
    client = create_app(settings, provider).test_client()
    orders = _orders_one_bad()
    whole = client.post("/predict", json={"orders": orders})
    assert whole.status_code == 422
    assert whole.get_json()["details"][0]["field"] == "orders[1].total_onshift_dashers"
    partial = client.post("/predict", json={"orders": orders, "partial": True})
    body = partial.get_json()
    assert partial.status_code == 200 and body["rejected"] == 1
    items = body["predictions"]
    assert [("eta_p50_s" in i, "error" in i) for i in items] == [
        (True, False),
        (False, True),
        (True, False),
    ]
    assert items[1]["index"] == 1 and items[1]["order_id"] == orders[1]["order_id"]
    assert items[1]["details"][0]["field"] == "orders[1].total_onshift_dashers"
    assert items[0]["order_id"] == orders[0]["order_id"]
    all_bad = client.post("/predict", json={"orders": [orders[1]], "partial": True})
    assert all_bad.status_code == 200 and all_bad.get_json()["rejected"] == 1
    wrong = client.post("/predict", json={"orders": orders, "partial": "yes"})
    assert wrong.status_code == 422
    assert wrong.get_json()["details"][0]["field"] == "partial"


def test_predict_url_to_a_dead_port_says_what_to_do(tmp_path, capsys):
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_cli(capsys, "predict", "--json", str(EXAMPLE), "--url", url)
    assert code == 2
    assert f"cannot reach {url}: is `eta serve` running?" in err
    assert "urllib3" not in err and "HTTPConnectionPool" not in err
    code, _, err = run_cli(capsys, "predict", "--json", str(EXAMPLE), "--url", "localhost:9696")
    assert code == 2 and "--url 'localhost:9696': not an http:// or https:// address" in err


# --- layouts at 80 columns -------------------------------------------------------------


def _lines_fit(text: str, width: int = 80) -> None:
    assert text.strip(), "nothing printed"
    assert all(len(line) <= width for line in text.splitlines()), text


def test_predict_one_order_is_a_vertical_record_at_80_columns(
    monkeypatch, tmp_path, tiny_model_dir, capsys
):
    monkeypatch.setenv("COLUMNS", "80")
    path = tmp_path / "order.json"
    path.write_text(json.dumps(_orders_one_bad(2)[0]))
    code, out, _ = run_cli(
        capsys, "predict", "--json", str(path), "--model", str(tiny_model_dir), "-f", "table"
    )
    assert code == 0
    _lines_fit(out)
    for name in ("eta_p50_s", "eta_p10_s", "eta_p90_s", "eta_quoted_s", "expected_delivery_at"):
        assert name in out
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_orders_one_bad(2)[1]))
    code, out, _ = run_cli(
        capsys, "predict", "--json", str(bad), "--model", str(tiny_model_dir), "-f", "table"
    )
    assert code == 1
    _lines_fit(out)
    assert "total_onshift_dashers" in out and "expected an integer" in out


def test_predict_several_orders_keep_every_value_at_80_columns(
    monkeypatch, tmp_path, tiny_model_dir, capsys
):
    monkeypatch.setenv("COLUMNS", "80")
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(_orders_one_bad(3)))
    code, out, _ = run_cli(
        capsys, "predict", "--json", str(path), "--model", str(tiny_model_dir), "-f", "table"
    )
    assert code == 1
    _lines_fit(out)
    assert len(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out)) == 2
    assert "#1 total_onshift_dashers: expected an integer" in out


# --- eta serve before any eta register --------------------------------------------------


def test_serve_before_register_says_so_once_and_stays_unready(tmp_path):
    import signal
    import time
    import urllib.error
    import urllib.request

    from conftest import free_port, wait_for_port

    port = free_port()
    env = {**os.environ, "ETA_HOME": str(tmp_path / "fresh-home"), "ETA_RELOAD_INTERVAL_S": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eta_cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for_port(port, proc=proc)
        deadline = time.monotonic() + 30
        body: dict = {}
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5)
                status = 200
            except urllib.error.HTTPError as exc:
                status, body = exc.code, json.loads(exc.read())
            if "no champion" in (body.get("reason") or ""):
                break
            time.sleep(0.1)
        assert status == 503
        time.sleep(1.0)  # several polls of the alias: the line must still be said once
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    notice = "no champion for model 'eta' yet: run `eta train` and `eta register`"
    plain = [line for line in err.splitlines() if not line.startswith("{")]
    assert plain == [notice], err
    assert body["reason"] == notice
    assert proc.returncode == 0


# --- drift reports: tiny batches, weekly seasonality -----------------------------------


def _weekly_orders(days: list[str], per_day: int, seed: int):
    """Orders of one population with weekly seasonality: weekend orders come at other
    hours (late breakfasts, long evenings) than weekday ones, every week alike."""
    import numpy as np
    import pandas as pd

    from eta_cli.synthetic import generate_orders

    rng = np.random.default_rng(seed)
    frame = generate_orders(per_day * len(days), seed, messy=False).reset_index(drop=True)
    duration = frame["actual_delivery_time"] - frame["created_at"]
    dates = pd.to_datetime(np.repeat(days, per_day))
    weekend = dates.dayofweek >= 5
    hours = np.where(
        weekend,
        rng.choice([10, 11, 13, 14, 20, 21, 22], size=len(dates)),
        rng.choice([11, 12, 12, 18, 19, 19, 20], size=len(dates)),
    )
    minutes = rng.integers(0, 3600, size=len(dates))
    frame["created_at"] = dates + pd.to_timedelta(hours, unit="h") + pd.to_timedelta(minutes, "s")
    frame["actual_delivery_time"] = frame["created_at"] + duration
    return frame


@pytest.mark.slow
def test_held_out_ordinary_days_raise_no_drift(tmp_path, capsys):
    import pandas as pd

    reference_days = [d.strftime("%Y-%m-%d") for d in pd.date_range("2015-01-05", periods=28)]
    _weekly_orders(reference_days, 150, seed=1).to_csv(tmp_path / "ref.csv", index=False)
    for day, name in (("2015-02-07", "saturday"), ("2015-02-10", "tuesday")):
        current = tmp_path / f"{name}.csv"
        _weekly_orders([day], 400, seed=7).to_csv(current, index=False)
        code, out, err = run_cli(
            capsys,
            "drift-report",
            "--reference",
            str(tmp_path / "ref.csv"),
            "--current",
            str(current),
            "--json",
        )
        assert code == 0, err
        summary = json.loads(out)
        drift = summary["data_drift"]
        hour = next(c for c in drift["columns"] if c["column"] == "order_hour")
        assert not hour["drifted"], (name, hour)
        assert drift["meaningful"] and not drift["dataset_drift"], (name, drift)
        assert any("matched to the current orders' weekdays" in n for n in summary["notes"])


@pytest.mark.slow
def test_a_tiny_batch_gets_no_verdict_and_no_library_warnings(tmp_path, monkeypatch):
    from eta_cli.synthetic import generate_orders

    generate_orders(2000, 1, messy=False).to_csv(tmp_path / "ref.csv", index=False)
    generate_orders(3, 2, messy=False).to_csv(tmp_path / "cur.csv", index=False)
    args = ["drift-report", "-r", str(tmp_path / "ref.csv"), "-c", str(tmp_path / "cur.csv")]
    proc = eta_subprocess(*args, env={"COLUMNS": "80"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "Warning" not in proc.stdout
    assert proc.stdout.startswith("no verdict (too few current orders)")
    assert "only 3 current orders" in proc.stdout
    _lines_fit(proc.stdout)
    assert "Wasserstein" not in proc.stdout  # small samples are tested with p-values


# --- eta doctor on a fresh home ----------------------------------------------------------


def test_doctor_on_a_fresh_home_passes_and_creates_nothing(tmp_path):
    home = tmp_path / "fresh-home"
    proc = eta_subprocess("doctor", env={"ETA_HOME": str(home), "COLUMNS": "80"}, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not home.exists() or not any(home.rglob("*")), list(home.rglob("*"))
    assert "fail" not in proc.stdout
    as_json = eta_subprocess("doctor", "--json", env={"ETA_HOME": str(home)}, timeout=180)
    assert as_json.returncode == 0, as_json.stderr
    assert not home.exists() or not any(home.rglob("*")), list(home.rglob("*"))
    details = json.dumps(json.loads(as_json.stdout))
    assert details.count("not created yet (created on first use)") >= 3, details
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d of 8 checks passed, \d n/a \(do not apply here\)", last), last
    passed, na = (int(n) for n in re.findall(r"\d+", last)[0::2][:2])
    assert passed + na == 8 and na >= 1


# --- eta train on a terminal --------------------------------------------------------------


@pytest.mark.slow
def test_train_shows_progress_on_a_terminal(tmp_path):
    """On a terminal (a pseudo-terminal here), each stage shows: features, the
    candidates, the boosting rounds, with a line per fitted candidate."""
    import pty

    env = {"ETA_HOME": str(tmp_path / "home"), "COLUMNS": "80"}
    ingest = eta_subprocess("ingest", "--synthetic", "3000", "--seed", "1", env=env)
    assert ingest.returncode == 0, ingest.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "eta_cli", "train", "--max-rounds", "20"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, **env, "TERM": "xterm"},
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        screen += chunk
    proc.wait(timeout=300)
    os.close(leader)
    text = screen.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-2000:]
    for stage in ("features", "candidates", "boosting", "fitted in"):
        assert stage in text, stage


# --- config show and register --list at 80 columns, and piped -----------------------------

LONG_DB = "postgresql+psycopg2://eta:secret@monitoring-db.example.internal:5432/eta_monitoring"


def _unboxed(text: str) -> str:
    """The table's text with borders and line breaks gone, to find values folded in cells."""
    return re.sub(r"[\s│┃|]+", "", text)


def test_config_show_keeps_every_uri_readable_at_80_columns(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("ETA_DATABASE_URL", LONG_DB)
    code, out, _ = run_cli(capsys, "config", "show")
    assert code == 0
    _lines_fit(out)
    assert "…" not in out
    redacted = LONG_DB.replace("secret", "***")
    value_column = "".join(
        cells[2].strip()
        for cells in (line.split("│") for line in out.splitlines())
        if len(cells) >= 4
    )
    assert redacted in value_column  # folded over several lines, never cut
    assert "secret" not in out


def test_piped_output_is_laid_out_wider_than_80(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["ETA_DATABASE_URL"] = LONG_DB
    proc = subprocess.run(
        [sys.executable, "-m", "eta_cli", "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "database_url" in line)
    assert LONG_DB.replace("secret", "***") in row  # one line: not folded at 80
    assert max(len(line) for line in proc.stdout.splitlines()) > 80


@pytest.mark.slow
def test_register_list_keeps_versions_and_runs_whole_at_80_columns(settings, monkeypatch, capsys):
    from helpers_model import log_and_register, tiny_model

    from eta_cli import registration, tracking

    for _ in range(2):
        version = log_and_register(settings, tiny_model())
    client = tracking.client_for(settings)
    client.set_model_version_tag(
        settings.model_name,
        version,
        registration.TAG_DECISION,
        "challenger: MAE 101.2 s is not better than the champion's 100.0 s by the margin",
    )
    runs = [client.get_model_version(settings.model_name, v).run_id for v in ("1", "2")]
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli(capsys, "register", "--list")
    assert code == 0, err
    _lines_fit(out)
    assert "…" not in out
    for run_id in runs:
        assert run_id[:8] in out
    assert re.search(r"│\s+1\s+│", out) and re.search(r"│\s+2\s+│", out)
    assert "bythemargin" in _unboxed(out)
