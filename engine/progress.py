"""Progress bars for long commands (deploying, replaying, simulating large files).

A bar is drawn on stderr only when stderr is a terminal; piped or redirected, the
command stays quiet, so its output and logs are the same as without a bar. The bar
is transient: it disappears when the work is done.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[[float], None]


def _nothing(_amount: float = 1) -> None:
    return None


def shows_progress() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: float | None = None) -> Iterator[Advance]:
    """Yields ``advance(amount)``; draws a bar on a terminal, does nothing elsewhere.
    ``total`` None draws a pulsing bar (work of unknown size)."""
    if not shows_progress():
        yield _nothing
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if total is not None else TextColumn(""),
        TimeElapsedColumn(),
        TimeRemainingColumn() if total is not None else TextColumn(""),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(amount: float = 1) -> None:
            bar.advance(task, amount)

        yield advance


def count_lines(path: str) -> int:
    """Lines in a file, read in large blocks (to size a bar before the work starts)."""
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return lines
