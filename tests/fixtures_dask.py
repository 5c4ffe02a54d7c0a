"""The two-worker Dask cluster of the ``test_dask*`` modules (``pytest_plugins`` there).

Real worker processes (as on a cluster: tasks and results are pickled, workers
import eta on their own), one thread and 1.5 GB each, started once per session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def dask_client() -> Iterator:
    import logging

    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit="1.5GB",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
