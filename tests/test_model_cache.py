"""The fast path of ``eta predict``: cheap alias look-up, cached model files, native booster.

Freshness first: after ``eta register --promote N``, or after the alias is moved
directly through MLflow's client, the very next ``eta predict`` answers with version N,
on the embedded default (SQLite), PostgreSQL and an HTTP tracking server. The cached
path gives exactly the numbers of the full MLflow path, and a one-off prediction with a
warm cache imports neither mlflow nor xgboost.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_model import sample_orders, tiny_model
from test_train_backends import mlflow_server  # noqa: F401  (fixture)

from eta_cli import features, model_cache, registry, registry_lookup, tracking
from eta_cli.booster import NativeBooster
from eta_cli.cli import main
from eta_cli.config import Settings, load_settings
from eta_cli.model import BOOSTER_FILE, MODEL_DIR_ARTIFACT, EtaModel

ORDERS = sample_orders(5, seed=31, with_id=True)
HEAVY = ("mlflow", "xgboost", "evidently", "dask", "distributed", "sklearn", "sqlalchemy")


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def register_tiny(settings: Settings, tmp_path: Path, scale: float) -> str:
    """Log a tiny model as eta's pyfunc in a run and register it; returns the version."""
    import mlflow

    from eta_cli.pyfunc import EtaPyfunc

    client = tracking.configure(settings)
    model_dir = tiny_model(scale=scale).save(tmp_path / f"model-{scale}")
    experiment = tracking.experiment_id(client, settings)
    with tracking.quiet_stdout(), mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.pyfunc.log_model(
            name=registry.MODEL_ARTIFACT,
            python_model=EtaPyfunc(),
            artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
            pip_requirements=[],
        )
    if not client.search_registered_models(f"name = '{settings.model_name}'"):
        client.create_registered_model(settings.model_name)
    mv = client.create_model_version(
        settings.model_name,
        source=f"models:/{info.model_id}",
        run_id=run.info.run_id,
        model_id=info.model_id,
    )
    return str(mv.version)


def predict_json(capsys: pytest.CaptureFixture, orders_file: Path) -> dict:
    code, out, err = run_cli(capsys, "predict", "--json", str(orders_file), "--format", "json")
    assert code == 0, err
    return json.loads(out)


def p50s(answer: dict) -> list[float]:
    return [p["eta_p50_s"] for p in answer["predictions"]]


def check_freshness(tmp_path: Path, capsys: pytest.CaptureFixture) -> Settings:
    """Two versions; the champion moved by `eta register --promote` and by MLflow's client;
    every next `eta predict` answers with the version the alias names now."""
    settings = load_settings()
    v1 = register_tiny(settings, tmp_path, 1.0)
    v2 = register_tiny(settings, tmp_path, 2.0)
    orders_file = tmp_path / "orders.json"
    orders_file.write_text(json.dumps(ORDERS))

    assert run_cli(capsys, "register", "--promote", v1)[0] == 0
    first = predict_json(capsys, orders_file)  # full path; writes the cache
    assert first["model_version"] == v1
    assert model_cache.entry_dir(settings, "eta", v1).joinpath(model_cache.MANIFEST).is_file()
    assert predict_json(capsys, orders_file) == first  # cached

    assert run_cli(capsys, "register", "--promote", v2)[0] == 0
    second = predict_json(capsys, orders_file)
    assert second["model_version"] == v2
    assert p50s(second) != p50s(first)
    assert predict_json(capsys, orders_file) == second  # cached

    client = tracking.client_for(settings)
    with pytest.MonkeyPatch.context() as patch:  # both versions cached: MLflow not needed
        patch.setattr(registry, "load_model", _must_not_load)
        client.set_registered_model_alias(settings.model_name, "champion", v1)
        assert predict_json(capsys, orders_file) == first
        client.set_registered_model_alias(settings.model_name, "champion", v2)
        assert predict_json(capsys, orders_file) == second

    # The cached model answers what the full MLflow path answers, number for number.
    full = registry.load_model(settings).model.predict_records(_records())
    cached = model_cache.load_model(settings)
    assert isinstance(cached.model.booster, NativeBooster)
    assert cached.version == v2
    np.testing.assert_array_equal(cached.model.predict_records(_records()), full)
    return settings


def _must_not_load(*args: object) -> None:
    raise AssertionError("the cached version should have been used")


def _records() -> list[dict]:
    from eta_cli import validation

    return [validation.validate_order(order)[0] for order in ORDERS]


def test_freshness_on_the_embedded_default(tmp_path, capsys):
    settings = check_freshness(tmp_path, capsys)
    # A one-off prediction in a new process, cache warm: neither mlflow nor xgboost imported.
    orders_file = tmp_path / "orders.json"
    script = (
        "import sys, json\n"
        "from eta_cli.cli import main\n"
        "try:\n"
        f"    main(['predict', '--json', {str(orders_file)!r}, '--format', 'json'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    answer_text, imported = done.stdout.rsplit("\n", 2)[0], done.stdout.strip().splitlines()[-1]
    assert json.loads(answer_text)["model_version"] == "2"
    assert json.loads(imported) == []

    # A damaged entry (one flipped byte) is not used: the answer stays right, and the entry
    # is written again.
    entry = model_cache.entry_dir(settings, "eta", "2")
    booster = entry / BOOSTER_FILE
    data = bytearray(booster.read_bytes())
    data[len(data) // 2] ^= 0xFF
    booster.write_bytes(bytes(data))
    assert model_cache._read(settings, _row(settings, "2"), "champion", "x") is None
    before = predict_json(capsys, orders_file)
    assert before["model_version"] == "2"
    assert model_cache._read(settings, _row(settings, "2"), "champion", "x") is not None
    # An entry written for another source (the registry was re-created) is not used either.
    manifest = json.loads((entry / model_cache.MANIFEST).read_text())
    manifest["source"] = "models:/m-0000"
    (entry / model_cache.MANIFEST).write_text(json.dumps(manifest))
    assert model_cache._read(settings, _row(settings, "2"), "champion", "x") is None
    assert predict_json(capsys, orders_file) == before

    # An alias that does not exist is the registry's clear error, not a cache answer.
    code, _, err = run_cli(
        capsys, "predict", "--json", str(orders_file), "--model", "models:/eta@nope"
    )
    assert code == 2 and "alias 'nope'" in err, err


def _row(settings: Settings, version: str) -> registry_lookup.VersionRow:
    row = registry_lookup.find_version(settings.effective_registry_uri, "eta", version=version)
    assert row is not None
    return row


@pytest.mark.postgres
def test_freshness_on_postgresql(pg_url, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pg_url)
    settings = check_freshness(tmp_path, capsys)
    row = registry_lookup.find_version(pg_url, "eta", alias="champion")
    assert row is not None and row.version == "2"
    assert not (tmp_path / "eta-home" / "mlflow.db").exists()
    assert model_cache.registry_key(pg_url) in {
        p.name for p in model_cache.cache_root(settings).iterdir()
    }


@pytest.mark.slow
def test_freshness_on_an_http_tracking_server(mlflow_server, monkeypatch, tmp_path, capsys):  # noqa: F811
    url, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    check_freshness(tmp_path, capsys)
    row = registry_lookup.find_version(url, "eta", alias="champion")
    assert row is not None and row.version == "2"
    assert registry_lookup.find_version(url, "eta", alias="nope") is None
    assert registry_lookup.find_version(url, "eta", version="9") is None


def test_lookup_answers_none_where_it_cannot_be_sure(tmp_path, monkeypatch):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert registry_lookup.find_version(missing, "eta", alias="champion") is None
    assert not (tmp_path / "none.db").exists()  # read-only: nothing created
    assert registry_lookup.find_version("file:///tmp/mlruns", "eta", alias="champion") is None
    assert registry_lookup.find_version("http://127.0.0.1:9", "eta", alias="champion") is None
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    assert registry_lookup.find_version("http://127.0.0.1:9", "eta", version="1") is None


def test_native_booster_predicts_what_xgboost_predicts(tmp_path):
    model = tiny_model()
    folder = model.save(tmp_path / "model")
    native = EtaModel.load(folder, native=True)
    package = EtaModel.load(folder)
    assert isinstance(native.booster, NativeBooster)
    assert native.booster.num_features() == package.booster.num_features()
    matrix = features.build_features(features.columns_from_records(_records()), model.state)
    for rows in (matrix[:1], matrix, matrix.astype(np.float64), matrix[::2]):
        np.testing.assert_array_equal(
            native.booster.inplace_predict(rows), package.booster.inplace_predict(rows)
        )
    copy = pickle.loads(pickle.dumps(native.booster))  # a Dask worker gets it this way
    np.testing.assert_array_equal(
        copy.inplace_predict(matrix), package.booster.inplace_predict(matrix)
    )


def test_help_imports_nothing_heavy():
    """`eta --help` and `eta COMMAND --help` for every command, in a fresh process."""
    script = (
        "import sys\n"
        "from eta_cli.cli import build_app, main\n"
        "import typer.main\n"
        "group = typer.main.get_command(build_app())\n"
        "names = [[]] + [[n] for n in group.commands] + [['config', 'show']]\n"
        "for args in names:\n"
        "    try:\n"
        "        main([*args, '--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), (args, exc.code)\n"
        f"print('IMPORTED', [m for m in {HEAVY!r} if m in sys.modules], len(names))\n"
    )
    env = {k: v for k, v in os.environ.items()}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = [x for x in done.stdout.splitlines() if x.startswith("IMPORTED")][-1]
    assert line.startswith("IMPORTED [] "), line
    assert int(line.split()[-1]) >= 10  # every command was asked
