"""Progress of long operations (apply, verify, reap, revoke by prefix): a bar with counts and
an ETA on stderr when it is a terminal; nothing at all on a pipe or with ``--json``, so that
a CI log or a script reading the output sees only the results."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lockstep.cli.common import err
from lockstep.engine.inert import inert


class Bar:
    """Counts ``advance`` calls against the total given to ``start``; the label says what
    was just done (the action, with its entitlement)."""

    def __init__(self, progress: Progress | None, description: str) -> None:
        self._progress = progress
        self._description = description
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        if self._progress is not None and total > 0 and self._task is None:
            self._task = self._progress.add_task(self._description, total=total, last="")

    def reach(self, done: int, total: int) -> None:
        """``done`` of ``total``, for work that counts itself (a round of probes)."""
        if self._progress is None or total <= 0:
            return
        self.start(total)
        if self._task is not None:
            self._progress.update(self._task, total=total, completed=done)

    def advance(self, label: str) -> None:
        if self._progress is not None and self._task is not None:
            # The label names accounts read from a target: shown inert, never as markup.
            self._progress.update(self._task, advance=1, last=escape(inert(label)))


@contextmanager
def bar(description: str, enabled: bool = True) -> Iterator[Bar]:
    if not (enabled and err.is_terminal):
        yield Bar(None, description)
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[last]}", style="dim"),
        console=err,
        transient=True,
    )
    with progress:
        yield Bar(progress, description)
