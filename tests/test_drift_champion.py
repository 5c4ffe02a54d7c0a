"""The defaults of ``eta drift-report``: champion reference, newest ingested orders, prediction log.

Real ingest, a real (small) training run registered as champion, and the service's
real prediction-log writer; nothing is faked.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from eta_cli import ingest, lake, registration, registry, train
from eta_cli.config import Settings
from eta_cli.monitor import drift


@pytest.fixture
def champion(settings: Settings) -> registry.LoadedModel:
    ingest.ingest(settings, [], synthetic=4000, seed=0)
    trained = train.train(settings, max_rounds=30)
    registration.register(settings, run_id=trained.run_id)
    return registry.load_model(settings)


@pytest.mark.slow
def test_defaults_compare_newest_orders_with_the_champions_reference(
    settings: Settings, champion: registry.LoadedModel
) -> None:
    newest = drift.drift_report(settings)
    assert newest.reference_source.startswith("reference sample of models:/eta@champion")
    assert newest.current_source.startswith("ingested orders of 2015-02-17")
    assert newest.model_version == champion.version == "1"
    assert newest.prediction_source == "scored"  # reference logged, current scored
    # Quality: delivery times are known for ingested orders; training metrics attached.
    quality = newest.quality
    assert quality is not None and quality.rows == newest.current_sampled_rows
    assert quality.training["mae_s"] == pytest.approx(champion.metrics["test_mae"])
    assert quality.mae_vs_training == pytest.approx(quality.mae_s / quality.training["mae_s"])
    # A small day is tested with p-values, and a stable day is not called drift.
    assert newest.current_rows < 1000
    assert {c.method for c in newest.columns} == {"ks", "chisquare"}
    assert newest.dataset_drift is False

    # A drifted batch arrives after the newest orders; a week's window of the lake,
    # measured back from the newest order, now holds only drifted orders and shows it.
    ingest.ingest(settings, [], synthetic=3000, seed=0, drift=True)
    last = lake.read_orders(settings, columns=["created_at"])["created_at"].max()
    assert last > pd.Timestamp("2015-02-18")  # the day after the base period's newest
    week = drift.drift_report(settings, since="7d")
    assert week.current_source.startswith(f"ingested orders since {last - pd.Timedelta('7d'):%F}")
    assert week.dataset_drift is True


@pytest.mark.slow
def test_prediction_log_window_joins_actual_delivery_times(
    settings: Settings, champion: registry.LoadedModel
) -> None:
    from eta_cli.serve.prediction_log import LogEntry, PredictionLog

    orders = lake.read_orders(settings).sort_values("created_at").tail(1200)
    # As a client sends them: JSON values, ISO timestamps.
    columns = list(drift.schema.INPUT_COLUMNS)
    records = json.loads(orders[columns].to_json(orient="records", date_format="iso"))
    values = champion.model.predict_frame(orders).to_numpy()
    log = PredictionLog(settings.effective_database_url, capacity=10_000).start()
    now = time.time()
    for start in range(0, len(records), 100):
        part = slice(start, start + 100)
        log.submit(
            LogEntry(
                request_id=f"r{start}",
                predicted_at=now - 3600,
                model_name="eta",
                model_version="1",
                latency_ms=4.0,
                records=records[part],
                order_ids=list(orders["order_id"].iloc[part]),
                values=values[part],
            )
        )
    # An old prediction outside the window, and one order asked for twice.
    log.submit(LogEntry("old", now - 3 * 86400, "eta", "1", 4.0, records[:1], ["x"], values[:1]))
    log.submit(
        LogEntry(
            "again",
            now - 60,
            "eta",
            "1",
            4.0,
            records[:1],
            [orders["order_id"].iloc[0]],
            values[:1],
        )
    )
    assert log.flush(30)
    log.close()

    result = drift.drift_report(settings, current="predictions", since="24h")
    assert result.current_source.startswith("prediction log since")
    assert result.current_rows == 1200  # window applied, repeat counted once
    assert result.prediction_source == "logged"
    assert result.quality is not None and result.quality.rows == 1200
    expected_mae = float(np.mean(np.abs(orders["delivery_seconds"].to_numpy() - values[:, 1])))
    assert result.quality.mae_s == pytest.approx(expected_mae, rel=1e-6)
    assert any("1200 of 1200 logged predictions" in note for note in result.notes)
