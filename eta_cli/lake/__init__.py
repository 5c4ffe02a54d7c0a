"""The data lake: the cleaned orders every stage reads, and how ingest writes them safely.

Layout under the data lake root (``settings.effective_data_uri`` or ``--output``)::

    orders/order_date=YYYY-MM-DD/part-0.parquet   cleaned orders, schema.arrow_schema()
    quarantine/<run_id>.parquet                   rejected rows, raw values and a reason
    _staging/<run_id>/                            work area of a running ingest (invisible)
    _journal/<run_id>.json                        publish plan, present only while publishing
    _lock (local) / _lock.json (S3)               the one writer's lock and who holds it

Modules by job:

- :mod:`eta_cli.lake.read`: where the orders are and how to read them (``read_orders``,
  ``open_dataset``, the one ``parse_since``), for train, drift, pipeline and Dask.
- :mod:`eta_cli.lake.store`: the :class:`Lake` store (local folder or ``s3://`` prefix),
  its atomic file operations and its lock.
- :mod:`eta_cli.lake.staging`: a run's staging area (Arrow streams per order day).
- :mod:`eta_cli.lake.publish`: the journaled, atomic publish and its recovery.
- :mod:`eta_cli.lake.lock`: one writer per lake (``flock``; on S3 a leased lock object
  taken with conditional writes), a second writer waits, then names the holder.

Readers never wait and never write: while a publish is pending (a journal is present,
e.g. after a crash) they read the staged files the journal lists in place of the ones
they replace, i.e. they roll the publish forward in what they read.

For an ``s3://`` lake the staged streams live in a local temporary folder; the merged
partition files are uploaded to ``_staging/`` in the bucket before the journal.
"""

from eta_cli.errors import IngestError
from eta_cli.lake.publish import (
    StagedRun,
    new_run_id,
    prepare_and_publish,
    publish_staged,
    recover,
)
from eta_cli.lake.read import (
    NoOrdersError,
    Since,
    dataset_uri,
    open_dataset,
    parse_since,
    quarantine_uri,
    read_orders,
    since_start,
)
from eta_cli.lake.staging import (
    QUARANTINE_SCHEMA,
    STAGE_SCHEMA,
    DayStreams,
    RunStage,
    stage_quarantine_file,
)
from eta_cli.lake.store import Lake, storage_errors

__all__ = [
    "QUARANTINE_SCHEMA",
    "STAGE_SCHEMA",
    "DayStreams",
    "IngestError",
    "Lake",
    "NoOrdersError",
    "RunStage",
    "Since",
    "StagedRun",
    "dataset_uri",
    "new_run_id",
    "open_dataset",
    "parse_since",
    "prepare_and_publish",
    "publish_staged",
    "quarantine_uri",
    "read_orders",
    "recover",
    "since_start",
    "stage_quarantine_file",
    "storage_errors",
]
