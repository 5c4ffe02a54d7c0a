"""The ingest stage: raw orders in, validated and cleaned orders published to the data lake.

``ingest(settings, sources, engine=...)`` is the entry point (:mod:`.run`); the lake it
writes, and its journaled atomic publish, are :mod:`eta_cli.lake`. Modules by job:

- :mod:`.rules`: the cleaning rules, the single place that says what ingest accepts.
- :mod:`.sources`: planning, sniffing and reading local and ``s3://`` sources.
- :mod:`.chunks`: checking one chunk against the rules, vectorised, and each row's
  ``order_id`` (the source's own, else derived by :mod:`eta_cli.order_ids`).
- :mod:`.merge`: one order day de-duplicated and merged with the published day.
- :mod:`.run`: the entry point and the local engine (threads in this process).
- :mod:`.dask`: the Dask engine (one task per source file and per order day).
"""

from eta_cli.ingest.result import IngestResult
from eta_cli.ingest.rules import BLANK_RULES, REJECT_REASONS, RULES, Rule
from eta_cli.ingest.run import ingest
from eta_cli.ingest.sources import CSV_SUFFIXES, NULL_VALUES, PARQUET_SUFFIXES
from eta_cli.lake import IngestError

__all__ = [
    "BLANK_RULES",
    "CSV_SUFFIXES",
    "NULL_VALUES",
    "PARQUET_SUFFIXES",
    "REJECT_REASONS",
    "RULES",
    "IngestError",
    "IngestResult",
    "Rule",
    "ingest",
]
