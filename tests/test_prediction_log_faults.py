"""Fault injection: the prediction log's PostgreSQL is stopped and restarted while the
service answers. The service stays up, every prediction is answered, the rows lost while
the database was down are counted in /metrics, and logging resumes by itself.

Uses a private PostgreSQL (tests/helpers_postgres.py): the machine's shared server must
not be stopped while other tests use it."""

from __future__ import annotations

import pytest
from helpers_model import fake_loaded, sample_orders
from helpers_postgres import PrivatePostgres, binaries, logged_predictions

from eta_cli.serve import ModelProvider, create_app
from eta_cli.serve.prediction_log import PredictionLog

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(binaries() is None, reason="no PostgreSQL binaries (initdb, pg_ctl)"),
]
ORDERS = sample_orders(3, with_id=False)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.slow
def test_postgres_stopped_and_restarted_while_serving(settings):
    with PrivatePostgres() as pg:
        url = pg.create_database("eta_fault")
        log = PredictionLog(url, 10_000, batch_rows=20, flush_interval_s=0.05).start()
        client = create_app(
            settings, ModelProvider.fixed(settings, fake_loaded("1")), log
        ).test_client()

        def predict(n: int, tag: str) -> None:
            for i in range(n):
                order = {**ORDERS[i % len(ORDERS)], "order_id": f"{tag}-{i}"}
                assert client.post("/predict", json=order).status_code == 200

        predict(40, "before")
        assert log.flush(20)
        assert logged_predictions(url) == 40

        pg.stop()
        predict(40, "down")  # answered while the database is gone
        assert log.flush(30)
        assert client.get("/health").status_code == 200
        metrics = client.get("/metrics").get_data(as_text=True)
        assert _metric(metrics, "eta_prediction_log_errors_total") == 40
        assert _metric(metrics, "eta_prediction_log_written_total") == 40

        pg.start()
        predict(40, "after")
        assert log.flush(30)
        log.close()
        stats = log.stats()
        assert stats["written"] == 80 and stats["errors"] == 40 and stats["rejected"] == 0
        # Logged rows == answered requests - counted drops.
        assert logged_predictions(url) == 120 - stats["errors"] - stats["dropped"]
