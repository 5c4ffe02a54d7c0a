"""Progress events: how a long library call says how far it is without printing.

Library modules never talk to the terminal. A function that can run for long takes
``progress: ProgressCallback | None`` and calls it with :class:`Progress` events; the
command layer turns them into Rich progress bars (``commands/_common.progress_display``)
and ``--json`` or a library caller simply passes ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One progress event.

    ``task`` names what is being done ("reading", "boosting", "scoring files"); one bar
    is shown per task. ``done``/``total`` say how far (``total`` None while unknown) in
    ``unit`` ("bytes", "rows", "rounds", "trials", "partitions", "files", "days").
    ``note`` is a short text shown beside the bar ("1,234 rows", "best MAE 525 s").
    ``message`` is a line worth keeping once the bar is gone (a cluster's address, a
    step's duration); an event may carry only a message.
    """

    task: str
    done: float = 0
    total: float | None = None
    unit: str = ""
    note: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total


ProgressCallback = Callable[[Progress], None]


def report(progress: ProgressCallback | None, task: str, **fields: object) -> None:
    """Send one event when somebody listens (``progress`` may be None)."""
    if progress is not None:
        progress(Progress(task, **fields))  # type: ignore[arg-type]
