"""Synthetic orders written to a CSV file, spelled as the real export is.

Why a file and not only ``eta ingest --synthetic``: the live loop needs orders that
exist *before* they reach the lake. A file of new orders is sent through the service
(``eta predict --input FILE --url ...``; it ignores ``actual_delivery_time``), and the
same file is ingested later as the delivered orders. The file has no ``order_id``
column, as a client that never sends ids: the service and ingest derive the same id from
the fields known at order time (:mod:`eta_cli.order_ids`), so predictions and outcomes
join. ``drift`` places the orders where ``eta ingest --synthetic --drift`` would: from
the day after the lake's newest order (:func:`eta_cli.ingest.run.synthetic_start`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from eta_cli import storage
from eta_cli.config import Settings
from eta_cli.errors import first_line
from eta_cli.ingest.run import synthetic_start
from eta_cli.lake import IngestError, Lake
from eta_cli.progress import ProgressCallback, report

SUFFIXES = (".csv", ".csv.gz")
# The generator draws every order in memory at once (about 1 KB per order on the way).
MAX_ORDERS = 5_000_000


@dataclass(frozen=True)
class SyntheticFile:
    """What was written: where, how many orders, and from which day they start."""

    path: str
    orders: int
    seed: int
    drift: bool
    start: str  # first order day (ISO)
    days: int  # the orders spread over this many days from ``start``
    lake_newest_day: str | None  # the day of the lake's newest order, when ``drift`` followed it

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (``eta synthetic --json``)."""
        return asdict(self)


def write_synthetic(
    settings: Settings,
    path: str,
    n: int,
    *,
    seed: int = 0,
    drift: bool = False,
    progress: ProgressCallback | None = None,
) -> SyntheticFile:
    """Write ``n`` synthetic orders to a local ``.csv`` / ``.csv.gz`` file, atomically.

    The file appears whole or not at all (written beside it, then renamed), so a reader
    never sees half a file. ``drift``: the shifted population of ``eta ingest --drift``,
    starting the day after the lake's newest order (the generator's start when the lake
    is empty).
    """
    from eta_cli import synthetic

    target = _check_target(path, n)
    newest = None
    start = str(synthetic.START.date())
    if drift:
        after = _after_lake(settings)
        if after is not None:
            newest, start = str(_day_before(after)), after
    report(progress, "generating", done=0, total=n, unit="rows")
    frame = synthetic.generate_orders(n, seed, drift=drift, start=start)
    report(progress, "generating", done=n, total=n, unit="rows")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        gzip = target.name.lower().endswith(".gz")
        synthetic.write_csv(frame, partial, compression="gzip" if gzip else None)
        os.replace(partial, target)
    except OSError as exc:
        raise IngestError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return SyntheticFile(str(target), n, seed, drift, start, synthetic.DAYS, newest)


def _check_target(path: str, n: int) -> Path:
    """Refuse, before generating anything, a count or a file name that cannot work."""
    if not 1 <= n <= MAX_ORDERS:
        raise IngestError(f"N: expected 1 to {MAX_ORDERS:,} orders, got {n:,}")
    if storage.is_s3(path):
        raise IngestError(
            f"--output {path}: a local file is expected (copy it to S3 afterwards if needed)"
        )
    if not path.lower().endswith(SUFFIXES):
        raise IngestError(
            f"--output {path}: expected a file name ending in {' or '.join(SUFFIXES)}"
        )
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise IngestError(f"--output {path}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise IngestError(f"--output {path}: folder {target.parent} does not exist")
    return target


def _after_lake(settings: Settings) -> str | None:
    """The day after the lake's newest order (None when empty), as a one-line error if
    the lake cannot be read (a missing bucket, a damaged newest partition)."""
    import pyarrow as pa
    from botocore.exceptions import BotoCoreError, ClientError

    lake = Lake(settings.effective_data_uri, settings)
    try:
        return synthetic_start(lake)
    except (OSError, pa.ArrowException, BotoCoreError, ClientError) as exc:
        raise storage.StorageError(
            f"--drift: cannot read the newest order of the lake {lake.uri_of(lake.root)}: "
            f"{first_line(exc)}"
        ) from exc


def _day_before(day: str) -> str:
    """The ISO day before ``day`` (the newest order's day, shown in the summary)."""
    from datetime import date, timedelta

    return str(date.fromisoformat(day) - timedelta(days=1))
