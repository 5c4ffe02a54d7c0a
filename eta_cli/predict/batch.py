"""Batch files: predictions for a whole CSV/Parquet file, on this machine or a Dask cluster.

:func:`eta_cli.predict.files.predict_files` is the entry point. Files stream in chunks
(pyarrow record batches): CSV (also ``.csv.gz``) or Parquet, local or ``s3://``, to
Parquet or CSV, so memory stays bounded on files larger than RAM. Each chunk is
validated and scored as columns (:func:`eta_cli.orders.check_batch`, then one
``EtaModel.predict_columns`` call); rows that fail validation are kept in the output, in
place, with empty predictions and the reason in the ``error`` column, and are counted in
the result: nothing is dropped silently. A row without an ``order_id`` is answered
with the id derived from its order (:mod:`eta_cli.order_ids`), the one ingest gives
its outcome. Columns other than the order fields and ``order_id`` are ignored, so a
historical file that still has ``actual_delivery_time`` can be scored as it is.

With ``engine="dask"`` every file under the input folder or prefix is one task
(:mod:`eta_cli.predict.dask`) that runs :func:`score_file`, the same code as here.
Through a server (a :class:`~eta_cli.predict.RemotePredictor` as ``model``) the orders
are posted as JSON, so they are checked order by order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli import orders
from eta_cli.errors import first_line
from eta_cli.order_ids import fill_order_ids
from eta_cli.orders import ACCEPTED_FIELDS, ORDER_ID, REQUIRED_FIELDS
from eta_cli.predict import DEFAULT_CHUNK_ROWS, LocalPredictor, Outcome, PredictError, Predictor
from eta_cli.progress import ProgressCallback, report

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from eta_cli.config import Settings

MAX_REJECT_EXAMPLES = 5
_LOCAL_ONLY = ("chunks",)
_DASK_ONLY = ("files", "seconds", "outputs", "engine")


@dataclass
class BatchResult:
    """What a batch run did, on either engine; ``to_dict`` is the ``--json`` output.

    The local engine reports ``chunks``; the Dask engine ``files``, ``seconds``, the
    ``outputs`` it wrote and ``engine: "dask"``. ``vectorised`` counts the rows
    validated and scored as columns (not in the JSON output).
    """

    input: str
    output: str
    files: int = 0
    rows: int = 0
    predicted: int = 0
    rejected: int = 0
    chunks: int = 0
    vectorised: int = 0
    model_name: str | None = None
    model_version: str | None = None
    seconds: float = 0.0
    missing_optional_columns: list[str] = field(default_factory=list)
    reject_examples: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    engine: str = "local"

    def add_rejects(self, examples: Sequence[str]) -> None:
        """Keep the first few rejected rows' reasons."""
        room = MAX_REJECT_EXAMPLES - len(self.reject_examples)
        self.reject_examples.extend(list(examples)[: max(room, 0)])

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        del data["vectorised"]
        for name in _LOCAL_ONLY if self.engine == "dask" else _DASK_ONLY:
            del data[name]
        if self.engine == "dask":  # the engine last, as it always was
            data["engine"] = data.pop("engine")
        return data


# --- reading ---------------------------------------------------------------------------


def _input_format(uri: str) -> str:
    lower = uri.lower()
    if lower.endswith((".parquet", ".pq", ".parq")):
        return "parquet"
    if lower.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        return "csv"
    raise PredictError(f"{uri}: unknown file type; use .csv (optionally .gz/.bz2/.zst) or .parquet")


def output_format(uri: str) -> str:
    """``parquet`` or ``csv`` from an output name, or a clear error."""
    lower = uri.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    raise PredictError(f"--output {uri}: use a .parquet or .csv name")


def _wanted_columns(available: Sequence[str]) -> tuple[list[str], list[str]]:
    """(columns to read, optional order columns the file lacks); refuse missing required ones."""
    missing = [c for c in REQUIRED_FIELDS if c not in available]
    if missing:
        optional = [c for c in ACCEPTED_FIELDS if c not in REQUIRED_FIELDS]
        raise PredictError(
            f"input lacks required column(s) {', '.join(missing)}; an order needs "
            f"{', '.join(REQUIRED_FIELDS)} (optional: {', '.join(optional)})"
        )
    wanted = [c for c in ACCEPTED_FIELDS if c in available]
    absent = [c for c in ACCEPTED_FIELDS if c not in available and c != ORDER_ID]
    return wanted, absent


def iter_batches(
    uri: str, settings: Settings, chunk_rows: int
) -> tuple[Iterator[pa.RecordBatch], list[str], int | None]:
    """Record batches of the order columns, the optional columns absent, and the row count."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from eta_cli.storage import StorageError, filesystem_and_path

    kind = _input_format(uri)
    fs, path = filesystem_and_path(uri, settings)
    try:
        info = fs.get_file_info(path)
    except (OSError, pa.ArrowException) as exc:
        raise PredictError(f"{uri}: cannot be read: {first_line(exc)}") from exc
    if info.type.name != "File":
        raise PredictError(f"{uri}: no such file")
    try:
        if kind == "parquet":
            handle = pq.ParquetFile(fs.open_input_file(path))
            wanted, absent = _wanted_columns(handle.schema_arrow.names)
            batches = handle.iter_batches(batch_size=chunk_rows, columns=wanted)
            return batches, absent, handle.metadata.num_rows
        stream = fs.open_input_stream(path, compression="detect")
        # Everything as text: a bad cell must reject its row, not abort the whole file.
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=max(chunk_rows * 200, 1 << 14)),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in ACCEPTED_FIELDS},
                strings_can_be_null=True,
                null_values=["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"],
            ),
        )
        wanted, absent = _wanted_columns(reader.schema.names)
        return _select(reader, wanted), absent, None
    except (StorageError, PredictError):
        raise
    except (OSError, pa.ArrowException) as exc:
        raise PredictError(f"{uri}: cannot be read as {kind}: {first_line(exc)}") from exc


def _select(reader: Any, wanted: list[str]) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        yield batch.select(wanted)


# --- scoring one chunk -------------------------------------------------------------------


def _round1(values: np.ndarray) -> np.ndarray:
    """Python's ``round(x, 1)`` for an array: NumPy's answer except near a tie."""
    import numpy as np

    rounded = np.round(values, 1)
    scaled = values * 10.0
    with np.errstate(invalid="ignore"):
        near_tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    if near_tie.any():
        rounded[near_tie] = [round(float(v), 1) for v in values[near_tie]]
    return rounded


def _answer_table(
    start_row: int,
    order_ids: Sequence[str | None],
    values: np.ndarray,
    delivery_s: np.ndarray,
    valid: np.ndarray,
    errors: Sequence[str | None],
    names: tuple[str | None, str | None, tuple[str, str]],
) -> pa.Table:
    """The output columns (:func:`output_table`'s, value for value) from arrays."""
    import numpy as np
    import pyarrow as pa

    n = len(valid)
    name, version, (low, high) = names
    missing = None if valid.all() else ~valid
    rounded = _round1(values)
    return pa.table(
        {
            "row": pa.array(np.arange(start_row, start_row + n, dtype=np.int64)),
            "order_id": pa.array(order_ids, type=pa.string()),
            "eta_p50_s": pa.array(rounded[:, 1], mask=missing),
            low: pa.array(rounded[:, 0], mask=missing),
            high: pa.array(rounded[:, 2], mask=missing),
            "eta_quoted_s": pa.array(rounded[:, 3], mask=missing),
            "expected_delivery_at": pa.array(delivery_s, type=pa.timestamp("s"), mask=missing),
            "model_name": pa.array([name] * n, type=pa.string()),
            "model_version": pa.array([version] * n, type=pa.string()),
            "error": pa.array(errors, type=pa.string()),
        }
    )


def score_columns(
    batch: pa.RecordBatch, predictor: LocalPredictor, start_row: int
) -> tuple[pa.Table, orders.CheckedOrders]:
    """One chunk validated and scored as columns -> (output table, what the check found).

    The answers are those of :meth:`LocalPredictor.predict` and :func:`output_table` for
    the same rows: the same model inputs, the rounding of ``round(x, 1)`` and the
    delivery time ``created_at`` (whole seconds) ``+ round(quoted)``.
    """
    import numpy as np

    checked = orders.check_batch(batch)
    values = np.zeros((checked.rows, 4))
    order_ids = checked.order_ids
    if checked.rejected < checked.rows:
        valid_columns = checked.valid_columns()
        values[checked.valid] = predictor.loaded.model.predict_columns(valid_columns)
        # A valid row sent without an id gets the id ingest gives its outcome.
        rows = np.flatnonzero(checked.valid).tolist()
        order_ids = fill_order_ids(order_ids, valid_columns, rows)
    delivery = checked.created_us // 1_000_000 + np.rint(values[:, 3]).astype(np.int64)
    names = (predictor.model_name, predictor.model_version, predictor.interval_fields)
    table = _answer_table(
        start_row,
        order_ids,
        values,
        delivery,
        checked.valid,
        checked.error_texts(),
        names,
    )
    return table, checked


def output_table(outcomes: list[Outcome], start_row: int, predictor: Predictor) -> pa.Table:
    """The output columns of per-order answers (a server's, or the in-process ones)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    low, high = predictor.interval_fields or ("eta_p10_s", "eta_p90_s")
    names = ["eta_p50_s", low, high, "eta_quoted_s"]
    values: dict[str, list[Any]] = {n: [] for n in names}
    delivery: list[str | None] = []
    for outcome in outcomes:
        p = outcome.prediction
        for n in names:
            values[n].append(p[n] if p is not None else None)
        delivery.append(p["expected_delivery_at"] if p is not None else None)
    n = len(outcomes)
    arrays = {
        "row": pa.array(range(start_row, start_row + n), type=pa.int64()),
        "order_id": pa.array([o.order_id for o in outcomes], type=pa.string()),
        **{k: pa.array(v, type=pa.float64()) for k, v in values.items()},
        "expected_delivery_at": pc.strptime(
            pa.array(delivery, type=pa.string()), format="%Y-%m-%dT%H:%M:%SZ", unit="s"
        ),
        "model_name": pa.array([predictor.model_name] * n, type=pa.string()),
        "model_version": pa.array([predictor.model_version] * n, type=pa.string()),
        "error": pa.array([o.error_text() for o in outcomes], type=pa.string()),
    }
    return pa.table(arrays)


def score_chunk(
    batch: pa.RecordBatch, predictor: Predictor, start_row: int
) -> tuple[pa.Table, int, list[str], int]:
    """One chunk -> (output table, rejected rows, the first rejections' reasons, rows
    scored as columns). In-process predictors score columns; a server gets JSON orders."""
    if isinstance(predictor, LocalPredictor):
        table, checked = score_columns(batch, predictor, start_row)
        examples = [
            f"row {start_row + row}: {orders.error_text(found)}"
            for row, found in list(checked.problems.items())[:MAX_REJECT_EXAMPLES]
        ]
        return table, checked.rejected, examples, checked.rows
    outcomes = predictor.predict(orders.rows_of(batch))
    rejects = [o for o in outcomes if not o.ok]
    examples = [
        f"row {start_row + o.index}: {o.error_text()}" for o in rejects[:MAX_REJECT_EXAMPLES]
    ]
    return output_table(outcomes, start_row, predictor), len(rejects), examples, 0


# --- one file ------------------------------------------------------------------------------


def score_file(
    settings: Settings,
    predictor: Predictor,
    input_uri: str,
    output_uri: str,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    out_kind: str | None = None,
    empty_ok: bool = False,
    progress: ProgressCallback | None = None,
) -> BatchResult:
    """Score one file chunk by chunk into one Parquet/CSV file (local or s3://), written
    under a temporary name and renamed (one upload on S3), so a failed run leaves nothing.

    ``empty_ok``: a file without rows gives an empty output (a Dask partition) instead
    of an error.
    """
    import pyarrow as pa

    from eta_cli.storage import filesystem_and_path

    out_kind = out_kind or output_format(output_uri)
    batches, absent, total = iter_batches(input_uri, settings, chunk_rows)
    result = BatchResult(input=input_uri, output=output_uri, missing_optional_columns=absent)
    out_fs, out_path = filesystem_and_path(output_uri, settings)
    local_out = not output_uri.startswith("s3://")
    target = out_path + ".partial" if local_out else out_path
    if local_out:
        Path(out_path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    writer: Any = None
    sink: Any = None
    try:
        sink = out_fs.open_output_stream(target)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            table, rejected, examples, vectorised = score_chunk(batch, predictor, result.rows)
            writer = writer or _writer(sink, table.schema, out_kind)
            writer.write_table(table)
            result.add_rejects(examples)
            result.rows += batch.num_rows
            result.rejected += rejected
            result.predicted += batch.num_rows - rejected
            result.vectorised += vectorised
            result.chunks += 1
            report(progress, "predicting", done=result.rows, total=total, unit="rows")
        if writer is None:
            if not empty_ok:
                raise PredictError(f"{input_uri} has no rows")
            writer = _writer(sink, output_table([], 0, predictor).schema, out_kind)
        writer.close()
        writer = None
        sink.close()
        sink = None
        if local_out:
            Path(target).replace(out_path)
    except (OSError, pa.ArrowException) as exc:
        raise PredictError(
            f"batch prediction {input_uri} -> {output_uri} failed: {first_line(exc)}"
        ) from exc
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
        if local_out and Path(target).exists():
            Path(target).unlink()
    result.model_name = predictor.model_name
    result.model_version = predictor.model_version
    return result


def _writer(sink: Any, schema: pa.Schema, out_kind: str) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    return (
        pq.ParquetWriter(sink, schema) if out_kind == "parquet" else pacsv.CSVWriter(sink, schema)
    )
