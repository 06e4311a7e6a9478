"""Progress of long steps on a terminal (stderr), and nothing where there is none, so that
scripts and JSON output see exactly what they would without it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def probing(console: Console) -> Iterator[Callable[[int, int], None]]:
    """A callback for ``(done, total)`` probes, drawing a bar while there are any."""
    if not console.is_terminal:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("probing credentials"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("probe", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
