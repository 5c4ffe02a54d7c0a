"""Helpers of the ``test_dask*`` modules (their cluster is in ``fixtures_dask.py``).

Workers do not see a test's monkeypatched environment, so S3 tests hand them the
credentials with :func:`worker_env`, as a real deployment sets them on workers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from eta_cli import schema, synthetic


@contextlib.contextmanager
def worker_env(client, **values: str) -> Iterator[None]:
    """Set environment variables in every worker process for the block."""

    def apply(changes: dict[str, str | None]) -> None:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    client.run(apply, dict(values))
    try:
        yield
    finally:
        client.run(apply, dict.fromkeys(values))


def write_source_files(folder: Path, n: int = 6000) -> list[Path]:
    """Raw order files as they arrive: both CSV spellings, gzip, Parquet, a repeated file
    (every order a duplicate) and a malformed line."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(4):
        frame = synthetic.generate_orders(n, seed=100 + i)
        path = folder / f"orders-{i}.csv{'.gz' if i == 3 else ''}"
        synthetic.write_csv(
            frame,
            path,
            spelling="original" if i % 2 == 0 else "reexport",
            compression="gzip" if i == 3 else None,
        )
        paths.append(path)
    with open(paths[1], "a", encoding="utf-8") as handle:
        handle.write("1,2,3\n")  # wrong number of fields
    frame = synthetic.generate_orders(n, seed=200)
    paths.append(folder / "orders-4.parquet")
    frame.to_parquet(paths[-1], index=False)
    repeated = folder / "orders-5-again.csv"
    repeated.write_bytes(paths[0].read_bytes())
    paths.append(repeated)
    return paths


def quarantine_keys(path: str | None) -> list[tuple]:
    """(reason, source, order_id) of every quarantined row, sorted (order-independent)."""
    import pandas as pd

    if path is None:
        return []
    frame = pd.read_parquet(path)
    rows = frame[["reason", "source", schema.ORDER_ID]].astype(object)
    rows = rows.where(rows.notna(), "")
    return sorted(map(tuple, rows.to_numpy().tolist()))
