"""Order ids that survive: a source's own ids are kept, orders without one get the id
derived from their order-time fields on every path (ingest, eta predict, eta serve),
so a prediction joins its delivery outcome ingested later."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from helpers_model import fake_loaded, sample_orders

from eta_cli import ingest, schema, validation
from eta_cli.cli import main
from eta_cli.config import Settings, load_settings
from eta_cli.lake import read_orders
from eta_cli.monitor import database
from eta_cli.order_ids import (
    DERIVED_FROM,
    ORDER_ID_VERSION,
    VERSION_KEY,
    derive_order_ids,
    derive_record_ids,
)
from eta_cli.predict import LocalPredictor
from eta_cli.predict.files import predict_files
from eta_cli.serve import ModelProvider, create_app
from eta_cli.serve.prediction_log import PredictionLog


def lake_settings(tmp_path: Path) -> Settings:
    return load_settings(
        overrides={"home": str(tmp_path / "eta-home"), "data_uri": str(tmp_path / "lake")}
    )


def outcome_rows(orders: list[dict[str, Any]], ids: list[str | None] | None = None) -> list[dict]:
    """The delivered orders as the platform exports them: the order, its delivery time."""
    rows = []
    for i, order in enumerate(orders):
        created = datetime.strptime(order["created_at"], "%Y-%m-%d %H:%M:%S")
        row = {k: ("" if v is None else v) for k, v in order.items() if k != "order_id"}
        row["actual_delivery_time"] = str(created + timedelta(minutes=40 + i))
        if ids is not None:
            row["order_id"] = ids[i] or ""
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def lake_ids(settings: Settings) -> dict[datetime, str]:
    """order id by created_at (each sample order has its own minute)."""
    frame = read_orders(settings, columns=[schema.ORDER_ID, schema.CREATED_AT])
    stamps = [stamp.to_pydatetime() for stamp in frame[schema.CREATED_AT]]
    return dict(zip(stamps, frame[schema.ORDER_ID], strict=True))


def created(order: dict[str, Any]) -> datetime:
    return datetime.strptime(order["created_at"], "%Y-%m-%d %H:%M:%S")


def test_a_source_keeps_its_own_ids_checked_and_deduplicated(tmp_path, capsys):
    orders = sample_orders(6, seed=5)
    # The same order exported again (A-1 once more, other values): a repeat of its day.
    orders[2] = {**orders[0], "subtotal": orders[0]["subtotal"] + 100}
    given = ["A-1", "A-2", "A-1", "bad id!", "", "550e8400-e29b-41d4-a716-446655440000"]
    path = write_csv(tmp_path / "orders.csv", outcome_rows(orders, given))
    settings = lake_settings(tmp_path)

    code = 0
    try:
        main(["ingest", str(path), "--output", str(tmp_path / "lake"), "--json"])
    except SystemExit as exited:
        code = int(exited.code or 0)
    assert code == 0, capsys.readouterr().err

    ids = lake_ids(settings)
    assert ids[created(orders[0])] == "A-1"
    assert ids[created(orders[1])] == "A-2"
    assert ids[created(orders[5])] == given[5]
    # The blank id is derived, exactly as the service derives it for the same order.
    derived = ids[created(orders[4])]
    assert derived.startswith(f"{ORDER_ID_VERSION}-")
    order = {k: v for k, v in orders[4].items() if k != "order_id"}
    client = create_app(settings, ModelProvider.fixed(settings, fake_loaded())).test_client()
    assert client.post("/predict", json=order).get_json()["order_id"] == derived
    assert len(ids) == 4

    quarantine = pd.concat(
        pq.read_table(p).to_pandas() for p in (tmp_path / "lake" / "quarantine").iterdir()
    )
    reasons = dict(zip(quarantine["order_id"], quarantine["reason"], strict=True))
    assert reasons == {"A-1": "duplicate_order", "bad id!": "invalid_order_id"}
    # Every partition says which id rule it holds.
    for part in (tmp_path / "lake" / "orders").glob("*/part-0.parquet"):
        assert pq.read_metadata(part).metadata[VERSION_KEY] == ORDER_ID_VERSION.encode()


def test_eta_predict_without_ids_joins_the_outcomes_ingested_later(tmp_path):
    orders = [{k: v for k, v in o.items() if k != "order_id"} for o in sample_orders(8, seed=9)]
    settings = lake_settings(tmp_path)
    predictor = LocalPredictor(fake_loaded())

    one_by_one = [predictor.predict([order])[0].order_id for order in orders[:3]]
    together = [outcome.order_id for outcome in predictor.predict(orders)]
    file_in = write_csv(tmp_path / "orders.csv", outcome_rows(orders))
    result = predict_files(settings, str(file_in), str(tmp_path / "out.parquet"), model=predictor)
    assert result.rows == len(orders)
    from_file = pq.read_table(tmp_path / "out.parquet").column("order_id").to_pylist()

    # The platform later exports the delivered orders, without any id.
    ingest.ingest(settings, [str(write_csv(tmp_path / "outcomes.csv", outcome_rows(orders)))])
    ids = lake_ids(settings)
    expected = [ids[created(order)] for order in orders]
    assert all(order_id.startswith("v2-") for order_id in expected)
    assert len(set(expected)) == len(orders)
    assert together == from_file == expected
    assert one_by_one == expected[:3]


def test_the_service_returns_and_logs_the_id_its_outcome_gets(tmp_path):
    orders = [{k: v for k, v in o.items() if k != "order_id"} for o in sample_orders(5, seed=3)]
    orders[1]["order_id"] = "platform-77"  # one client does send its own id
    settings = lake_settings(tmp_path)
    url = settings.effective_database_url
    log = PredictionLog(url, 100, flush_interval_s=0.02).start()
    client = create_app(settings, ModelProvider.fixed(settings, fake_loaded()), log).test_client()
    single = client.post("/predict", json=orders[0]).get_json()
    batch = client.post("/predict", json={"orders": orders}).get_json()["predictions"]
    log.close()

    ingest.ingest(
        settings,
        [
            str(
                write_csv(
                    tmp_path / "outcomes.csv",
                    outcome_rows(orders, [o.get("order_id") for o in orders]),
                )
            )
        ],
    )
    ids = lake_ids(settings)
    expected = [ids[created(order)] for order in orders]
    assert expected[1] == "platform-77"
    assert single["order_id"] == expected[0]
    assert [p["order_id"] for p in batch] == expected
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        logged = conn.execute(sa.select(database.predictions.c.order_id)).scalars().all()
    engine.dispose()
    assert sorted(logged) == sorted([expected[0], *expected])  # the writer may batch either


def test_derived_ids_ignore_the_delivery_time_and_spelling_but_not_the_order():
    base = {
        "created_at": [datetime(2015, 2, 6, 22, 24, 17)],
        "store_id": [1845],
        "store_primary_category": ["american"],
        "total_items": [4],
        "subtotal": [3441],
        "num_distinct_items": [4],
    }
    same = derive_order_ids(base).to_pylist()
    assert same == derive_order_ids({**base, "actual_delivery_time": ["anything"]}).to_pylist()
    assert same == derive_order_ids({**base, "store_primary_category": [" american "]}).to_pylist()
    assert same == derive_order_ids({**base, "subtotal": [3441.0], "market_id": [None]}).to_pylist()
    assert same != derive_order_ids({**base, "subtotal": [3442]}).to_pylist()


def test_a_lake_with_older_ids_is_refused_with_the_command_to_re_ingest(tmp_path, capsys):
    orders = sample_orders(3, seed=1)
    settings = lake_settings(tmp_path)
    source = write_csv(tmp_path / "orders.csv", outcome_rows(orders))
    ingest.ingest(settings, [str(source)])
    for part in (tmp_path / "lake" / "orders").glob("*/part-0.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.replace_schema_metadata({}), part)  # as an older eta wrote it
    before = {p: p.read_bytes() for p in (tmp_path / "lake" / "orders").rglob("*.parquet")}

    with pytest.raises(SystemExit) as exited:
        main(["ingest", str(source), "--output", str(tmp_path / "lake")])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "order ids of version v1" in err and "eta ingest SOURCES --output NEW_LAKE" in err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in before} == before


def test_a_requests_orders_get_the_ids_ingest_derives() -> None:
    """The per-request path (plain Python, for speed) and the vectorised one that ingest
    runs agree on every order: missing fields, blank and padded text, aware times."""
    import pyarrow as pa

    records = [validation.validate_order(o)[0] for o in sample_orders(300, seed=11)]
    records = [r for r in records if r is not None]
    records[0] = {**records[0], "store_primary_category": "  thai  ", "total_items": None}
    records[1] = {**records[1], "store_primary_category": "   "}
    aware = records[2][schema.CREATED_AT].replace(tzinfo=UTC) + timedelta(hours=0)
    records[2] = {**records[2], schema.CREATED_AT: aware.astimezone(timezone(timedelta(hours=5)))}
    columns = {c.name: pa.array([r.get(c.name) for r in records]) for c in DERIVED_FROM}
    columns[schema.CREATED_AT] = pa.array(
        [
            r[schema.CREATED_AT].astimezone(UTC).replace(tzinfo=None)
            if r[schema.CREATED_AT].tzinfo
            else r[schema.CREATED_AT]
            for r in records
        ]
    )
    assert derive_record_ids(records) == derive_order_ids(columns).to_pylist()
    assert derive_record_ids(records[:1]) != derive_record_ids(records[1:2])
