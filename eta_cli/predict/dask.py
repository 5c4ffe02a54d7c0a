"""``eta predict --engine dask``: batch scoring of a partitioned dataset on a Dask cluster.

One task per input file (a CSV or Parquet file under ``--input``, local or
``s3://``): the worker runs :func:`eta_cli.predict.batch.score_file`, the local
engine's code, with the champion model (loaded once on the driver, broadcast to
workers), and writes one Parquet file with the same relative path under
``--output`` (suffix ``.parquet``), atomically. So the columns and values are those
of the local batch path: rows are validated and scored as columns, and rows that
fail validation stay in place with empty predictions and the reason in ``error``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eta_cli import storage
from eta_cli.config import Settings
from eta_cli.dask_engine import DataFile, Tracker, engine_client, list_files
from eta_cli.predict import DEFAULT_CHUNK_ROWS, LocalPredictor, PredictError, RemotePredictor
from eta_cli.predict.batch import BatchResult, score_file
from eta_cli.progress import ProgressCallback

if TYPE_CHECKING:
    from distributed import Client

    from eta_cli.predict import Predictor
    from eta_cli.registry import LoadedModel

INPUT_SUFFIXES = (".parquet", ".pq", ".parq", ".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
FILES_ONLY = "--engine dask scores files: give --input DIR|s3://... --output DIR|s3://..."


def score_partition(
    settings: Settings, loaded: LoadedModel, input_uri: str, output_uri: str, chunk_rows: int
) -> BatchResult:
    """The task of one file: score it into one Parquet file (an empty file stays empty)."""
    return score_file(
        settings,
        LocalPredictor(loaded),
        input_uri,
        output_uri,
        chunk_rows=chunk_rows,
        out_kind="parquet",
        empty_ok=True,
    )


# ------------------------------------------------------------------------------ files


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


def plan(
    settings: Settings,
    input_uri: str,
    output_uri: str,
    model_uri: str | LoadedModel | None = None,
) -> Job:
    """List the input files, map them to output files and load the model (or fail)."""
    from eta_cli import registry

    files = list_files(input_uri, settings, INPUT_SUFFIXES, what="--input")
    targets = output_plan(files, output_uri)
    inputs = {f.uri for f in files}
    clash = [t for t in targets if t in inputs]
    if clash:
        raise PredictError(f"--output would overwrite the input file {clash[0]}")
    if model_uri is None or isinstance(model_uri, str):
        return Job(files, targets, registry.load_model(settings, model_uri))
    return Job(files, targets, model_uri)


def predict_on_cluster(
    settings: Settings,
    input_uri: str,
    output_uri: str,
    *,
    model: str | LoadedModel | Predictor | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    engine: str = "dask",
    scheduler: str | None = None,
    progress: ProgressCallback | None = None,
) -> BatchResult:
    """The Dask engine of :func:`eta_cli.predict.files.predict_files`: the files, targets
    and model are checked first, then a cluster is connected (or started) for the run."""
    if isinstance(model, RemotePredictor):
        raise PredictError(FILES_ONLY)
    if isinstance(model, LocalPredictor):
        model = model.loaded
    job = plan(settings, input_uri, output_uri, model)  # before any cluster
    with engine_client(engine, scheduler, progress) as client:
        return predict_dataset(
            settings,
            client,
            input_uri,
            output_uri,
            chunk_rows=chunk_rows,
            progress=progress,
            job=job,
        )


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
) -> BatchResult:
    """Score every file under ``input_uri`` into ``output_uri`` with the champion (or
    ``model_uri``), one task per file on ``client``. ``job``: an already checked
    :func:`plan`."""
    if chunk_rows < 1:
        raise PredictError("--chunk-rows must be at least 1")
    started = time.perf_counter()
    job = job or plan(settings, input_uri, output_uri, model_uri)
    shared = client.scatter(job.loaded, broadcast=True)
    futures = [
        client.submit(
            score_partition,
            settings,
            shared,
            file.uri,
            target,
            chunk_rows,
            key=f"eta-score-{i}-{_token()}",
            retries=0,
        )
        for i, (file, target) in enumerate(zip(job.files, job.targets, strict=True))
    ]
    results: list[BatchResult] = Tracker(progress).wait(futures, "scoring", unit="files")
    summary = BatchResult(
        input=input_uri,
        output=output_uri,
        files=len(results),
        model_name=job.loaded.name,
        model_version=job.loaded.version,
        engine="dask",
    )
    missing: set[str] = set()
    for result in results:
        summary.rows += result.rows
        summary.predicted += result.predicted
        summary.rejected += result.rejected
        summary.vectorised += result.vectorised
        summary.outputs.append(result.output)
        missing.update(result.missing_optional_columns)
        summary.add_rejects([f"{result.input} {example}" for example in result.reject_examples])
    summary.missing_optional_columns = sorted(missing)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _token() -> str:
    import uuid

    return uuid.uuid4().hex[:12]
