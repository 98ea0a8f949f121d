"""Progress for the command line: a rich bar (or spinner) that appears once an operation has run ~2 s.

Quick operations print nothing; long ones (embedding thousands of texts, replaying a stream,
scoring pairs, loading the model) show a bar on stderr, so stdout stays the command's result.
Shown only on a terminal: in CI logs and pipes a redrawn bar is noise.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["DELAY_S", "Bar", "progress", "working"]

DELAY_S = 2.0  # operations shorter than this show nothing


class Bar:
    """What a caller advances: ``bar.update(n)`` after ``n`` more items are done."""

    def __init__(self, progress: Progress, task) -> None:
        self._progress, self._task = progress, task

    def update(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def set_description(self, desc: str) -> None:
        self._progress.update(self._task, description=desc)


@contextlib.contextmanager
def _delayed(progress: Progress, delay: float, enabled: bool) -> Iterator[None]:
    """Start ``progress``'s live display after ``delay`` seconds if still running; stop it at exit."""
    lock = threading.Lock()
    state = {"started": False, "done": False}

    def start() -> None:
        with lock:
            if not state["done"]:
                progress.start()
                state["started"] = True

    timer = threading.Timer(delay, start)
    timer.daemon = True
    if enabled:
        timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["started"]:
                progress.refresh()
                progress.stop()


@contextlib.contextmanager
def progress(total: int | None, desc: str, *, unit: str = "rows", delay: float = DELAY_S,
             console: Console | None = None) -> Iterator[Bar]:
    """Yield a ``Bar`` over ``total`` items, drawn on stderr once the operation has run ``delay`` s."""
    console = console if console is not None else Console(stderr=True)
    columns = [SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    bar = Progress(*columns, console=console, transient=False)
    task = bar.add_task(desc, total=total)
    with _delayed(bar, delay, console.is_terminal):
        yield Bar(bar, task)


@contextlib.contextmanager
def working(desc: str, *, delay: float = DELAY_S, console: Console | None = None) -> Iterator[None]:
    """Show a spinner with ``desc`` on stderr while the block runs, once it has run ``delay`` s."""
    console = console if console is not None else Console(stderr=True)
    spinner = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True)
    spinner.add_task(desc, total=None)
    with _delayed(spinner, delay, console.is_terminal):
        yield
