"""What every command shares: settings from the global options, consoles, JSON output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console, ConsoleDimensions

from eta_cli.config import Settings, load_settings
from eta_cli.progress import Progress as ProgressEvent
from eta_cli.progress import ProgressCallback

# Width of output that goes to a file or a pipe with no $COLUMNS: wide enough that a table
# of URIs keeps its rows whole in a log or a `| less -S`, where Rich's 80 would fold them.
PIPED_WIDTH = 160


class _Console(Console):
    """A Rich console that lays piped output out :data:`PIPED_WIDTH` wide, not at 80.

    A terminal keeps its own width and $COLUMNS always wins, so a user can ask for any
    width; only output that is not going to a terminal (a file, a pipe, cron) is widened.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kwargs.get("width") is None:
            # Rich freezes $COLUMNS as of the console's creation (at import); read it at
            # each use instead, so the width follows the environment of the call.
            self._width = None

    @property  # type: ignore[override]
    def size(self) -> ConsoleDimensions:
        """The terminal's size, or :data:`PIPED_WIDTH` columns when nothing sets one."""
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self.is_terminal or self._width is not None or self._environ.get("COLUMNS"):
            return size
        return ConsoleDimensions(max(size.width, PIPED_WIDTH), size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console()
err_console = _Console(stderr=True)


@contextlib.contextmanager
def quiet_library_warnings(debug: bool = False) -> Iterator[None]:
    """Keep warnings raised inside NumPy, SciPy, pandas or Evidently off the terminal:
    a drift test on a handful of rows makes them print dozens of ``RuntimeWarning`` lines
    that tell the user nothing (the report says when a sample is too small).
    ``ETA_DEBUG`` (``debug``) lets them through."""
    if debug:
        yield
        return
    import warnings

    with warnings.catch_warnings():
        for module in ("numpy", "scipy", "pandas", "evidently", "sklearn"):
            warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
        yield


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """Settings built from the global ``--profile``/``--home`` and a command's own options."""
    root = ctx.find_root()
    options = dict(root.obj or {})
    options.update({k: v for k, v in overrides.items() if v is not None})
    profile = options.pop("profile", None)
    return load_settings(profile=profile, overrides=options)


def print_json(payload: Any) -> None:
    """One JSON object on stdout, for machines (``--json``)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def is_terminal() -> bool:
    return console.is_terminal


@contextlib.contextmanager
def progress_display(bars_wanted: bool = True) -> Iterator[ProgressCallback]:
    """Show library :class:`~eta_cli.progress.Progress` events on stderr.

    Messages (a cluster's address, a step's duration) always go to stderr, even with
    ``--json`` or when piped, because they tell the user where to look. Bars are drawn
    only when wanted and stderr is a terminal: one per task, created on its first event.
    """
    if not bars_wanted or not err_console.is_terminal:
        yield _messages_only
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    bars = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[count]} {task.fields[note]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def show(event: ProgressEvent) -> None:
        if event.message:
            bars.console.print(event.message, highlight=False)
        if not event.message or event.done or event.total:
            if event.task not in tasks:
                tasks[event.task] = bars.add_task(event.task, total=event.total, count="", note="")
            bars.update(
                tasks[event.task],
                completed=event.done,
                total=event.total,
                count=_count_text(event),
                note=event.note,
            )

    with bars:
        yield show


def _messages_only(event: ProgressEvent) -> None:
    if event.message:
        err_console.print(event.message, highlight=False, soft_wrap=True)


def _count_text(event: ProgressEvent) -> str:
    """'3/8 files' beside a bar; byte counts are left to the percentage."""
    if event.unit in ("", "bytes"):
        return ""
    if event.total is None:
        return f"{event.done:,.0f} {event.unit}"
    return f"{event.done:,.0f}/{event.total:,.0f} {event.unit}"
