"""Property-based tests of the ingest parser: whatever the cells of a CSV or the column
types of a Parquet file, ingest answers with counts that balance or a one-line EtaError
naming the file; never a traceback, never a quarantined row without a reason."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from eta_cli import ingest, schema
from eta_cli.config import load_settings
from eta_cli.errors import EtaError

COLUMNS = list(schema.COLUMN_NAMES)

#: Cells a hostile or broken export might hold: numbers of every shape, dates, junk,
#: quotes, separators, control characters, unicode, empty.
CELL = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            " ",
            "NaN",
            "null",
            "NA",
            "-",
            "1e309",
            "0x1F",
            "2015-02-06 22:24:17",
            "2015-02-06T22:24:17Z",
            "2015-13-45 99:99:99",
            "american",
            '"',
            '""',
            ",",
            "\n",
            "\r\n",
            "\x00",
            "\ud7ff",
            "é",
            "日本",
            "🍕",
            "</script>",
        ]
    ),
    st.text(max_size=12),
)


def _fresh_lake(root: Path) -> object:
    return load_settings(
        overrides={"data_uri": str(root / f"lake-{uuid.uuid4().hex}"), "ingest_chunk_rows": 7}
    )


def _check(root: Path, path: Path) -> None:
    """Ingest ``path``: balanced counts and reasons, or a clear EtaError naming it."""
    lake = _fresh_lake(root)
    try:
        result = ingest.ingest(lake, [str(path)])
    except EtaError as exc:
        message = str(exc)
        assert message and "Traceback" not in message
        assert path.name in message, message
        event(f"refused: {type(exc).__name__}")
        return
    event("ingested, some quarantined" if result.rows_quarantined else "ingested")
    assert result.rows_read == result.rows_written + result.rows_quarantined
    if result.rows_quarantined:
        table = pq.read_table(result.quarantine)
        assert table.num_rows == result.rows_quarantined
        reasons = table.column("reason").to_pylist()
        assert all(isinstance(r, str) and r for r in reasons)
        assert sum(result.reasons.values()) == result.rows_quarantined


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    header = draw(
        st.one_of(
            st.just(COLUMNS),
            st.permutations(COLUMNS),
            st.permutations([*COLUMNS, "extra"]),
            st.lists(st.sampled_from([*COLUMNS, "extra", ""]), min_size=1, max_size=18),
        )
    )
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=len(header) + 2), max_size=12))
    out = io.StringIO()
    writer = csv.writer(
        out,
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_NONE, csv.QUOTE_ALL])),
        escapechar="\\",
    )
    for row in [header, *rows]:
        try:
            writer.writerow(row)
        except csv.Error:  # a lone empty field cannot be written unquoted
            csv.writer(out, quoting=csv.QUOTE_ALL).writerow(row)
    text = out.getvalue()
    if draw(st.booleans()):  # a cut-off last line or a stray quote
        text = text[: draw(st.integers(0, len(text)))] + draw(st.sampled_from(["", '"', "\\"]))
    return text


@pytest.mark.slow
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=csv_text(), encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]))
# Found by this test: a lone carriage return then a quote in the header line was a
# csv.Error traceback from the header check.
@example(text=",".join(schema.COLUMN_NAMES) + '\r"', encoding="utf-8")
def test_csv_ingest_never_tracebacks_and_always_balances(tmp_path, text, encoding):
    path = tmp_path / f"orders-{uuid.uuid4().hex[:8]}.csv"
    errors = "replace" if encoding == "latin-1" else "surrogatepass"
    path.write_bytes(text.encode(encoding, errors=errors))
    _check(tmp_path, path)


ARROW_TYPES = st.sampled_from(
    [
        pa.int8(),
        pa.int64(),
        pa.uint64(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.binary(),
        pa.bool_(),
        pa.date32(),
        pa.timestamp("s"),
        pa.timestamp("ns", tz="UTC"),
        pa.decimal128(12, 3),
        pa.null(),
        pa.large_string(),
        pa.list_(pa.int64()),
    ]
)


@st.composite
def parquet_table(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 8))
    names = draw(
        st.one_of(
            st.just(COLUMNS),
            st.permutations([*COLUMNS, "extra"]),
            st.lists(st.sampled_from([*COLUMNS, "extra"]), min_size=1, max_size=17, unique=True),
        )
    )
    natural = schema.arrow_schema()
    arrays = []
    for name in names:
        plausible = [natural.field(name).type] if name in natural.names else []
        kind = draw(st.sampled_from([*plausible, *plausible, pa.string()]) | ARROW_TYPES)
        values = draw(st.lists(_value_for(kind), min_size=n, max_size=n))
        arrays.append(pa.array(values, type=kind))
    return pa.Table.from_arrays(arrays, names=names)


def _value_for(kind: pa.DataType) -> st.SearchStrategy:
    import datetime as dt
    import decimal

    if pa.types.is_null(kind):
        return st.none()
    if pa.types.is_list(kind):
        return st.one_of(st.none(), st.lists(st.integers(-5, 5), max_size=3))
    if pa.types.is_boolean(kind):
        return st.one_of(st.none(), st.booleans())
    if pa.types.is_integer(kind):
        info = {8: 2**7, 64: 2**63}[kind.bit_width]
        low = 0 if pa.types.is_unsigned_integer(kind) else -info
        return st.one_of(st.none(), st.integers(low, info - 1))
    if pa.types.is_floating(kind):
        return st.one_of(st.none(), st.floats(width=kind.bit_width))
    if pa.types.is_decimal(kind):
        return st.one_of(
            st.none(),
            st.decimals(-(10**8), 10**8, places=3, allow_nan=False).map(
                lambda d: decimal.Decimal(d)
            ),
        )
    if pa.types.is_date(kind):
        return st.one_of(st.none(), st.dates(dt.date(1970, 1, 1), dt.date(2100, 1, 1)))
    if pa.types.is_timestamp(kind):
        return st.one_of(st.none(), st.datetimes(dt.datetime(1970, 1, 2), dt.datetime(2100, 1, 1)))
    if pa.types.is_binary(kind):
        return st.one_of(st.none(), st.binary(max_size=8))
    return st.one_of(st.none(), CELL)


@pytest.mark.slow
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(table=parquet_table())
def test_parquet_ingest_never_tracebacks_and_always_balances(tmp_path, table):
    path = tmp_path / f"orders-{uuid.uuid4().hex[:8]}.parquet"
    pq.write_table(table, path)
    _check(tmp_path, path)
