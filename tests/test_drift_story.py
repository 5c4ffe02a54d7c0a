"""A drift story that matches reality: drifted orders arrive after the lake's newest
orders, the champion is visibly wrong on them, and the README's walk-through (ingest,
train, register, then ``eta pipeline --synthetic N --drift``) detects the drift on its
first pipeline run, retrains on data that includes the new period and promotes."""

from __future__ import annotations

import json

import pytest

from eta_cli import pipeline, schema
from eta_cli.cli import main
from eta_cli.config import Settings
from eta_cli.lake import read_orders

ROUNDS = "40"  # a real booster, trained in seconds


def eta(*args: str) -> int:
    """``eta ARGS`` as the console script runs it; its exit code."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0)


@pytest.mark.slow
def test_readme_walk_through_detects_drift_first_time_and_promotes(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from eta_cli import registration, tracking

    assert eta("ingest", "--synthetic", "4000", "--seed", "42") == 0
    base_newest = read_orders(settings, columns=[schema.CREATED_AT])[schema.CREATED_AT].max()
    assert eta("train", "--max-rounds", ROUNDS) == 0
    assert eta("register") == 0
    capsys.readouterr()

    # The first pipeline run after registering: no earlier run remembered anything.
    code = eta("pipeline", "--synthetic", "4000", "--seed", "42", "--drift", "--json")
    out = capsys.readouterr().out
    assert code == pipeline.EXIT_DRIFT_PROMOTED, out
    result = json.loads(out)
    assert result["dataset_drift"] is True
    steps = {s["name"]: s for s in result["steps"]}
    written = steps["ingest"]["data"]["ingest"]["rows_written"]
    report = steps["drift"]["data"]["report"]
    # Only the orders new to the champion are compared: the drifted batch, nothing else.
    assert report["current"]["rows"] == written > 3900

    # The drifted orders arrived after every order the lake held.
    orders = read_orders(settings, columns=[schema.CREATED_AT])[schema.CREATED_AT]
    assert (orders > base_newest).sum() == written
    assert orders[orders > base_newest].min().normalize() > base_newest.normalize()

    # The gate scored both on the newest orders: the champion's error there rose visibly
    # above its own test error, and the retrained model (trained on data including the
    # new period) beats it by the margin.
    client = tracking.configure(settings)
    first_run = client.get_model_version(settings.model_name, "1").run_id
    champion_test_mae = client.get_run(first_run).data.metrics["test_mae"]
    versions = {v["version"]: v for v in registration.list_versions(settings)}
    assert "champion" in versions["2"]["aliases"]
    reason = versions["2"]["reason"]
    assert "beats champion" in reason, reason
    old_mae = float(reason.split("champion v1 MAE ")[1].split(" s")[0])
    assert old_mae > 1.15 * champion_test_mae, (old_mae, champion_test_mae)
