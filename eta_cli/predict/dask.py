"""``eta predict --engine dask``: batch scoring of a partitioned dataset on a Dask cluster.

One task per input file (a CSV or Parquet file under ``--input``, local or
``s3://``): the worker streams it in chunks with the local batch reader, scores
it with the champion model (loaded once on the driver, broadcast to workers) and
writes one Parquet file with the same relative path under ``--output`` (suffix
``.parquet``), atomically. The columns and values are those of the local batch
path (:func:`eta_cli.predict.predict_file`): rows that fail validation stay in
place with empty predictions and the reason in ``error``.

Speed: rows whose every field is plainly valid (integers in range, a
``YYYY-MM-DD HH:MM:SS`` or typed timestamp, short text) are validated and scored
with vectorised code; anything else goes through the local path's per-order
validation (:meth:`eta_cli.predict.LocalPredictor.predict`), so both paths answer
the same for every row, valid or not.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from eta_cli import schema, storage
from eta_cli.config import Settings
from eta_cli.dask_engine import DataFile, Tracker, list_files
from eta_cli.errors import first_line
from eta_cli.predict import DEFAULT_CHUNK_ROWS, PredictError
from eta_cli.progress import ProgressCallback

if TYPE_CHECKING:
    from distributed import Client

    from eta_cli.predict import LocalPredictor
    from eta_cli.registry import LoadedModel

INPUT_SUFFIXES = (".parquet", ".pq", ".parq", ".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_PLAIN_TIMESTAMP = r"^(19[7-9][0-9]|2[01][0-9]{2})-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}$"
_MAX_ORDER_ID_INT = 2**63 - 1


@dataclass
class FileResult:
    """What scoring one input file produced."""

    input: str
    output: str
    rows: int = 0
    predicted: int = 0
    rejected: int = 0
    vectorised: int = 0
    missing_optional_columns: list[str] = field(default_factory=list)
    reject_examples: list[str] = field(default_factory=list)


@dataclass
class DaskPredictSummary:
    """A whole run; ``to_dict`` is the ``--json`` output (the local batch keys and more)."""

    input: str
    output: str
    files: int = 0
    rows: int = 0
    predicted: int = 0
    rejected: int = 0
    model_name: str | None = None
    model_version: str | None = None
    seconds: float = 0.0
    missing_optional_columns: list[str] = field(default_factory=list)
    reject_examples: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["engine"] = "dask"
        return data


# ------------------------------------------------------------------------ vectorised


class _Slow(Exception):
    """This chunk cannot take the vectorised path as a whole (a column type or spelling)."""


def _plain(array: Any) -> Any:
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    return array


def _present(array: Any) -> np.ndarray:
    return ~np.asarray(array.is_null(), dtype=bool)


def _numbers(array: Any) -> np.ndarray:
    """Float64 values with NaN for missing, as :func:`eta_cli.predict.rows_of` reads them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_string(kind):
        try:
            array = pc.cast(array, pa.float64())
        except pa.ArrowInvalid as exc:  # the local reader falls back to per-value parsing
            raise _Slow from exc
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        array = pc.cast(array, pa.float64(), safe=False)
    elif pa.types.is_null(kind):
        return np.full(len(array), np.nan)
    else:
        raise _Slow
    return array.to_numpy(zero_copy_only=False).astype(np.float64)


def _timestamps(array: Any) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds since the epoch, plainly valid) of ``created_at``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    n = len(array)
    if pa.types.is_string(kind):
        good = np.asarray(
            pc.fill_null(pc.match_substring_regex(array, _PLAIN_TIMESTAMP), False), dtype=bool
        )
        text = pc.replace_substring(array, "T", " ")
        parsed = pc.strptime(text, format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
        again = pc.strftime(parsed, format="%Y-%m-%d %H:%M:%S")
        # Round trip: what Arrow normalised (Feb 30, hour 24) is not a valid timestamp.
        same = np.asarray(pc.fill_null(pc.equal(again, text), False), dtype=bool)
        seconds = parsed.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return seconds.astype(np.int64) * 1_000_000, good & same
    if pa.types.is_timestamp(kind) and kind.tz is None:
        plain = _present(array)
        if kind.unit == "ns":  # whole microseconds only: more digits are not a valid timestamp
            nanos = array.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            plain &= nanos % 1000 == 0
            values = (nanos // 1000).astype(np.int64)
        else:
            micros = array.cast(pa.timestamp("us")).cast(pa.int64()).fill_null(0)
            values = micros.to_numpy(zero_copy_only=False).astype(np.int64)
        years = values.astype("datetime64[us]").astype("datetime64[Y]").astype(np.int64) + 1970
        return values, plain & (years >= 1970) & (years <= 2199)
    return np.zeros(n, np.int64), np.zeros(n, bool)


def _round1(values: np.ndarray) -> np.ndarray:
    """Python's ``round(x, 1)`` for an array: NumPy's answer except near a tie."""
    rounded = np.round(values, 1)
    scaled = values * 10.0
    near_tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    if near_tie.any():
        rounded[near_tie] = [round(float(v), 1) for v in values[near_tie]]
    return rounded


@dataclass
class _Fast:
    rows: np.ndarray  # positions in the chunk
    columns: dict[str, Any]
    created_us: np.ndarray
    order_ids: list[str | None]


def _vectorised_rows(batch: Any) -> _Fast:
    """The rows of a chunk that the per-order validation would accept, decided with
    vectorised checks that are stricter than it (anything unusual is left out)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from eta_cli import validation

    n = batch.num_rows
    names = batch.schema.names
    ok = np.ones(n, bool)
    created = np.zeros(n, np.int64)
    columns: dict[str, Any] = {}
    for column in validation.ORDER_COLUMNS:
        if column.name not in names:
            columns[column.name] = np.full(n, np.nan) if column.kind == "int" else [None] * n
            continue
        array = _plain(batch.column(column.name))
        if column.kind == "int":
            values = _numbers(array)
            present = ~np.isnan(values)
            with np.errstate(invalid="ignore"):
                fine = np.isfinite(values) & (np.floor(values) == values)
                if column.minimum is not None:
                    fine &= values >= column.minimum
                if column.maximum is not None:
                    fine &= values <= column.maximum
            ok &= np.where(present, fine, column.nullable)
            columns[column.name] = values
        elif column.kind == "timestamp":
            micros, fine = _timestamps(array)
            ok &= fine
            columns[column.name] = micros.astype("datetime64[us]")
            created = micros
        elif column.kind == "str":
            if not (pa.types.is_string(array.type) or pa.types.is_null(array.type)):
                raise _Slow
            if pa.types.is_string(array.type):
                length = pc.fill_null(pc.utf8_length(array), 0).to_numpy(zero_copy_only=False)
                ok &= length <= validation.MAX_TEXT_LENGTH
            columns[column.name] = array.to_pylist()
        else:  # a float column would need its own rules
            raise _Slow
    ids: list[str | None] = [None] * n
    if schema.ORDER_ID in names:
        array = _plain(batch.column(schema.ORDER_ID))
        if pa.types.is_string(array.type):
            length = pc.utf8_length(array).to_numpy(zero_copy_only=False)
            present = _present(array)
            with np.errstate(invalid="ignore"):
                ok &= ~present | ((length >= 1) & (length <= validation.MAX_ORDER_ID_LENGTH))
            ids = array.to_pylist()
        elif pa.types.is_integer(array.type):
            values = array.to_pylist()
            ok &= np.array([v is None or 0 <= v <= _MAX_ORDER_ID_INT for v in values], bool)
            ids = [None if v is None else str(v) for v in values]
        elif not pa.types.is_null(array.type):
            raise _Slow
    rows = np.flatnonzero(ok)
    picked = {
        name: (values[rows] if isinstance(values, np.ndarray) else [values[i] for i in rows])
        for name, values in columns.items()
    }
    return _Fast(rows, picked, created[rows], [ids[i] for i in rows])


def score_batch(
    batch: Any, predictor: LocalPredictor, start_row: int
) -> tuple[Any, int, list[tuple[int, str]], int]:
    """One chunk -> (output table as the local batch path writes it, rejected rows,
    (row, reason) of the first rejections, rows scored on the vectorised path)."""
    import pyarrow as pa

    from eta_cli import predict

    n = batch.num_rows
    try:
        fast = _vectorised_rows(batch)
    except _Slow:
        fast = _Fast(np.zeros(0, np.int64), {}, np.zeros(0, np.int64), [])
    slow = np.setdiff1d(np.arange(n), fast.rows, assume_unique=True)
    tables = []
    if fast.rows.size:
        tables.append(_fast_table(fast, predictor))
    examples: list[tuple[int, str]] = []
    rejected = 0
    if slow.size:
        subset = batch if slow.size == n else batch.take(pa.array(slow))
        outcomes = predictor.predict(predict.rows_of(subset))
        tables.append(predict.output_table(outcomes, 0, predictor))
        for outcome in outcomes:
            if not outcome.ok:
                rejected += 1
                if len(examples) < 5:
                    examples.append((int(slow[outcome.index]), outcome.error_text() or ""))
    if not tables:
        return predict.output_table([], start_row, predictor), 0, [], 0
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if fast.rows.size and slow.size:  # back to input order
        order = np.argsort(np.concatenate([fast.rows, slow]), kind="stable")
        table = table.take(pa.array(order))
    rows = pa.array(np.arange(start_row, start_row + n, dtype=np.int64))
    return table.set_column(0, "row", rows), rejected, examples, int(fast.rows.size)


def _fast_table(fast: _Fast, predictor: LocalPredictor) -> Any:
    import pyarrow as pa

    loaded = predictor.loaded
    values = loaded.model.predict_columns(fast.columns)
    low, high = predictor.interval_fields
    m = fast.rows.size
    created_s = fast.created_us // 1_000_000
    delivery = created_s + np.rint(values[:, 3]).astype(np.int64)
    return pa.table(
        {
            "row": pa.array(np.zeros(m, np.int64)),
            "order_id": pa.array(fast.order_ids, type=pa.string()),
            "eta_p50_s": pa.array(_round1(values[:, 1])),
            low: pa.array(_round1(values[:, 0])),
            high: pa.array(_round1(values[:, 2])),
            "eta_quoted_s": pa.array(_round1(values[:, 3])),
            "expected_delivery_at": pa.array(delivery, type=pa.timestamp("s")),
            "model_name": pa.array([predictor.model_name] * m, type=pa.string()),
            "model_version": pa.array([predictor.model_version] * m, type=pa.string()),
            "error": pa.nulls(m, pa.string()),
        }
    )


# ------------------------------------------------------------------------------ files


def score_file(
    settings: Settings, loaded: LoadedModel, input_uri: str, output_uri: str, chunk_rows: int
) -> FileResult:
    """Score one file into one Parquet file (a temp name renamed locally; one upload on S3)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from eta_cli import predict

    predictor = predict.LocalPredictor(loaded)
    batches, absent, _ = predict.iter_batches(input_uri, settings, chunk_rows)
    result = FileResult(input=input_uri, output=output_uri, missing_optional_columns=absent)
    out_fs, out_path = storage.filesystem_and_path(output_uri, settings)
    local = not storage.is_s3(output_uri)
    target = f"{out_path}.partial" if local else out_path
    if local:
        os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    writer = None
    sink = None
    try:
        sink = out_fs.open_output_stream(target)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            table, rejected, examples, fast = score_batch(batch, predictor, result.rows)
            result.vectorised += fast
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema)
            writer.write_table(table)
            for row, reason in examples:
                if len(result.reject_examples) < 5:
                    result.reject_examples.append(f"row {result.rows + row}: {reason}")
            result.rows += batch.num_rows
            result.rejected += rejected
            result.predicted += batch.num_rows - rejected
        if writer is None:  # an empty partition stays an (empty) partition
            empty = predict.output_table([], 0, predictor)
            writer = pq.ParquetWriter(sink, empty.schema)
        writer.close()
        writer = None
        sink.close()
        sink = None
        if local:
            os.replace(target, out_path)
    except (OSError, pa.ArrowException) as exc:
        raise PredictError(
            f"batch prediction {input_uri} -> {output_uri} failed: {first_line(exc)}"
        ) from exc
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
        if local and os.path.exists(target):
            os.remove(target)
    return result


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(INPUT_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_plan(files: list[DataFile], output_uri: str) -> list[str]:
    """Where each input file's predictions go: the same relative path, ``.parquet``."""
    single = len(files) == 1 and files[0].relative == ""
    if single and output_uri.lower().endswith((".parquet", ".pq")):
        return [output_uri if storage.is_s3(output_uri) else os.path.abspath(output_uri)]
    if storage.is_s3(output_uri):
        root = output_uri.rstrip("/")
        join = "/".join
    else:
        root = os.path.abspath(os.path.expanduser(output_uri))
        if os.path.isfile(root):
            raise PredictError(f"--output {output_uri} is a file; give a folder for --engine dask")
        join = lambda parts: os.path.join(*parts)  # noqa: E731
    targets = []
    for file in files:
        relative = file.relative or os.path.basename(file.path)
        folder, _, name = relative.rpartition("/")
        parts = [root, *([folder] if folder else []), _stem(name) + ".parquet"]
        targets.append(join(parts))
    seen: dict[str, str] = {}
    for file, target in zip(files, targets, strict=True):
        if target in seen:
            raise PredictError(
                f"{seen[target]} and {file.uri} would both write {target}; rename one of them"
            )
        seen[target] = file.uri
    return targets


@dataclass
class Job:
    """What a run will do, checked before any cluster work: files, targets, the model."""

    files: list[DataFile]
    targets: list[str]
    loaded: LoadedModel


def plan(settings: Settings, input_uri: str, output_uri: str, model_uri: str | None = None) -> Job:
    """List the input files, map them to output files and load the model (or fail)."""
    from eta_cli import registry

    files = list_files(input_uri, settings, INPUT_SUFFIXES, what="--input")
    targets = output_plan(files, output_uri)
    inputs = {f.uri for f in files}
    clash = [t for t in targets if t in inputs]
    if clash:
        raise PredictError(f"--output would overwrite the input file {clash[0]}")
    return Job(files, targets, registry.load_model(settings, model_uri))


def predict_dataset(
    settings: Settings,
    client: Client,
    input_uri: str,
    output_uri: str,
    *,
    model_uri: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: ProgressCallback | None = None,
    job: Job | None = None,
) -> DaskPredictSummary:
    """Score every file under ``input_uri`` into ``output_uri`` with the champion (or
    ``model_uri``), one Dask task per file. ``job``: an already checked :func:`plan`."""
    if chunk_rows < 1:
        raise PredictError("--chunk-rows must be at least 1")
    started = time.perf_counter()
    job = job or plan(settings, input_uri, output_uri, model_uri)
    files, targets, loaded = job.files, job.targets, job.loaded
    shared = client.scatter(loaded, broadcast=True)
    futures = [
        client.submit(
            score_file,
            settings,
            shared,
            file.uri,
            target,
            chunk_rows,
            key=f"eta-score-{i}-{_token()}",
            retries=0,
        )
        for i, (file, target) in enumerate(zip(files, targets, strict=True))
    ]
    results: list[FileResult] = Tracker(progress).wait(futures, "scoring", unit="files")
    summary = DaskPredictSummary(
        input=input_uri,
        output=output_uri,
        files=len(results),
        model_name=loaded.name,
        model_version=loaded.version,
    )
    missing: set[str] = set()
    for result in results:
        summary.rows += result.rows
        summary.predicted += result.predicted
        summary.rejected += result.rejected
        summary.outputs.append(result.output)
        missing.update(result.missing_optional_columns)
        for example in result.reject_examples:
            if len(summary.reject_examples) < 5:
                summary.reject_examples.append(f"{result.input} {example}")
    summary.missing_optional_columns = sorted(missing)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _token() -> str:
    import uuid

    return uuid.uuid4().hex[:12]
