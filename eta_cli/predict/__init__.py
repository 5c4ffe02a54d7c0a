"""``eta predict``: predictions for orders from a JSON file or a whole CSV/Parquet file.

Two predictors give the same numbers: :class:`LocalPredictor` runs a model
in-process (the registry's champion by default), :class:`RemotePredictor` posts
the orders to a running ``eta serve``. Both validate with ``eta_cli.validation``
and format with :func:`format_predictions`, the function the server answers with.

Batch files stream in chunks (pyarrow): CSV (also ``.csv.gz``) or Parquet, local or
``s3://``, to Parquet or CSV. Rows that fail validation are kept in the output,
in place, with empty predictions and the reason in the ``error`` column, and are
counted in the summary: nothing is dropped silently. Columns other than the
order fields and ``order_id`` are ignored, so a historical file that still has
``actual_delivery_time`` can be scored as it is.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli import schema, validation
from eta_cli.errors import EtaError
from eta_cli.validation import ORDER_ID, interval_field

if TYPE_CHECKING:
    from eta_cli.config import Settings
    from eta_cli.registry import LoadedModel

DEFAULT_CHUNK_ROWS = 50_000
REMOTE_TIMEOUT_S = 30.0


class PredictError(EtaError):
    """The orders or the file cannot be read, or the server cannot be used."""


# --- the one formatting of an answer (server and CLI) ------------------------------


def format_predictions(
    loaded: LoadedModel,
    records: Sequence[dict[str, Any]],
    order_ids: Sequence[str | None],
    values: Any,
) -> list[dict[str, Any]]:
    """One answer per order: median, interval (named by the model's quantiles), quoted ETA
    and the expected delivery time (created_at + quoted, ISO 8601 UTC), seconds to 0.1 s.
    """
    model = loaded.model
    low, high = interval_field(model.low), interval_field(model.high)
    out = []
    for record, order_id, (p_low, p50, p_high, quoted) in zip(
        records, order_ids, values.tolist(), strict=True
    ):
        created: datetime = record["created_at"]
        if created.microsecond:
            created = created.replace(microsecond=0)
        out.append(
            {
                "order_id": order_id,
                "eta_p50_s": round(p50, 1),
                low: round(p_low, 1),
                high: round(p_high, 1),
                "eta_quoted_s": round(quoted, 1),
                "expected_delivery_at": (created + timedelta(seconds=round(quoted))).isoformat()
                + "Z",
            }
        )
    return out


# --- predictors -------------------------------------------------------------------


@dataclass
class Outcome:
    """The answer for one input order: a prediction, or why it was refused."""

    index: int
    order_id: str | None
    prediction: dict[str, Any] | None = None
    problems: list[validation.Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.prediction is not None

    def error_text(self) -> str | None:
        if self.ok:
            return None
        return "; ".join(f"{p.field}: {p.problem}" for p in self.problems) or "rejected"

    def to_dict(self) -> dict[str, Any]:
        if self.prediction is not None:
            return {"index": self.index, **self.prediction}
        return {
            "index": self.index,
            "order_id": self.order_id,
            "error": self.error_text(),
            "details": [p.to_dict() for p in self.problems],
        }


def _validated(orders: Sequence[Any]) -> tuple[list[Outcome], list[int], list[dict], list]:
    outcomes: list[Outcome] = []
    good: list[int] = []
    records: list[dict[str, Any]] = []
    ids: list[str | None] = []
    for i, order in enumerate(orders):
        record, order_id, problems = validation.validate_order(order)
        if order_id is None and isinstance(order, dict) and isinstance(order.get(ORDER_ID), str):
            order_id = order[ORDER_ID]
        outcomes.append(Outcome(i, order_id, problems=problems))
        if not problems:
            good.append(i)
            records.append(record)  # type: ignore[arg-type]
            ids.append(order_id)
    return outcomes, good, records, ids


class LocalPredictor:
    """Predicts in this process with a loaded model (same code path as the server)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model_name = loaded.name
        self.model_version = loaded.version
        self.interval_fields = (interval_field(loaded.model.low), interval_field(loaded.model.high))

    @classmethod
    def from_settings(cls, settings: Settings, model_uri: str | None = None) -> LocalPredictor:
        from eta_cli import registry

        return cls(registry.load_model(settings, model_uri))

    def predict(self, orders: Sequence[Any]) -> list[Outcome]:
        outcomes, good, records, ids = _validated(orders)
        if records:
            values = self.loaded.model.predict_records(records)
            for i, prediction in zip(
                good, format_predictions(self.loaded, records, ids, values), strict=True
            ):
                outcomes[i].prediction = prediction
        return outcomes


class RemotePredictor:
    """Posts the valid orders to ``eta serve`` in batches; invalid ones never leave the client."""

    def __init__(self, url: str, max_batch: int = 1000, timeout: float = REMOTE_TIMEOUT_S) -> None:
        import requests

        self.url = url.rstrip("/")
        self.max_batch = max(1, max_batch)
        self.timeout = timeout
        self.session = requests.Session()
        self.model_name: str | None = None
        self.model_version: str | None = None
        self.interval_fields: tuple[str, str] | None = None

    def wait_ready(self, timeout: float) -> None:
        """Poll ``GET /ready`` until the server has a model (for scripts that just started it)."""
        import time

        import requests

        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                response = self.session.get(f"{self.url}/ready", timeout=5)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise PredictError(
                    f"eta server at {self.url} not ready after {timeout:g} s ({last})"
                )
            time.sleep(0.25)

    def _post(self, orders: list[Any]) -> dict[str, Any]:
        import requests

        try:
            response = self.session.post(
                f"{self.url}/predict", json={"orders": orders}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise PredictError(f"cannot reach the eta server at {self.url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200 or not isinstance(payload, dict):
            detail = ""
            if isinstance(payload, dict):
                detail = payload.get("error", "")
                problems = payload.get("details") or []
                if problems:
                    detail += ": " + "; ".join(
                        f"{p.get('field')}: {p.get('problem')}" for p in problems[:5]
                    )
            raise PredictError(
                f"eta server at {self.url} answered HTTP {response.status_code}"
                + (f" ({detail})" if detail else "")
            )
        return payload

    def predict(self, orders: Sequence[Any]) -> list[Outcome]:
        outcomes, good, _, _ = _validated(orders)
        for start in range(0, len(good), self.max_batch):
            chunk = good[start : start + self.max_batch]
            payload = self._post([orders[i] for i in chunk])
            predictions = payload.get("predictions") or []
            if len(predictions) != len(chunk):
                raise PredictError(
                    f"eta server at {self.url} answered {len(predictions)} predictions "
                    f"for {len(chunk)} orders"
                )
            self.model_name = payload.get("model_name")
            self.model_version = payload.get("model_version")
            for i, prediction in zip(chunk, predictions, strict=True):
                outcomes[i].prediction = prediction
            if self.interval_fields is None and predictions:
                keys = [k for k in predictions[0] if k.startswith("eta_p") and k != "eta_p50_s"]
                if len(keys) == 2:
                    self.interval_fields = (keys[0], keys[1])
        return outcomes


Predictor = LocalPredictor | RemotePredictor


# --- JSON orders -------------------------------------------------------------------


def read_orders_json(path: str) -> list[Any]:
    """Orders from a JSON file (``-`` for stdin): one object, a list, or JSON Lines."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PredictError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictError(f"{path}: cannot be read: {exc}") from exc
    if not text.strip():
        raise PredictError(f"{path} is empty: expected an order object, a list or JSON Lines")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as whole:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise PredictError(f"{path} is not valid JSON: {whole}") from None
        data = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line, parse_constant=_refuse_constant))
            except (ValueError, RecursionError) as exc:
                raise PredictError(
                    f"{path} line {number} is not valid JSON (JSON Lines expected): {exc}"
                ) from None
        return data
    if isinstance(data, dict) and validation.BATCH_KEY in data and len(data) == 1:
        data = data[validation.BATCH_KEY]
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        if not data:
            raise PredictError(f"{path} holds an empty list: no orders")
        return data
    raise PredictError(f"{path} holds a JSON {type(data).__name__}: expected an order object")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# --- batch files ---------------------------------------------------------------------


@dataclass
class BatchSummary:
    """What a batch run did; printed by the command, returned to callers."""

    input: str
    output: str
    rows: int = 0
    predicted: int = 0
    rejected: int = 0
    chunks: int = 0
    model_name: str | None = None
    model_version: str | None = None
    missing_optional_columns: list[str] = field(default_factory=list)
    reject_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _input_format(uri: str) -> str:
    lower = uri.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        return "csv"
    raise PredictError(f"{uri}: unknown file type; use .csv (optionally .gz/.bz2/.zst) or .parquet")


def _output_format(uri: str) -> str:
    lower = uri.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    raise PredictError(f"--output {uri}: use a .parquet or .csv name")


def _wanted_columns(available: Sequence[str]) -> tuple[list[str], list[str]]:
    """(columns to read, optional order columns the file lacks); refuse missing required ones."""
    missing = [c for c in validation.REQUIRED_FIELDS if c not in available]
    if missing:
        optional = [c for c in validation.ACCEPTED_FIELDS if c not in validation.REQUIRED_FIELDS]
        raise PredictError(
            f"input lacks required column(s) {', '.join(missing)}; an order needs "
            f"{', '.join(validation.REQUIRED_FIELDS)} (optional: {', '.join(optional)})"
        )
    wanted = [c for c in validation.ACCEPTED_FIELDS if c in available]
    absent = [c for c in validation.ACCEPTED_FIELDS if c not in available and c != ORDER_ID]
    return wanted, absent


def iter_batches(
    uri: str, settings: Settings, chunk_rows: int
) -> tuple[Iterator[Any], list[str], int | None]:
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
        raise PredictError(f"{uri}: cannot be read: {exc}") from exc
    if info.type.name != "File":
        raise PredictError(f"{uri}: no such file")
    try:
        if kind == "parquet":
            handle = pq.ParquetFile(fs.open_input_file(path))
            names = handle.schema_arrow.names
            wanted, absent = _wanted_columns(names)
            batches = handle.iter_batches(batch_size=chunk_rows, columns=wanted)
            return batches, absent, handle.metadata.num_rows
        stream = fs.open_input_stream(path, compression="detect")
        # Everything as text: a bad cell must reject its row, not abort the whole file.
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=max(chunk_rows * 200, 1 << 14)),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in validation.ACCEPTED_FIELDS},
                strings_can_be_null=True,
                null_values=["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"],
            ),
        )
        wanted, absent = _wanted_columns(reader.schema.names)
        return _select(reader, wanted), absent, None
    except (StorageError, PredictError):
        raise
    except (OSError, pa.ArrowException) as exc:
        raise PredictError(f"{uri}: cannot be read as {kind}: {exc}") from exc


def _select(reader: Any, wanted: list[str]) -> Iterator[Any]:
    for batch in reader:
        yield batch.select(wanted)


def _number_or_text(text: Any) -> Any:
    """A CSV cell as the number it spells, or the text (which validation then refuses)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def rows_of(batch: Any) -> list[dict[str, Any]]:
    """Python dicts of a record batch, with file spellings turned into API values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: dict[str, list[Any]] = {}
    for name in batch.schema.names:
        array = batch.column(name)
        column = schema.BY_NAME.get(name)
        if (
            column is not None
            and column.kind in ("int", "float")
            and pa.types.is_string(array.type)
        ):
            try:
                values = pc.cast(array, pa.float64()).to_pylist()
            except pa.ArrowInvalid:
                values = [_number_or_text(v) for v in array.to_pylist()]
        elif pa.types.is_timestamp(array.type):
            values = [None if v is None else v.isoformat() for v in array.to_pylist()]
        else:
            values = array.to_pylist()
        if pa.types.is_floating(array.type) or (column is not None and column.kind == "int"):
            values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
        if name == ORDER_ID:
            values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
        columns[name] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def output_table(outcomes: list[Outcome], start_row: int, predictor: Predictor) -> Any:
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


def predict_file(
    settings: Settings,
    predictor: Predictor,
    input_uri: str,
    output_uri: str,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> BatchSummary:
    """Score a CSV/Parquet file chunk by chunk into a Parquet/CSV file (local or s3://)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from eta_cli.storage import filesystem_and_path

    if chunk_rows < 1:
        raise PredictError("--chunk-rows must be at least 1")
    out_kind = _output_format(output_uri)
    batches, absent, total = iter_batches(input_uri, settings, chunk_rows)
    summary = BatchSummary(input=input_uri, output=output_uri, missing_optional_columns=absent)
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
            rows = rows_of(batch)
            if not rows:
                continue
            outcomes = predictor.predict(rows)
            table = output_table(outcomes, summary.rows, predictor)
            if writer is None:
                writer = (
                    pq.ParquetWriter(sink, table.schema)
                    if out_kind == "parquet"
                    else pacsv.CSVWriter(sink, table.schema)
                )
            writer.write_table(table)
            for outcome in outcomes:
                if not outcome.ok and len(summary.reject_examples) < 5:
                    summary.reject_examples.append(
                        f"row {summary.rows + outcome.index}: {outcome.error_text()}"
                    )
            rejected = sum(1 for o in outcomes if not o.ok)
            summary.rows += len(outcomes)
            summary.rejected += rejected
            summary.predicted += len(outcomes) - rejected
            summary.chunks += 1
            if on_progress is not None:
                on_progress(summary.rows, total)
        if writer is None:
            raise PredictError(f"{input_uri} has no rows")
        writer.close()
        writer = None
        sink.close()
        sink = None
        if local_out:
            Path(target).replace(out_path)
    except (OSError, pa.ArrowException) as exc:
        raise PredictError(f"batch prediction {input_uri} -> {output_uri} failed: {exc}") from exc
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
        if local_out and Path(target).exists():
            Path(target).unlink()
    summary.model_name = predictor.model_name
    summary.model_version = predictor.model_version
    return summary
