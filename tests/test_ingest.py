"""eta ingest: both spellings of the real file, rules, errors, S3, atomicity, idempotency."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eta_cli import ingest, schema, storage, synthetic
from eta_cli.cli import main
from eta_cli.config import Settings, load_settings
from eta_cli.errors import EtaError
from eta_cli.ingest import IngestError
from eta_cli.lake import NoOrdersError, dataset_uri, publish, read_orders

N_ORDERS = 3_000
SEED = 11


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    """A small messy synthetic batch (missing values, negative counts, bad durations)."""
    return synthetic.generate_orders(N_ORDERS, seed=SEED)


@pytest.fixture(scope="module")
def few_days() -> pd.DataFrame:
    """Orders over 4 days: few partitions, so S3 tests (an object per partition) stay quick."""
    return synthetic.generate_orders(N_ORDERS, seed=SEED, days=4)


def lake_settings(tmp_path: Path, name: str = "lake", **overrides: object) -> Settings:
    return load_settings(
        overrides={
            "home": str(tmp_path / "eta-home"),
            "data_uri": str(tmp_path / name),
            **overrides,
        }
    )


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``eta`` exactly as the console script does: exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def snapshot(root: Path) -> dict[str, bytes]:
    """Every visible file of the lake (dataset and quarantine), byte for byte."""
    files = {}
    for sub in ("orders", "quarantine"):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(root))] = path.read_bytes()
    return files


def staged_runs(lake: Path) -> list[Path]:
    """Work areas of runs in the staging folder (there should be none after a run)."""
    staging = lake / "_staging"
    return sorted(staging.iterdir()) if staging.exists() else []


def sorted_orders(settings_or_uri: Settings | str, **kwargs: object) -> pd.DataFrame:
    frame = read_orders(settings_or_uri, **kwargs)
    return frame.sort_values(schema.ORDER_ID).reset_index(drop=True)


# ------------------------------------------------------------------------------------
# Spellings and formats
# ------------------------------------------------------------------------------------


def test_every_spelling_and_format_gives_the_same_clean_orders(tmp_path, orders):
    variants = {
        "original.csv": {},
        "reexport.csv": {"spelling": "reexport"},
        "original_bom_crlf.csv.gz": {"compression": "gzip", "bom": True, "crlf": True},
        "reexport_bom_crlf.csv.gz": {
            "spelling": "reexport",
            "compression": "gzip",
            "bom": True,
            "crlf": True,
        },
        "reexport_crlf.csv": {"spelling": "reexport", "crlf": True},
    }
    text = {}
    for name, options in variants.items():
        synthetic.write_csv(orders, tmp_path / name, **options)
        raw = (tmp_path / name).read_bytes()
        text[name] = gzip.decompress(raw) if name.endswith(".gz") else raw
    # The fixtures really are spelled differently.
    assert b'"' in text["reexport.csv"] and b",NA," in text["reexport.csv"]
    assert b".0," in text["original.csv"] and b",," in text["original.csv"]
    assert text["original_bom_crlf.csv.gz"].startswith("\ufeff".encode())
    assert b"\r\n" in text["original_bom_crlf.csv.gz"]
    pq.write_table(pa.Table.from_pandas(orders, preserve_index=False), tmp_path / "orders.parquet")

    results = {}
    frames = {}
    for name in [*variants, "orders.parquet"]:
        settings = lake_settings(tmp_path, f"lake-{name}", ingest_chunk_rows=700)
        result = ingest.ingest(settings, [str(tmp_path / name)])
        results[name] = result
        frames[name] = sorted_orders(settings)
    settings = lake_settings(tmp_path, "lake-synthetic", ingest_chunk_rows=700)
    results["synthetic"] = ingest.ingest(settings, [], synthetic=N_ORDERS, seed=SEED)
    frames["synthetic"] = sorted_orders(settings)

    reference = frames["original.csv"]
    assert len(reference) == results["original.csv"].rows_written > 0.99 * N_ORDERS
    assert reference[schema.ORDER_ID].is_unique
    assert reference[schema.ORDER_ID].str.fullmatch(r"v2-[0-9a-f]{16}").all()
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame, reference, obj=name)
        result = results[name]
        assert result.rows_read == N_ORDERS
        assert result.balanced
        assert (result.rows_written, result.rows_quarantined, result.reasons, result.cleaned) == (
            results["original.csv"].rows_written,
            results["original.csv"].rows_quarantined,
            results["original.csv"].reasons,
            results["original.csv"].cleaned,
        ), name


def test_cleaned_dataset_layout_schema_and_values(tmp_path, orders):
    settings = lake_settings(tmp_path)
    synthetic.write_csv(orders, tmp_path / "orders.csv")
    result = ingest.ingest(settings, [str(tmp_path / "orders.csv")])

    root = tmp_path / "lake"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    parts = [f for f in files if f.startswith("orders/")]
    assert parts and all(
        pd.Series(parts).str.fullmatch(r"orders/order_date=\d{4}-\d{2}-\d{2}/part-0\.parquet")
    )
    assert len(parts) == len(result.partitions) == len(set(result.partitions))
    assert [f for f in files if f.startswith("quarantine/")] == [
        f"quarantine/{result.run_id}.parquet"
    ]
    assert not staged_runs(root)
    assert not any((root / "_journal").glob("*.json"))
    for part in parts:
        written = pq.read_schema(root / part)
        assert written.names == list(schema.CLEAN_COLUMNS)
        assert written.remove_metadata().equals(schema.arrow_schema())

    frame = sorted_orders(settings)
    assert list(frame.columns) == list(schema.CLEAN_COLUMNS)
    expected_dtypes = {**schema.pandas_dtypes(), schema.ORDER_DATE: "string"}
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in expected_dtypes.items()
    }
    duration = (frame.actual_delivery_time - frame.created_at).dt.total_seconds()
    assert (duration == frame.delivery_seconds).all()
    assert frame.delivery_seconds.between(settings.min_duration_s, settings.max_duration_s).all()
    assert (frame.created_at.dt.strftime("%Y-%m-%d") == frame.order_date).all()
    for column in schema.COLUMNS:
        values = frame[column.name].dropna()
        if column.minimum is not None:
            assert values.between(column.minimum, column.maximum).all(), column.name
        if not column.nullable:
            assert frame[column.name].notna().all(), column.name
    # The real file's quirks were cleaned, not silently dropped: negative counts blanked.
    assert result.rows_cleaned > 0 and sum(result.cleaned.values()) >= result.rows_cleaned
    assert result.reasons.get("duration_out_of_range", 0) >= 1  # the 2014 order, at least
    # The dataset holds the file's valid orders with their values.
    source = orders.assign(created_at=orders.created_at.dt.floor("s"))
    merged = frame.merge(source, on=["store_id", "created_at", "subtotal"], suffixes=("", "_src"))
    assert len(merged) == len(frame)
    assert (merged.total_items == merged.total_items_src).all()


# ------------------------------------------------------------------------------------
# Cleaning rules and the quarantine
# ------------------------------------------------------------------------------------

GOOD = {
    "market_id": "1.0",
    "created_at": "2015-02-06 22:24:17",
    "actual_delivery_time": "2015-02-06 23:27:16",
    "store_id": "1845",
    "store_primary_category": "american",
    "order_protocol": "1.0",
    "total_items": "4",
    "subtotal": "3441",
    "num_distinct_items": "4",
    "min_item_price": "557",
    "max_item_price": "1239",
    "total_onshift_dashers": "33.0",
    "total_busy_dashers": "14.0",
    "total_outstanding_orders": "21.0",
    "estimated_order_place_duration": "446",
    "estimated_store_to_consumer_driving_duration": "861.0",
}

# (changes to a good row, expected quarantine reason or None when the row is kept)
CASES: list[tuple[dict[str, str], str | None]] = [
    ({}, None),
    ({"market_id": "", "order_protocol": "NA", "store_primary_category": "  "}, None),
    ({"total_onshift_dashers": "-2.0", "min_item_price": "-1"}, None),  # blanked, kept
    ({"actual_delivery_time": ""}, "missing_actual_delivery_time"),
    ({"actual_delivery_time": "NA"}, "missing_actual_delivery_time"),
    ({"actual_delivery_time": "2015-02-06 22:00:00"}, "duration_out_of_range"),  # negative
    ({"actual_delivery_time": "2015-02-06 22:25:17"}, "duration_out_of_range"),  # 60 s
    ({"actual_delivery_time": "2015-02-09 22:24:17"}, "duration_out_of_range"),  # 3 days
    ({"created_at": "yesterday"}, "invalid_created_at"),
    ({"actual_delivery_time": "2015-13-45 00:00:00"}, "invalid_actual_delivery_time"),
    ({"subtotal": "abc"}, "invalid_subtotal"),
    ({"store_id": "18.5"}, "invalid_store_id"),
    ({"market_id": "north"}, "invalid_market_id"),
    ({"store_id": ""}, "missing_store_id"),
    ({"total_items": "0"}, "total_items_out_of_range"),
    ({"subtotal": "-5"}, "subtotal_out_of_range"),
    (
        {"created_at": "2015-02-06 22:24:17", "subtotal": "abc", "store_id": ""},
        "invalid_subtotal",
    ),  # the first rule in RULES order wins
]


def write_rows(path: Path, rows: list[dict[str, str]], extra_lines: list[str] = ()) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(schema.COLUMN_NAMES))
        writer.writeheader()
        writer.writerows(rows)
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def case_rows() -> list[dict[str, str]]:
    rows = []
    for i, (changes, _) in enumerate(CASES):
        row = dict(GOOD, subtotal=str(3000 + i))  # each case a different order
        row.update(changes)
        rows.append(row)
    return rows


def test_each_rule_quarantines_or_cleans_with_its_reason(tmp_path):
    rows = case_rows()
    # The first good order again, spelled like the re-export: the same order.
    rows.append(dict(rows[0], market_id="1", store_id="1845", order_protocol="1"))
    path = write_rows(tmp_path / "bad.csv", rows, extra_lines=["1,2,3"])  # malformed line
    settings = lake_settings(tmp_path)
    result = ingest.ingest(settings, [str(path)])

    expected: dict[str, int] = {}
    for _, reason in CASES:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    expected["duplicate_order"] = 1
    expected["malformed_row"] = 1
    assert result.reasons == dict(sorted(expected.items(), key=lambda kv: (-kv[1], kv[0])))
    kept = sum(1 for _, reason in CASES if reason is None)
    assert result.rows_read == len(rows) + 1
    assert result.rows_written == kept
    assert result.rows_quarantined == result.rows_read - kept
    assert result.balanced
    assert result.rows_cleaned == 1
    assert result.cleaned == {
        "min_item_price_out_of_range": 1,
        "total_onshift_dashers_out_of_range": 1,
    }

    frame = read_orders(settings).set_index("subtotal")
    assert frame.loc[3002, "total_onshift_dashers"] is pd.NA
    assert frame.loc[3002, "min_item_price"] is pd.NA
    assert frame.loc[3002, "total_busy_dashers"] == 14
    assert frame.loc[3001, "market_id"] is pd.NA
    assert frame.loc[3001, "order_protocol"] is pd.NA
    assert frame.loc[3001, "store_primary_category"] is pd.NA

    quarantine = pq.read_table(result.quarantine).to_pandas()
    assert list(quarantine.columns) == [
        "reason",
        "source",
        "row",
        "order_id",
        *schema.COLUMN_NAMES,
        "raw_line",
    ]
    assert len(quarantine) == result.rows_quarantined
    assert (quarantine.reason.value_counts().to_dict()) == expected
    by_row = quarantine.dropna(subset=["row"]).set_index("row")
    for number, (_, reason) in enumerate(CASES, start=1):
        if reason:
            assert by_row.loc[number, "reason"] == reason, number
            assert by_row.loc[number, "source"] == str(path)
    # Raw values are kept as written, so a person can see what was wrong.
    assert by_row.loc[11, "subtotal"] == "abc"
    assert by_row.loc[9, "created_at"] == "yesterday"
    assert pd.isna(by_row.loc[11, "order_id"])  # unreadable rows have no identity
    duplicate = quarantine[quarantine.reason == "duplicate_order"].iloc[0]
    assert duplicate.order_id == frame.loc[3000, "order_id"]
    assert duplicate.row == len(rows)
    malformed = quarantine[quarantine.reason == "malformed_row"].iloc[0]
    assert malformed.raw_line == "1,2,3"


def test_rules_table_covers_the_schema():
    reasons = [rule.reason for rule in ingest.RULES]
    assert len(reasons) == len(set(reasons))
    for column in schema.COLUMNS:
        assert f"invalid_{column.name}" in reasons
        if not column.nullable:
            assert f"missing_{column.name}" in reasons
        if column.minimum is not None:
            rule = next(r for r in ingest.RULES if r.reason == f"{column.name}_out_of_range")
            assert rule.action == ("reject" if column.out_of_range == "reject" else "blank")
    for reason in (
        "duration_out_of_range",
        "missing_actual_delivery_time",
        "duplicate_order",
        "invalid_created_at",
        "malformed_row",
    ):
        assert reason in reasons
    assert all(r.description for r in ingest.RULES)


def test_duration_window_comes_from_settings(tmp_path, orders, monkeypatch):
    path = synthetic.write_csv(orders, tmp_path / "orders.csv")
    default = ingest.ingest(lake_settings(tmp_path, "default"), [str(path)])
    monkeypatch.setenv("ETA_MAX_DURATION_S", "3000")
    strict_settings = lake_settings(tmp_path, "strict")
    assert strict_settings.max_duration_s == 3000
    strict = ingest.ingest(strict_settings, [str(path)])
    assert strict.reasons["duration_out_of_range"] > default.reasons["duration_out_of_range"] + 100
    assert read_orders(strict_settings).delivery_seconds.max() <= 3000
    assert strict.balanced


# ------------------------------------------------------------------------------------
# Whole-file problems: one-line error, non-zero exit, nothing written
# ------------------------------------------------------------------------------------


def bad_sources(tmp_path: Path, orders: pd.DataFrame) -> dict[str, tuple[Path, str]]:
    """name -> (file, text the error must contain)."""
    good = synthetic.write_csv(orders, tmp_path / "good.csv")
    no_subtotal = tmp_path / "no_subtotal.csv"
    orders.drop(columns=["subtotal"]).to_csv(no_subtotal, index=False)
    truncated = tmp_path / "truncated.csv.gz"
    compressed = gzip.compress(good.read_bytes())
    truncated.write_bytes(compressed[: len(compressed) // 2])
    not_gzip = tmp_path / "garbage.csv.gz"
    not_gzip.write_bytes(b"this is not gzip at all\n" * 10)
    binary = tmp_path / "picture.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    corrupt_parquet = tmp_path / "corrupt.parquet"
    corrupt_parquet.write_bytes(b"PAR1" + os.urandom(300))
    wrong_type = tmp_path / "wrong_type.parquet"
    table = pa.Table.from_pandas(orders, preserve_index=False)
    index = table.schema.get_field_index("created_at")
    table = table.set_column(index, "created_at", pa.array([True] * len(orders)))
    pq.write_table(table, wrong_type)
    parquet_missing = tmp_path / "missing.parquet"
    pq.write_table(
        pa.Table.from_pandas(orders.drop(columns=["store_id"]), preserve_index=False),
        parquet_missing,
    )
    return {
        "missing column": (
            no_subtotal,
            "missing column(s) subtotal; expected columns: " + ", ".join(schema.COLUMN_NAMES),
        ),
        "parquet missing column": (parquet_missing, "missing column(s) store_id"),
        "truncated gzip": (truncated, "unreadable"),
        "not gzip": (not_gzip, "not a valid gzip file"),
        "binary": (binary, "not a CSV or Parquet file"),
        "empty": (empty, "empty"),
        "corrupt parquet": (corrupt_parquet, "unreadable Parquet file"),
        "wrong type": (wrong_type, "column created_at has type bool"),
        "no such file": (tmp_path / "nope.csv", "no such file or directory"),
        "no glob match": (tmp_path / "nothing-*.csv", "no file matches"),
    }


def test_whole_file_problems_are_one_line_errors_and_write_nothing(tmp_path, orders, capsys):
    home = tmp_path / "eta-home"
    good = synthetic.write_csv(orders, tmp_path / "first.csv")
    code, out, _ = run_cli(["--home", str(home), "ingest", str(good), "--json"], capsys)
    assert code == 0
    lake = home / "data"
    before = snapshot(lake)
    for name, (path, message) in bad_sources(tmp_path, orders).items():
        # Listed after a good file: nothing of the good file may be published either.
        code, out, err = run_cli(["--home", str(home), "ingest", str(good), str(path)], capsys)
        assert code == 2, name
        assert out == "", name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert message in lines[0], (name, lines[0])
        assert "Traceback" not in err
        assert snapshot(lake) == before, name
        assert not staged_runs(lake), name


def test_library_raises_ingest_error_before_touching_the_lake(tmp_path, orders):
    settings = lake_settings(tmp_path)
    for name, (path, message) in bad_sources(tmp_path, orders).items():
        with pytest.raises(IngestError, match=None) as raised:
            ingest.ingest(settings, [str(path)])
        assert message in str(raised.value), name
    assert not (tmp_path / "lake" / "orders").exists()
    assert not (tmp_path / "lake" / "quarantine").exists()


def test_cli_error_has_no_traceback_in_a_real_process(tmp_path, orders):
    path = tmp_path / "no_subtotal.csv"
    orders.drop(columns=["subtotal"]).to_csv(path, index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "eta_cli", "ingest", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}: missing column(s) subtotal; expected columns: "
        + ", ".join(schema.COLUMN_NAMES)
    ]
    assert not (tmp_path / "eta-home" / "data" / "orders").exists()


def test_no_source_is_a_usage_error(capsys):
    code, _, err = run_cli(["ingest"], capsys)
    assert code == 2
    assert "nothing to ingest" in err and "--synthetic" in err
    assert "Usage:" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------
# CLI output
# ------------------------------------------------------------------------------------


def test_json_output_is_one_object(tmp_path, orders, capsys):
    path = synthetic.write_csv(orders, tmp_path / "orders.csv")
    code, out, err = run_cli(["ingest", str(path), "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)  # exactly one JSON document, nothing else on stdout
    assert isinstance(payload, dict)
    assert payload["rows_read"] == N_ORDERS
    assert payload["rows_read"] == payload["rows_written"] + payload["rows_quarantined"]
    assert payload["balanced"] is True
    assert payload["output"] == str(tmp_path / "eta-home" / "data" / "orders")
    assert payload["quarantine"].endswith(f"{payload['run_id']}.parquet")
    assert payload["files"] == [str(path)]
    assert set(payload["reasons"]) >= {"duration_out_of_range"}
    assert sum(payload["reasons"].values()) == payload["rows_quarantined"]


def test_summary_table_states_the_invariant(tmp_path, capsys):
    code, out, err = run_cli(["ingest", "--synthetic", "1500", "--seed", "4"], capsys)
    assert code == 0, err
    for text in (
        "rows read",
        "rows written",
        "rows quarantined",
        "rows cleaned",
        "quarantine file",
        "output",
    ):
        assert text in out
    assert "rows read 1,500 = written " in out and " + quarantined " in out
    written = read_orders(load_settings())
    assert f"written {len(written):,} + quarantined {1500 - len(written):,}" in out


def test_output_option_and_synthetic_drift(tmp_path, capsys):
    out_dir = tmp_path / "elsewhere"
    code, out, err = run_cli(
        [
            "ingest",
            "--synthetic",
            "2000",
            "--seed",
            "3",
            "--drift",
            "--output",
            str(out_dir),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    payload = json.loads(out)
    assert payload["output"] == str(out_dir / "orders")
    drifted = read_orders(str(out_dir / "orders"))
    assert (drifted.market_id == synthetic.DRIFT_MARKET).any()
    assert not (tmp_path / "eta-home" / "data").exists()


# ------------------------------------------------------------------------------------
# Sources: directories, globs, Parquet, the same file twice
# ------------------------------------------------------------------------------------


def test_directories_globs_and_repeated_sources(tmp_path, orders):
    folder = tmp_path / "drop"
    folder.mkdir()
    half = len(orders) // 2
    synthetic.write_csv(orders.iloc[:half], folder / "a.csv")
    synthetic.write_csv(orders.iloc[half:], folder / "b.csv.gz", compression="gzip")
    (folder / "notes.md").write_text("not orders")
    (folder / "_hidden.csv").write_text("ignored")
    one = ingest.ingest(lake_settings(tmp_path, "dir"), [str(folder)])
    two = ingest.ingest(
        lake_settings(tmp_path, "glob"), [str(folder / "*.csv*"), str(folder / "a.csv")]
    )
    assert one.files == two.files == [str(folder / "a.csv"), str(folder / "b.csv.gz")]
    assert one.rows_read == two.rows_read == N_ORDERS
    pd.testing.assert_frame_equal(
        sorted_orders(lake_settings(tmp_path, "dir")),
        sorted_orders(lake_settings(tmp_path, "glob")),
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="directory has no"):
        ingest.ingest(lake_settings(tmp_path, "none"), [str(tmp_path / "empty")])


# ------------------------------------------------------------------------------------
# Idempotency and de-duplication
# ------------------------------------------------------------------------------------


def test_ingesting_the_same_file_twice_adds_nothing(tmp_path, orders):
    settings = lake_settings(tmp_path)
    path = synthetic.write_csv(orders, tmp_path / "orders.csv")
    first = ingest.ingest(settings, [str(path)])
    before = snapshot(tmp_path / "lake")
    rows_before = len(read_orders(settings))

    second = ingest.ingest(settings, [str(path)])
    assert second.rows_read == first.rows_read
    assert second.rows_written == 0
    assert second.rows_quarantined == second.rows_read
    assert second.reasons["duplicate_order"] == first.rows_written
    assert second.partitions == []
    assert len(read_orders(settings)) == rows_before
    after = snapshot(tmp_path / "lake")
    # Partitions untouched byte for byte; only the second run's quarantine file is new.
    assert {k: v for k, v in after.items() if k.startswith("orders/")} == {
        k: v for k, v in before.items() if k.startswith("orders/")
    }
    assert set(after) - set(before) == {f"quarantine/{second.run_id}.parquet"}


def test_overlapping_batches_merge_into_partitions_without_duplicates(tmp_path, orders):
    settings = lake_settings(tmp_path)
    reference = lake_settings(tmp_path, "reference")
    first_half = synthetic.write_csv(orders.iloc[:2000], tmp_path / "first.csv")
    overlap = synthetic.write_csv(orders.iloc[1000:], tmp_path / "overlap.csv", spelling="reexport")
    everything = synthetic.write_csv(orders, tmp_path / "all.csv")
    ingest.ingest(settings, [str(first_half)])
    second = ingest.ingest(settings, [str(overlap)])
    ingest.ingest(reference, [str(everything)])
    assert second.reasons["duplicate_order"] > 900
    pd.testing.assert_frame_equal(sorted_orders(settings), sorted_orders(reference))


# ------------------------------------------------------------------------------------
# read_orders
# ------------------------------------------------------------------------------------


def test_read_orders_columns_since_and_errors(tmp_path, orders):
    settings = lake_settings(tmp_path)
    with pytest.raises(NoOrdersError, match="run `eta ingest` first"):
        read_orders(settings)
    ingest.ingest(settings, [], synthetic=N_ORDERS, seed=SEED)
    everything = read_orders(settings)
    assert dataset_uri(settings) == str(tmp_path / "lake" / "orders")

    some = read_orders(dataset_uri(settings), columns=["order_id", "created_at"])
    assert list(some.columns) == ["order_id", "created_at"]
    assert len(some) == len(everything)

    since = read_orders(settings, since="2015-02-10")
    assert len(since) == (everything.created_at >= "2015-02-10").sum()
    assert since.created_at.min() >= pd.Timestamp("2015-02-10")
    later = read_orders(settings, since=pd.Timestamp("2015-02-10 12:00"))
    assert len(later) == (everything.created_at >= "2015-02-10 12:00").sum()
    assert read_orders(settings, since="2030-01-01").empty

    with pytest.raises(EtaError, match="unknown column"):
        read_orders(settings, columns=["nope"])
    with pytest.raises(EtaError, match="not a date"):
        read_orders(settings, since="last tuesday")


# ------------------------------------------------------------------------------------
# Atomicity: failures, Ctrl-C and hard kills never leave a partial dataset
# ------------------------------------------------------------------------------------


@pytest.fixture
def two_batches(tmp_path, orders) -> tuple[Path, Path]:
    first = synthetic.write_csv(orders.iloc[:1500], tmp_path / "first.csv")
    second = synthetic.write_csv(orders.iloc[1500:], tmp_path / "second.csv")
    return first, second


@pytest.mark.parametrize("failure", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_mid_stream_leaves_the_dataset_untouched(
    tmp_path, two_batches, monkeypatch, failure
):
    first, second = two_batches
    settings = lake_settings(tmp_path, ingest_chunk_rows=200)
    ingest.ingest(settings, [str(first)])
    before = snapshot(tmp_path / "lake")
    chunks = []

    def fail_on_third_chunk(stage: str, **info: object) -> None:
        if stage == "chunk":
            chunks.append(info)
            if len(chunks) == 3:
                raise failure

    monkeypatch.setattr(publish, "checkpoint", fail_on_third_chunk)
    with pytest.raises(type(failure)):
        ingest.ingest(settings, [str(second)])
    assert len(chunks) == 3
    assert snapshot(tmp_path / "lake") == before
    assert not staged_runs(tmp_path / "lake")

    monkeypatch.setattr(publish, "checkpoint", lambda stage, **info: None)
    rerun = ingest.ingest(settings, [str(second)])
    assert rerun.rows_written > 0 and rerun.balanced
    assert "duplicate_order" not in rerun.reasons


KILL_SCRIPT = """
import os, signal, sys
from eta_cli.cli import main
from eta_cli.lake import publish

signame, stage, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = []

def checkpoint(name, **info):
    if name == stage:
        seen.append(name)
        if len(seen) == nth:
            os.kill(os.getpid(), getattr(signal, signame))

publish.checkpoint = checkpoint
main(["ingest", "--json", *sys.argv[4:]])
"""


def run_and_signal(
    tmp_path: Path, signame: str, stage: str, nth: int, *sources: Path
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "kill_at.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, ETA_INGEST_CHUNK_ROWS="200")
    return subprocess.run(
        [sys.executable, str(script), signame, stage, str(nth), *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def test_killed_while_streaming_leaves_the_dataset_byte_identical(tmp_path, two_batches):
    first, second = two_batches
    settings = load_settings()
    ingest.ingest(settings, [str(first)])
    lake = Path(settings.effective_data_uri)
    before = snapshot(lake)
    proc = run_and_signal(tmp_path, "SIGKILL", "chunk", 3, second)
    assert proc.returncode == -9
    assert snapshot(lake) == before
    assert staged_runs(lake)  # the dead run's work area, invisible to readers
    pd.testing.assert_frame_equal(
        sorted_orders(settings),
        sorted_orders(str(lake / "orders")),
    )
    rerun = ingest.ingest(settings, [str(second)])
    assert rerun.rows_written > 0 and "duplicate_order" not in rerun.reasons
    assert not staged_runs(lake)


def test_ctrl_c_while_streaming_exits_130_and_changes_nothing(tmp_path, two_batches):
    first, second = two_batches
    settings = load_settings()
    ingest.ingest(settings, [str(first)])
    lake = Path(settings.effective_data_uri)
    before = snapshot(lake)
    proc = run_and_signal(tmp_path, "SIGINT", "chunk", 2, second)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert snapshot(lake) == before
    assert not staged_runs(lake)


def test_ctrl_c_during_publish_is_deferred_until_published(tmp_path, two_batches):
    first, second = two_batches
    settings = load_settings()
    ingest.ingest(settings, [str(first)])
    proc = run_and_signal(tmp_path, "SIGINT", "journal", 1, second)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["rows_written"] > 0
    lake = Path(settings.effective_data_uri)
    assert not any((lake / "_journal").glob("*.json"))
    assert len(read_orders(settings)) == len(read_orders(settings).drop_duplicates("order_id"))


def test_killed_mid_publish_is_rolled_forward_by_the_next_run(tmp_path, two_batches, orders):
    first, second = two_batches
    settings = load_settings()
    ingest.ingest(settings, [str(first)])
    lake = Path(settings.effective_data_uri)
    proc = run_and_signal(tmp_path, "SIGKILL", "moved", 3, second)  # after 3 of ~29 renames
    assert proc.returncode == -9
    journals = list((lake / "_journal").glob("*.json"))
    assert len(journals) == 1
    run_id = journals[0].stem

    # The next run, whatever it ingests, first completes the interrupted publish.
    again = ingest.ingest(settings, [str(first)])
    assert again.recovered == [run_id]
    assert again.rows_written == 0
    assert not any((lake / "_journal").glob("*.json"))
    assert (lake / "quarantine" / f"{run_id}.parquet").exists()

    reference = lake_settings(tmp_path, "reference")
    ingest.ingest(reference, [str(first)])
    ingest.ingest(reference, [str(second)])
    pd.testing.assert_frame_equal(sorted_orders(settings), sorted_orders(reference))


def test_a_second_writer_is_refused_while_one_runs(tmp_path, orders):
    import fcntl

    settings = lake_settings(tmp_path).replace(lake_lock_wait_s=0.3)
    path = synthetic.write_csv(orders.iloc[:100], tmp_path / "few.csv")
    (tmp_path / "lake").mkdir()
    with open(tmp_path / "lake" / "_lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write('{"host": "box", "pid": 42, "run_id": "r-1", "since": "2015-02-01T00:00:00Z"}')
        held.flush()
        with pytest.raises(IngestError, match="another `eta ingest` is writing") as refused:
            ingest.ingest(settings, [str(path)])
    assert "held by box pid 42, run r-1" in str(refused.value) and "waited 0s" in str(refused.value)
    assert ingest.ingest(settings, [str(path)]).rows_read == 100


# ------------------------------------------------------------------------------------
# S3 in and out (a real local S3 server; boto3 is not mocked)
# ------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_sources_and_s3_output(tmp_path, few_days, s3_bucket):
    orders = few_days
    import boto3

    settings = load_settings()
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
    half = len(orders) // 2
    original = synthetic.write_csv(orders.iloc[:half], tmp_path / "a.csv")
    reexport = synthetic.write_csv(
        orders.iloc[half:],
        tmp_path / "b.csv.gz",
        spelling="reexport",
        compression="gzip",
        bom=True,
        crlf=True,
    )
    client.upload_file(str(original), s3_bucket, "raw/2015/a.csv")
    client.upload_file(str(reexport), s3_bucket, "raw/2015/b.csv.gz")
    client.put_object(Bucket=s3_bucket, Key="raw/2015/README", Body=b"skip me")

    out = f"s3://{s3_bucket}/lake"
    by_key = ingest.ingest(
        settings,
        [f"s3://{s3_bucket}/raw/2015/a.csv", f"s3://{s3_bucket}/raw/2015/b.csv.gz"],
        output=out,
    )
    assert by_key.output == f"{out}/orders"
    assert by_key.quarantine.startswith(f"{out}/quarantine/")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    parts = {k for k in keys if k.startswith("lake/orders/")}
    assert parts and all(k.endswith("/part-0.parquet") and "order_date=" in k for k in parts)
    assert not [k for k in keys if k.startswith(("lake/_staging", "lake/_journal"))]

    local = lake_settings(tmp_path)
    ingest.ingest(local, [str(original), str(reexport)])
    from_s3 = sorted_orders(f"{out}/orders", settings=settings)
    pd.testing.assert_frame_equal(from_s3, sorted_orders(local))

    # A prefix works too, and the second run adds nothing (idempotent on S3 as well).
    by_prefix = ingest.ingest(settings.replace(data_uri=out), [f"s3://{s3_bucket}/raw/"])
    assert by_prefix.files == by_key.files
    assert by_prefix.rows_written == 0
    assert by_prefix.reasons["duplicate_order"] == by_key.rows_written
    assert len(read_orders(f"{out}/orders", settings=settings)) == len(from_s3)


@pytest.mark.s3
def test_s3_missing_object_and_bucket_are_clear_errors(tmp_path, s3_bucket, capsys, orders):
    for source, message in [
        (f"s3://{s3_bucket}/raw/none.csv", "no such object"),
        ("s3://no-such-bucket-eta/raw/a.csv", "bucket 'no-such-bucket-eta' does not exist"),
    ]:
        code, _, err = run_cli(["ingest", source], capsys)
        assert code == 2
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    path = synthetic.write_csv(orders.iloc[:50], tmp_path / "few.csv")
    code, _, err = run_cli(["ingest", str(path), "--output", "s3://no-such-bucket-eta/x"], capsys)
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "eta-home" / "data").exists()


@pytest.mark.s3
def test_synthetic_to_s3_from_the_cli(s3_bucket, capsys):
    code, out, err = run_cli(
        [
            "ingest",
            "--synthetic",
            "1200",
            "--seed",
            "5",
            "--output",
            f"s3://{s3_bucket}/demo",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    payload = json.loads(out)
    frame = read_orders(payload["output"], settings=load_settings())
    assert len(frame) == payload["rows_written"] > 1100


def test_column_order_extra_columns_and_typed_parquet_quirks(tmp_path, orders):
    """Columns found by name; extra ones ignored; NaN in typed float columns is missing."""
    reference = lake_settings(tmp_path, "reference")
    ingest.ingest(reference, [str(synthetic.write_csv(orders, tmp_path / "orders.csv"))])

    shuffled = tmp_path / "shuffled.csv"
    columns = list(reversed(schema.COLUMN_NAMES))
    orders.assign(note="x")[["note", *columns]].to_csv(shuffled, index_label="Unnamed: 0")
    reordered = lake_settings(tmp_path, "reordered")
    ingest.ingest(reordered, [str(shuffled)])
    pd.testing.assert_frame_equal(sorted_orders(reordered), sorted_orders(reference))

    table = pa.Table.from_pandas(orders, preserve_index=False)
    for column in ("market_id", "total_onshift_dashers", "total_busy_dashers"):
        values = orders[column].to_numpy(dtype="float64", na_value=np.nan)
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, pa.array(values))  # NaN, not null
    assert table.column("market_id").null_count == 0
    pq.write_table(table, tmp_path / "floats.parquet")
    typed = lake_settings(tmp_path, "typed")
    ingest.ingest(typed, [str(tmp_path / "floats.parquet")])
    pd.testing.assert_frame_equal(sorted_orders(typed), sorted_orders(reference))


@pytest.mark.s3
def test_s3_publish_cut_short_is_rolled_forward(tmp_path, few_days, s3_bucket, monkeypatch):
    orders = few_days
    import boto3

    settings = load_settings().replace(data_uri=f"s3://{s3_bucket}/lake", ingest_chunk_rows=500)
    first = synthetic.write_csv(orders.iloc[:1500], tmp_path / "first.csv")
    second = synthetic.write_csv(orders.iloc[1500:], tmp_path / "second.csv")
    ingest.ingest(settings, [str(first)])
    moved = []

    def fail_after_two_moves(stage: str, **info: object) -> None:
        if stage == "moved":
            moved.append(info)
            if len(moved) == 2:
                raise RuntimeError("connection reset")

    monkeypatch.setattr(publish, "checkpoint", fail_after_two_moves)
    with pytest.raises(storage.StorageError, match="the next `eta ingest` completes it"):
        ingest.ingest(settings, [str(second)])
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
    journals = client.list_objects_v2(Bucket=s3_bucket, Prefix="lake/_journal/")["Contents"]
    assert len(journals) == 1

    monkeypatch.setattr(publish, "checkpoint", lambda stage, **info: None)
    again = ingest.ingest(settings, [str(second)])
    assert again.recovered == [journals[0]["Key"].rsplit("/", 1)[-1].removesuffix(".json")]
    assert again.rows_written == 0
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert not [k for k in keys if k.startswith(("lake/_staging", "lake/_journal"))]

    reference = lake_settings(tmp_path, "reference")
    ingest.ingest(reference, [str(first)])
    ingest.ingest(reference, [str(second)])
    pd.testing.assert_frame_equal(
        sorted_orders(dataset_uri(settings), settings=settings), sorted_orders(reference)
    )
