"""The background prediction-log writer: rows land in SQLite and PostgreSQL, a full queue
drops and counts, the queue is flushed on close, database errors never reach a request."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa
from helpers_model import fake_loaded, sample_orders

from eta_cli import validation
from eta_cli.monitor import database
from eta_cli.serve import ModelProvider, create_app
from eta_cli.serve.prediction_log import LogEntry, PredictionLog

ORDERS = sample_orders(10, with_id=True)


def entry(n: int = 1, request_id: str = "r1", version: str = "1") -> LogEntry:
    records = []
    ids = []
    for order in (ORDERS * (n // len(ORDERS) + 1))[:n]:
        record, order_id, problems = validation.validate_order(order)
        assert not problems
        records.append(record)
        ids.append(order_id)
    values = np.tile(np.array([[600.0, 1200.0, 2400.0, 1500.0]]), (n, 1))
    return LogEntry(request_id, time.time(), "eta", version, 1.5, records, ids, values)


def rows(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            result = conn.execute(
                sa.select(database.predictions).order_by(database.predictions.c.id)
            )
            return [dict(r._mapping) for r in result]
    finally:
        engine.dispose()


def test_rows_land_in_sqlite_with_features_and_outputs(settings):
    url = settings.effective_database_url
    log = PredictionLog(url, 100, flush_interval_s=0.05).start()
    assert log.submit(entry(3, "req-a"))
    assert log.flush(10)
    log.close()
    written = rows(url)
    assert len(written) == 3
    first = written[0]
    assert first["request_id"] == "req-a"
    assert first["order_id"] == ORDERS[0]["order_id"]
    assert first["model_name"] == "eta" and first["model_version"] == "1"
    assert (first["eta_p10_s"], first["eta_p50_s"], first["eta_p90_s"], first["eta_quoted_s"]) == (
        600.0,
        1200.0,
        2400.0,
        1500.0,
    )
    assert first["latency_ms"] == 1.5
    features = (
        first["features"] if isinstance(first["features"], dict) else json.loads(first["features"])
    )
    assert features["store_id"] == ORDERS[0]["store_id"]
    assert features["created_at"] == ORDERS[0]["created_at"].replace(" ", "T")
    assert "order_id" not in features
    assert first["order_created_at"] == datetime.fromisoformat(ORDERS[0]["created_at"])
    assert isinstance(first["predicted_at"], datetime)  # stored as SQLAlchemy stores it
    assert log.stats() == {"written": 3, "dropped": 0, "errors": 0, "rejected": 0, "pending": 0}


@pytest.mark.postgres
def test_rows_land_in_postgresql(pg_url):
    log = PredictionLog(pg_url, 10_000, batch_rows=50, flush_interval_s=0.05).start()
    for i in range(20):
        log.submit(entry(7, f"req-{i}"))
    assert log.flush(20)
    log.close()
    written = rows(pg_url)
    assert len(written) == 140
    assert written[0]["features"]["store_id"] == ORDERS[0]["store_id"]  # JSON column
    assert {r["request_id"] for r in written} == {f"req-{i}" for i in range(20)}
    assert written[0]["predicted_at"].tzinfo is not None


def test_a_full_queue_drops_and_counts(settings):
    log = PredictionLog(settings.effective_database_url, capacity=5)  # writer not started
    assert log.submit(entry(3))
    assert not log.submit(entry(3))  # would exceed 5 rows
    assert log.submit(entry(2))
    assert not log.submit(entry(1))
    assert log.stats()["dropped"] == 4
    assert log.stats()["pending"] == 5
    log.close()  # never started: close writes what is queued
    assert len(rows(settings.effective_database_url)) == 5


def test_steady_traffic_is_written_in_full_batches(settings, monkeypatch):
    """Rows trickling in while a batch is written wait for a full batch (or the flush
    interval) instead of going out a few per transaction."""
    url = settings.effective_database_url
    log = PredictionLog(url, 10_000, batch_rows=50, flush_interval_s=30.0)
    batches: list[int] = []
    insert = log._insert

    def counting_insert(entries):
        batches.append(sum(e.rows for e in entries))
        time.sleep(0.02)  # a slow database: requests keep arriving meanwhile
        insert(entries)

    monkeypatch.setattr(log, "_insert", counting_insert)
    log.start()
    for i in range(400):
        assert log.submit(entry(1, f"req-{i}"))
        time.sleep(0.0005)
    assert log.flush(30)
    log.close()
    assert sum(batches) == 400 and len(rows(url)) == 400
    # Every batch written while traffic flowed was full; only the flush wrote a partial one.
    assert all(n >= 50 for n in batches[:-1]), batches
    assert len(batches) <= 400 // 50 + 1, batches


def test_close_flushes_everything_queued(settings):
    url = settings.effective_database_url
    log = PredictionLog(url, 100_000, batch_rows=500, flush_interval_s=30.0).start()
    for i in range(300):
        log.submit(entry(4, f"r{i}"))
    log.close()  # long flush interval: only close can have written them
    assert len(rows(url)) == 1200
    assert log.stats()["written"] == 1200
    assert not log.submit(entry(1))  # closed: refused and counted, never blocks


def test_database_errors_are_counted_never_raised(tmp_path):
    # A file where the database's folder should be: every connection fails.
    (tmp_path / "blocked").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'blocked' / 'db.sqlite'}"
    log = PredictionLog(url, 100, flush_interval_s=0.02, engine_factory=sa.create_engine).start()
    assert log.submit(entry(2))
    assert log.flush(10)
    assert log.stats()["errors"] == 2 and log.stats()["written"] == 0
    assert log.submit(entry(1))  # still accepting
    log.flush(10)
    log.close()
    assert log.stats()["errors"] == 3


@pytest.mark.postgres
def test_unreachable_postgresql_does_not_fail_requests(settings):
    from conftest import free_port

    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing"
    log = PredictionLog(url, 100, flush_interval_s=0.02).start()
    provider = ModelProvider.fixed(settings, fake_loaded("1"))
    client = create_app(settings, provider, log).test_client()
    order = {k: v for k, v in ORDERS[0].items()}
    for _ in range(3):
        assert client.post("/predict", json=order).status_code == 200
    log.flush(20)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "eta_prediction_log_errors_total 3.0" in metrics
    log.close()


def test_predictions_through_the_app_are_logged(settings):
    url = settings.effective_database_url
    log = PredictionLog(url, 100, flush_interval_s=0.02).start()
    client = create_app(
        settings, ModelProvider.fixed(settings, fake_loaded("4")), log
    ).test_client()
    response = client.post("/predict", json={"orders": ORDERS[:4]}, headers={"X-Request-ID": "rq"})
    body = response.get_json()
    log.close()
    written = rows(url)
    assert [r["order_id"] for r in written] == [o["order_id"] for o in ORDERS[:4]]
    assert {r["request_id"] for r in written} == {"rq"}
    assert {r["model_version"] for r in written} == {"4"}
    assert [round(r["eta_p50_s"], 1) for r in written] == [
        p["eta_p50_s"] for p in body["predictions"]
    ]
    assert all(r["latency_ms"] > 0 for r in written)


def test_driver_rows_carry_what_the_sqlalchemy_rows_carry():
    from eta_cli.serve.prediction_log import ROW_COLUMNS, entry_rows, entry_tuples

    e = entry(3)
    for as_dict, as_tuple in zip(entry_rows(e), entry_tuples(e, sqlite=False), strict=True):
        row = dict(zip(ROW_COLUMNS, as_tuple, strict=True))
        assert json.loads(row.pop("features")) == as_dict.pop("features")
        assert row == as_dict
    sqlite_row = dict(zip(ROW_COLUMNS, entry_tuples(e, sqlite=True)[0], strict=True))
    predicted = datetime.fromtimestamp(e.predicted_at, UTC)
    assert sqlite_row["predicted_at"] == predicted.strftime("%Y-%m-%d %H:%M:%S.%f")


def entry_with_ids(ids: list[str], request_id: str) -> LogEntry:
    """One request's rows with the given order ids (bypassing the HTTP validator, as a
    future bug or another writer might)."""
    base = entry(len(ids), request_id)
    return LogEntry(
        base.request_id, base.predicted_at, "eta", "1", 1.5, base.records, ids, base.values
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_bad_row_never_takes_good_rows_with_it(backend, settings, request):
    """The issue's attack: 300 good orders around a lone surrogate and a NUL id. The
    database refuses those two rows; every good row of their batches is still logged."""
    url = (
        settings.effective_database_url
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    log = PredictionLog(url, 10_000, batch_rows=100, flush_interval_s=30.0)
    good = [f"good-{i}" for i in range(300)]
    log.submit(entry_with_ids(good[:100], "a"))
    log.submit(entry_with_ids([good[100], "\ud800", good[101]], "b"))
    log.submit(entry_with_ids(good[102:200], "c"))
    log.submit(entry_with_ids(["nul\x00id", *good[200:300]], "d"))
    log.start()
    assert log.flush(30)
    stats = log.stats()
    log.close()
    logged = [r["order_id"] for r in rows(url)]
    # SQLite stores a NUL inside text; PostgreSQL refuses it. Neither stores a surrogate.
    stored_bad = ["nul\x00id"] if backend == "sqlite" else []
    assert sorted(logged) == sorted(good + stored_bad)
    assert stats["written"] == len(logged) and stats["errors"] == 0
    assert stats["rejected"] == 302 - len(logged)


BAD_IDS = ["\ud800", "nul\x00id", "</script>", " padded", "a" * 65, "tab\tid", "é"]
BAD_CATEGORIES = ["\ud800", "pizza\x00", "line\nbreak", "bell\x07", "\u202eevil", "\x85"]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_the_issue_attack_over_http_is_refused_and_every_good_order_logged(
    backend, settings, request
):
    """300 good orders sent around ids that are a lone surrogate or hold a NUL (and
    other texts outside the alphabets): each bad one is a 422 naming its field, every
    good one is answered and logged."""
    url = (
        settings.effective_database_url
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    log = PredictionLog(url, 10_000, flush_interval_s=0.05).start()
    client = create_app(
        settings, ModelProvider.fixed(settings, fake_loaded("1")), log
    ).test_client()
    base = {k: v for k, v in ORDERS[0].items() if k != "order_id"}
    refused = []
    for i in range(300):
        if i % 50 == 25:
            bad_id = BAD_IDS[(i // 50) % len(BAD_IDS)]
            body = json.dumps({**base, "order_id": bad_id})
            refused.append(client.post("/predict", data=body, content_type="application/json"))
            body = json.dumps(
                {"orders": [{**base, "order_id": f"ok-{i}"}, {**base, "order_id": bad_id}]}
            )
            refused.append(client.post("/predict", data=body, content_type="application/json"))
            category = BAD_CATEGORIES[(i // 50) % len(BAD_CATEGORIES)]
            body = json.dumps({**base, "store_primary_category": category})
            refused.append(client.post("/predict", data=body, content_type="application/json"))
        answer = client.post("/predict", json={**base, "order_id": f"good-{i}"})
        assert answer.status_code == 200
    assert log.flush(30)
    log.close()
    for response in refused:
        assert response.status_code == 422, response.get_data(as_text=True)
        fields = [d["field"] for d in response.get_json()["details"]]
        assert fields and all(
            f.endswith("order_id") or f.endswith("store_primary_category") for f in fields
        ), fields
    logged = sorted(r["order_id"] for r in rows(url))
    assert logged == sorted(f"good-{i}" for i in range(300))
    assert log.stats()["rejected"] == 0 and log.stats()["errors"] == 0


@pytest.mark.parametrize(
    "order_id", ["A-1", "demo-0001", "x", "3fa85f64-5717-4562-b3fc-2c963f66afa6", "a.b_c:d", 42]
)
def test_ids_in_the_alphabet_are_accepted(order_id):
    _, clean, problems = validation.validate_order({**ORDERS[0], "order_id": order_id})
    assert not problems and clean == str(order_id)


@pytest.mark.parametrize("category", ["Café & Bar", "pizza", "</script>", "日本料理", ""])
def test_printable_categories_are_accepted(category):
    record, _, problems = validation.validate_order(
        {**ORDERS[0], "store_primary_category": category}
    )
    assert not problems and record["store_primary_category"] == category
