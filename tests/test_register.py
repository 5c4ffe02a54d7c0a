"""``eta register`` and the registry API on the embedded default (SQLite + local artifacts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eta_cli import registry, schema, synthetic
from eta_cli.cli import main
from eta_cli.config import load_settings


def write_orders(path: Path, n: int = 3000, seed: int = 0) -> Path:
    """Clean orders as ingest writes them (order_id, clean columns, target, order_date)."""
    raw = synthetic.generate_orders(n, seed=seed, messy=False)
    raw.insert(0, schema.ORDER_ID, [f"s{seed}-{i:06d}" for i in range(len(raw))])
    raw[schema.TARGET] = (raw[schema.DELIVERED_AT] - raw[schema.CREATED_AT]).dt.total_seconds()
    raw[schema.ORDER_DATE] = raw[schema.CREATED_AT].dt.strftime("%Y-%m-%d")
    raw[list(schema.CLEAN_COLUMNS)].to_parquet(path, index=False)
    return path


def eta(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def eta_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    code, out, err = eta(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def train_run(capsys, data: Path, rounds: int) -> dict:
    return eta_json(capsys, "train", "--data", str(data), "--max-rounds", str(rounds))


def test_champion_challenger_lifecycle(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the --list table's content, not its layout
    data = write_orders(tmp_path / "orders.parquet")
    settings = load_settings()

    # 1. First registration: no champion yet -> champion, whatever its quality.
    weak = train_run(capsys, data, 1)
    first = eta_json(capsys, "register")
    assert first["action"] == "champion"
    assert first["version"] == "1"
    assert first["aliases"] == ["champion"]
    assert first["run_id"] == weak["run_id"]
    assert "first registration" in first["reason"]
    assert registry.resolve_version(settings, "eta", "champion") == "1"

    # 2. A clearly better model beats the champion on the same test orders -> champion.
    good = train_run(capsys, data, 200)
    assert good["metrics"]["mae"] < weak["metrics"]["mae"]
    second = eta_json(capsys, "register")  # best run by test MAE = the good one
    assert second["run_id"] == good["run_id"]
    assert second["action"] == "champion", second["reason"]
    assert second["champion_version"] == "1"
    assert second["candidate_mae"] < second["champion_mae"] * (1 - settings.promotion_margin)
    # Both were scored on the candidate run's test split: the candidate's score is its own.
    assert second["candidate_mae"] == pytest.approx(good["metrics"]["mae"], rel=1e-6)
    assert second["compared_rows"] == good["rows"]["test"]
    assert "beats champion" in second["reason"]
    assert registry.resolve_version(settings, "eta", "champion") == "2"

    # 3. A worse model is refused as champion -> challenger, with the reason tagged.
    worse = train_run(capsys, data, 1)
    code, out, err = eta(capsys, "register", "--run-id", worse["run_id"])
    assert code == 0, err
    assert "challenger" in out and "does not beat champion" in out
    assert registry.resolve_version(settings, "eta", "champion") == "2"
    assert registry.resolve_version(settings, "eta", "challenger") == "3"
    from mlflow import MlflowClient

    client = MlflowClient(settings.effective_tracking_uri, settings.effective_registry_uri)
    tags = client.get_model_version("eta", "3").tags
    assert tags["eta.gate_decision"] == "challenger"
    assert "does not beat champion" in tags["eta.gate_reason"]
    assert "margin" in tags["eta.gate_reason"]

    # The champion's MAE in the reason is the champion re-scored on the candidate's test orders.
    test_orders = registry.run_artifact_frame(
        client, worse["run_id"], registry.TEST_ARTIFACT, "test split"
    )
    champion = registry.load_model(settings)
    champion_mae = float(
        np.mean(
            np.abs(
                champion.model.predict_frame(test_orders)["eta_p50_s"] - test_orders[schema.TARGET]
            )
        )
    )
    assert f"champion v2 MAE {champion_mae:.1f} s" in tags["eta.gate_reason"]

    # Registering the same run again creates no duplicate version.
    again = eta_json(capsys, "register", "--run-id", worse["run_id"])
    assert again["action"] == "unchanged" and again["version"] == "3"

    # 4. --force overrides the gate.
    forced_run = train_run(capsys, data, 2)
    forced = eta_json(capsys, "register", "--run-id", forced_run["run_id"], "--force")
    assert forced["action"] == "champion"
    assert forced["version"] == "4"
    assert "forced" in forced["reason"]
    assert registry.resolve_version(settings, "eta", "champion") == "4"

    # 5. --promote rolls back to version 2.
    rolled = eta_json(capsys, "register", "--promote", "2")
    assert rolled["action"] == "promoted"
    assert rolled["aliases"] == ["champion"]
    assert rolled["champion_version"] == "4"
    assert registry.load_model(settings).version == "2"

    # 6. --list shows every version, its aliases and metrics; never the deprecated stages.
    listing = eta_json(capsys, "register", "--list")
    by_version = {row["version"]: row for row in listing["versions"]}
    assert list(by_version) == ["4", "3", "2", "1"]
    assert by_version["2"]["aliases"] == ["champion"]
    assert by_version["3"]["aliases"] == ["challenger"]
    assert by_version["2"]["metrics"]["test_mae"] == pytest.approx(good["metrics"]["mae"], rel=1e-4)
    for mv in client.search_model_versions("name = 'eta'"):
        assert mv.current_stage in (None, "None", "")
    code, out, err = eta(capsys, "register", "--list")
    assert code == 0, err
    assert "champion" in out and "challenger" in out


@pytest.fixture
def registered(tmp_path, capsys) -> dict:
    data = write_orders(tmp_path / "orders.parquet", n=2500, seed=3)
    run = train_run(capsys, data, 40)
    reg = eta_json(capsys, "register")
    return {"run": run, "reg": reg, "data": data}


def test_load_model_by_every_uri(registered, tmp_path) -> None:
    settings = load_settings()
    run_id = registered["run"]["run_id"]
    orders = pd.read_parquet(registered["data"]).tail(50)
    champion = registry.load_model(settings)
    assert (champion.name, champion.version, champion.alias) == ("eta", "1", "champion")
    assert champion.run_id == run_id
    assert champion.uri == "models:/eta@champion"
    assert champion.metrics["test_mae"] == pytest.approx(registered["run"]["metrics"]["mae"])
    assert champion.trained_at == registered["run"]["trained_at"]
    expected = champion.model.predict_frame(orders).to_numpy()

    for uri in ("models:/eta/1", "models:/eta/latest", f"runs:/{run_id}/model"):
        loaded = registry.load_model(settings, uri)
        np.testing.assert_array_equal(loaded.model.predict_frame(orders).to_numpy(), expected)
        assert loaded.run_id == run_id
    folder = champion.model.save(tmp_path / "exported")
    local = registry.load_model(settings, str(folder))
    np.testing.assert_array_equal(local.model.predict_frame(orders).to_numpy(), expected)
    assert local.version is None and local.run_id == run_id


def test_reference_sample(registered) -> None:
    settings = load_settings()
    reference = registry.reference_sample(settings)
    assert len(reference) == registered["run"]["rows"]["train"]
    assert {"order_id", "delivery_seconds", "eta_p10_s", "eta_p50_s", "eta_p90_s"} <= set(
        reference.columns
    )
    assert set(schema.INPUT_COLUMNS) <= set(reference.columns)
    same = registry.reference_sample(settings, f"runs:/{registered['run']['run_id']}/model")
    pd.testing.assert_frame_equal(reference, same)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (None, "no model 'eta' with alias 'champion'"),
        ("models:/eta@staging", "no model 'eta' with alias 'staging'"),
        ("models:/eta/7", "no version 7 of model 'eta'"),
        ("models:/eta", "names no version or alias"),
        ("s3x://what", "not supported"),
    ],
)
def test_load_model_not_found_messages(tmp_path, uri, message) -> None:
    settings = load_settings()
    with pytest.raises(registry.ModelNotFoundError, match=message) as info:
        registry.load_model(settings, uri)
    if uri is None:
        assert "run `eta train` and `eta register` first" in str(info.value)
        assert settings.effective_registry_uri in str(info.value)


def test_load_model_bad_local_folder(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(registry.ModelNotFoundError, match="not a model folder"):
        registry.load_model(load_settings(), str(tmp_path / "empty"))


def test_resolve_version_unset_alias_is_none(tmp_path) -> None:
    assert registry.resolve_version(load_settings(), "eta", "champion") is None


def test_register_errors_are_one_line(tmp_path, capsys, registered) -> None:
    for args, message in (
        (("register", "--promote", "9"), "has no version '9'; versions: 1"),
        (("register", "--run-id", "0123456789abcdef"), "no run '0123456789abcdef'"),
        (("register", "--list", "--promote", "1"), "use only one of"),
    ):
        code, _out, err = eta(capsys, *args)
        assert code == 2, err
        assert message in err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_register_with_no_training_run(tmp_path, capsys) -> None:
    code, _out, err = eta(capsys, "register")
    assert code == 2
    assert "no finished training run" in err and "eta train" in err
