"""``eta predict``: JSON orders in-process and through a server (same numbers), batch files
CSV/Parquet local and on S3 (rejected rows reported in place), and bad input files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_model import ServerThread, log_and_register, sample_orders, tiny_model

from eta_cli import predict, schema
from eta_cli.cli import main
from eta_cli.predict import PredictError, read_orders_json
from eta_cli.predict.files import predict_files
from eta_cli.serve import ModelProvider, create_app

ORDERS = sample_orders(12, seed=9, with_id=True)


@pytest.fixture(autouse=True)
def _forget_mlflow_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow.set_tracking_uri() exports MLFLOW_*_URI: do not let one test's store leak."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tiny_model().save(tmp_path / "model")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


# --- reading JSON orders ---------------------------------------------------------


def test_read_orders_json_forms(tmp_path):
    one = write_json(tmp_path / "one.json", ORDERS[0])
    many = write_json(tmp_path / "many.json", ORDERS[:3])
    batch = write_json(tmp_path / "batch.json", {"orders": ORDERS[:2]})
    lines = tmp_path / "orders.jsonl"
    lines.write_text("\n".join(json.dumps(o) for o in ORDERS[:4]) + "\n\n")
    assert read_orders_json(str(one)) == [ORDERS[0]]
    assert read_orders_json(str(many)) == ORDERS[:3]
    assert read_orders_json(str(batch)) == ORDERS[:2]
    assert read_orders_json(str(lines)) == ORDERS[:4]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", "is empty"),
        ("{not json", "not valid JSON"),
        ('{"a": 1}\n{broken', "not valid JSON Lines.*line 2, column 2"),
        ("[]", "empty list"),
        ("42", "expected an order object"),
    ],
)
def test_read_orders_json_refuses_bad_files(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(PredictError, match=words):
        read_orders_json(str(path))
    with pytest.raises(PredictError, match="no such file"):
        read_orders_json(str(tmp_path / "missing.json"))


# --- in-process and through a server: the same numbers ------------------------------


def test_in_process_and_url_give_identical_answers(tmp_path, settings, model_dir, capsys):
    bad = {**ORDERS[1], "total_items": "three"}
    orders = [ORDERS[0], bad, *ORDERS[2:]]
    path = write_json(tmp_path / "orders.json", orders)

    code, out, _ = run_cli(
        capsys, "predict", "--json", str(path), "--model", str(model_dir), "--format", "json"
    )
    assert code == 1  # one order was invalid; the others are still answered
    local = json.loads(out)

    provider = ModelProvider(settings, str(model_dir))
    assert provider.check().status == "loaded"
    with ServerThread(create_app(settings, provider), threads=2) as server:
        code, out, _ = run_cli(
            capsys, "predict", "--json", str(path), "--url", server.url, "--format", "json"
        )
    assert code == 1
    remote = json.loads(out)

    assert local == remote
    answers = local["predictions"]
    assert len(answers) == len(orders)
    assert answers[1]["error"].startswith("total_items: expected an integer")
    assert answers[1]["order_id"] == ORDERS[1]["order_id"]
    assert [a["index"] for a in answers] == list(range(len(orders)))
    records = [predict.validation.validate_order(o)[0] for o in ORDERS[:1]]
    p50 = tiny_model().predict_records(records)[0][1]
    assert answers[0]["eta_p50_s"] == round(p50, 1)


def test_table_output(tmp_path, settings, model_dir, capsys):
    path = write_json(tmp_path / "order.json", ORDERS[0])
    code, out, _ = run_cli(
        capsys, "predict", "--json", str(path), "--model", str(model_dir), "--format", "table"
    )
    assert code == 0
    p50 = json.loads(
        json.dumps(
            predict.LocalPredictor.from_settings(None, str(model_dir))
            .predict([ORDERS[0]])[0]
            .to_dict()
        )
    )["eta_p50_s"]
    assert "eta_p50_s" in out and f"{p50:.1f}" in out and ORDERS[0]["order_id"] in out


@pytest.mark.slow
def test_default_is_the_registry_champion(tmp_path, settings, capsys):
    log_and_register(settings, tiny_model())
    path = write_json(tmp_path / "order.json", ORDERS[0])
    code, out, err = run_cli(capsys, "predict", "--json", str(path), "--format", "json")
    assert code == 0, err
    body = json.loads(out)
    assert body["model_name"] == "eta" and body["model_version"] == "1"


def test_unreachable_server_is_a_clear_error(tmp_path, capsys):
    from conftest import free_port

    path = write_json(tmp_path / "order.json", ORDERS[0])
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_cli(capsys, "predict", "--json", str(path), "--url", url)
    assert code == 2 and f"cannot reach {url}: is `eta serve` running?" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "give either --json"),
        (["--json", "a.json", "--input", "b.csv", "--output", "c.parquet"], "give either"),
        (["--input", "b.csv"], "--input needs --output"),
        (["--json", "a.json", "--url", "http://x", "--model", "m"], "exclude each other"),
        (["--json", "a.json", "--format", "xml"], "--format"),
    ],
)
def test_option_errors(capsys, args, words):
    code, _, err = run_cli(capsys, "predict", *args)
    assert code == 2 and words in err


# --- batch files ----------------------------------------------------------------------


def orders_frame(n: int, seed: int = 3, messy: bool = True):
    from eta_cli.synthetic import generate_orders

    frame = generate_orders(n, seed, messy=messy)
    frame.insert(0, "order_id", [f"id-{i}" for i in range(n)])
    return frame


def frame_orders(frame, rows: list[int]) -> list[dict]:
    """Orders of a synthetic frame as JSON values (what a client would send)."""
    import pandas as pd

    out = []
    for r in rows:
        order = {}
        for name in [*schema.INPUT_COLUMNS, "order_id"]:
            value = frame.at[r, name]
            if pd.isna(value):
                order[name] = None
            elif name == schema.CREATED_AT:
                order[name] = str(value)
            else:
                order[name] = value.item() if hasattr(value, "item") else value
        out.append(order)
    return out


def test_batch_csv_to_parquet_reports_rejected_rows_in_place(tmp_path, settings, model_dir, capsys):
    from eta_cli.synthetic import write_csv

    frame = orders_frame(3000)
    # Rows the service must refuse: negative dasher counts (as in the real file) and junk.
    frame.loc[5, "total_onshift_dashers"] = -2
    frame.loc[17, "total_items"] = 0
    csv_path = write_csv(frame, tmp_path / "orders.csv")
    text = csv_path.read_text().splitlines()
    header = text[0].split(",")
    cells = text[40].split(",")
    cells[header.index("subtotal")] = "lots"
    text[40] = ",".join(cells)
    csv_path.write_text("\n".join(text) + "\n")
    out_path = tmp_path / "out" / "predictions.parquet"

    code, out, err = run_cli(
        capsys,
        "predict",
        "--input",
        str(csv_path),
        "--output",
        str(out_path),
        "--model",
        str(model_dir),
        "--chunk-rows",
        "500",
        "--format",
        "json",
    )
    assert code == 0, err
    summary = json.loads(out)
    table = pq.read_table(out_path).to_pandas()
    assert len(table) == summary["rows"] == 3000
    assert summary["chunks"] > 1  # streamed
    assert summary["rejected"] == int(table["error"].notna().sum()) >= 3
    assert summary["predicted"] + summary["rejected"] == 3000
    assert list(table["row"]) == list(range(3000))
    rejected = table[table["error"].notna()]
    assert {5, 17, 39} <= set(rejected["row"])
    assert "total_onshift_dashers" in rejected.set_index("row").loc[5, "error"]
    assert "subtotal" in rejected.set_index("row").loc[39, "error"]
    assert rejected["eta_p50_s"].isna().all()
    assert not (tmp_path / "out" / "predictions.parquet.partial").exists()

    # Accepted rows carry exactly what the in-process predictor answers for them.
    good = table[table["error"].isna()].head(20)
    loaded = predict.LocalPredictor.from_settings(settings, str(model_dir))
    orders = frame_orders(frame, [int(r) for r in good["row"]])
    answers = loaded.predict(orders)
    assert [a.prediction["eta_p50_s"] for a in answers] == list(good["eta_p50_s"])
    # write_csv writes no order_id column: each answer carries the id derived from the
    # order, the same one the in-process predictor gives (and ingest gives its outcome).
    without_ids = [{k: v for k, v in o.items() if k != "order_id"} for o in orders]
    assert list(good["order_id"]) == [a.order_id for a in loaded.predict(without_ids)]
    assert good["order_id"].str.fullmatch(r"v2-[0-9a-f]{16}").all()
    assert rejected["order_id"].isna().all()
    assert str(good["expected_delivery_at"].dtype).startswith("datetime64")


def test_batch_parquet_to_csv_with_reexport_spelling(tmp_path, model_dir, capsys):
    from eta_cli.synthetic import write_csv

    frame = orders_frame(300, messy=False)
    parquet_in = tmp_path / "orders.parquet"
    frame.to_parquet(parquet_in)
    csv_out = tmp_path / "predictions.csv"
    code, out, err = run_cli(
        capsys, "predict", "--input", str(parquet_in), "--output", str(csv_out),
        "--model", str(model_dir), "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["rejected"] == 0
    import pandas as pd

    from_parquet = pd.read_csv(csv_out)
    assert len(from_parquet) == 300
    assert list(from_parquet["order_id"]) == list(frame["order_id"])

    reexport = write_csv(frame, tmp_path / "reexport.csv", spelling="reexport")
    parquet_out = tmp_path / "from_csv.parquet"
    code, out, err = run_cli(
        capsys, "predict", "--input", str(reexport), "--output", str(parquet_out),
        "--model", str(model_dir), "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    from_csv = pq.read_table(parquet_out).to_pandas()
    assert list(from_csv["eta_p50_s"]) == list(from_parquet["eta_p50_s"])


@pytest.mark.s3
def test_batch_from_and_to_s3(tmp_path, model_dir, capsys, s3_bucket):
    import boto3

    from eta_cli.synthetic import write_csv

    frame = orders_frame(400, messy=False)
    local = write_csv(frame, tmp_path / "orders.csv")
    s3 = boto3.client("s3")
    s3.upload_file(str(local), s3_bucket, "in/orders.csv")
    code, out, err = run_cli(
        capsys, "predict", "--input", f"s3://{s3_bucket}/in/orders.csv",
        "--output", f"s3://{s3_bucket}/out/predictions.parquet",
        "--model", str(model_dir), "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["rows"] == 400
    s3.download_file(s3_bucket, "out/predictions.parquet", str(tmp_path / "back.parquet"))
    back = pq.read_table(tmp_path / "back.parquet")
    assert back.num_rows == 400 and back.column("error").null_count == 400


def test_bad_input_files_are_clear_errors(tmp_path, model_dir, capsys):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet at all")
    no_store = tmp_path / "no_store.csv"
    no_store.write_text("created_at,total_items,subtotal,num_distinct_items\n2015-01-01,1,1,1\n")
    header_only = tmp_path / "header_only.csv"
    header_only.write_text(",".join(schema.INPUT_COLUMNS) + "\n")
    cases = [
        (tmp_path / "missing.csv", "no such file"),
        (tmp_path / "orders.xlsx", "unknown file type"),
        (garbage, "cannot be read as parquet"),
        (no_store, "lacks required column(s) store_id"),
        (header_only, "has no rows"),
    ]
    for path, words in cases:
        code, _, err = run_cli(
            capsys, "predict", "--input", str(path), "--output", str(tmp_path / "o.parquet"),
            "--model", str(model_dir),
        )  # fmt: skip
        assert code == 2, (path, err)
        assert words in err, (path, err)
        assert not (tmp_path / "o.parquet").exists()
    code, _, err = run_cli(
        capsys, "predict", "--input", str(no_store), "--output", str(tmp_path / "o.txt"),
        "--model", str(model_dir),
    )  # fmt: skip
    assert code == 2 and "use a .parquet or .csv name" in err


def test_remote_batch_file_matches_local(tmp_path, settings, model_dir):
    frame = orders_frame(250, messy=True)
    parquet_in = tmp_path / "orders.parquet"
    frame.to_parquet(parquet_in)
    local = predict_files(
        settings,
        str(parquet_in),
        str(tmp_path / "local.parquet"),
        model=predict.LocalPredictor.from_settings(settings, str(model_dir)),
        chunk_rows=100,
    )
    provider = ModelProvider(settings, str(model_dir))
    provider.check()
    with ServerThread(create_app(settings, provider), threads=2) as server:
        remote = predict_files(
            settings,
            str(parquet_in),
            str(tmp_path / "remote.parquet"),
            model=predict.RemotePredictor(server.url, max_batch=40),
            chunk_rows=100,
        )
    assert (local.rows, local.rejected) == (remote.rows, remote.rejected)
    a = pq.read_table(tmp_path / "local.parquet")
    b = pq.read_table(tmp_path / "remote.parquet")
    assert a.equals(b)
    assert isinstance(a.schema.field("eta_p50_s").type, pa.DataType)


def test_wait_for_a_server_that_is_still_loading(tmp_path, settings, model_dir, capsys):
    import threading

    from eta_cli import registry

    release = threading.Event()

    def slow_load(settings_, uri):
        release.wait(20)
        return registry.load_model(settings_, uri)

    provider = ModelProvider(settings, str(model_dir), loader=slow_load).start()
    path = write_json(tmp_path / "order.json", ORDERS[0])
    try:
        with ServerThread(create_app(settings, provider), threads=2) as server:
            code, _, err = run_cli(
                capsys, "predict", "--json", str(path), "--url", server.url, "--wait", "0.5"
            )
            assert code == 2 and "not ready after 0.5 s" in err and "HTTP 503" in err
            threading.Timer(0.5, release.set).start()
            code, out, err = run_cli(
                capsys, "predict", "--json", str(path), "--url", server.url, "--wait", "20",
                "--format", "json",
            )  # fmt: skip
            assert code == 0, err
            assert json.loads(out)["predictions"][0]["order_id"] == ORDERS[0]["order_id"]
    finally:
        release.set()
        provider.stop()


def odd_cells_csv(path: Path, n: int = 2000) -> Path:
    """A messy synthetic CSV plus rows in every spelling the rules must decide."""
    from eta_cli.synthetic import write_csv

    write_csv(orders_frame(n, seed=11, messy=True), path)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    template = dict(zip(header, lines[1].split(","), strict=True))

    def row(**values: str) -> str:
        return ",".join(str({**template, **values}.get(c, "")) for c in header)

    odd = [
        {"created_at": "2015-02-30 10:00:00"},
        {"created_at": "2015-01-21T10:00:00"},
        {"created_at": "2015-01-21 24:00:00"},
        {"created_at": "2015-01-21 10:00"},
        {"created_at": "2015-01-21 10:00:00Z"},
        {"created_at": "2015-01-21T10:00:00+01:00"},
        {"created_at": "2015-01-21 10:00:00.123456"},
        {"created_at": "2015-01-21 10:00:00.1234567"},
        {"created_at": "1969-12-31 23:59:59"},
        {"created_at": " 2015-01-21 10:00:00"},
        {"created_at": ""},
        {"store_id": "1.5"},
        {"store_id": ""},
        {"store_id": " 12 "},
        {"store_id": "1_000"},
        {"store_id": "+5"},
        {"store_id": "4.0"},
        {"market_id": "2000"},
        {"market_id": "inf"},
        {"market_id": "-0"},
        {"total_items": "0"},
        {"total_items": "three"},
        {"subtotal": "1e3"},
        {"subtotal": "-1", "total_items": "x", "min_item_price": "1.5"},
        {"order_id": "x" * 70},
        {"order_id": ""},
        {"store_primary_category": "y" * 201},
        {"store_primary_category": "é" * 200},
    ]
    lines += [row(**values) for values in odd]
    path.write_text("\n".join(lines) + "\n")
    return path


def odd_cells_parquet(path: Path, n: int = 1500) -> Path:
    """Typed columns: float counts with NaN and fractions, ns timestamps, integer ids."""
    import numpy as np

    frame = orders_frame(n, seed=12, messy=True)
    frame["total_items"] = frame["total_items"].astype("float64")
    frame.loc[3, "total_items"] = 4.5
    frame.loc[4, "total_items"] = np.nan
    frame.loc[5, "total_onshift_dashers"] = np.nan
    frame["created_at"] = frame["created_at"].astype("datetime64[ns]")
    frame.loc[6, "created_at"] = frame.loc[6, "created_at"] + pd_nanoseconds(1)
    frame["order_id"] = np.arange(n, dtype=np.int64) - 2
    frame.to_parquet(path)
    return path


def pd_nanoseconds(n: int):
    import pandas as pd

    return pd.Timedelta(n, unit="ns")


def per_order_output(settings, model_dir: Path, source: Path, chunk_rows: int) -> pa.Table:
    """The output of validating and scoring each order (validate_order, predict_records)."""
    from eta_cli.orders import rows_of
    from eta_cli.predict.batch import iter_batches, output_table

    predictor = predict.LocalPredictor.from_settings(settings, str(model_dir))
    batches, _, _ = iter_batches(str(source), settings, chunk_rows)
    tables, start = [], 0
    for batch in batches:
        outcomes = predictor.predict(rows_of(batch))
        tables.append(output_table(outcomes, start, predictor))
        start += batch.num_rows
    return pa.concat_tables(tables)


@pytest.mark.parametrize("make", [odd_cells_csv, odd_cells_parquet])
def test_columns_answer_exactly_what_each_order_got(tmp_path, settings, model_dir, make):
    """Validating and scoring columns gives the per-order path's answers: predictions to
    1e-6 relative, and the same rejected rows, reasons, ids and delivery times."""
    import numpy as np

    source = make(tmp_path / ("in.csv" if make is odd_cells_csv else "in.parquet"))
    result = predict_files(
        settings, str(source), str(tmp_path / "out.parquet"), model=str(model_dir), chunk_rows=700
    )
    got = pq.read_table(tmp_path / "out.parquet")
    pq.write_table(per_order_output(settings, model_dir, source, 700), tmp_path / "each.parquet")
    expected = pq.read_table(tmp_path / "each.parquet")
    assert got.schema == expected.schema
    assert result.vectorised == result.rows == got.num_rows == expected.num_rows
    for name in ("eta_p50_s", "eta_p10_s", "eta_p90_s", "eta_quoted_s"):
        a = got.column(name).to_numpy(zero_copy_only=False)
        b = expected.column(name).to_numpy(zero_copy_only=False)
        assert np.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True), name
    for name in ("row", "order_id", "expected_delivery_at", "error", "model_version"):
        assert got.column(name).equals(expected.column(name)), name
    assert result.rejected == expected.num_rows - expected.column("error").null_count
    assert result.rejected >= (16 if make is odd_cells_csv else 3)  # the odd rows, refused
