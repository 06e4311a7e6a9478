"""How long operations (apply, verify, ending leases) report their progress, to whoever shows
it (the CLI's bar on a terminal) or to nobody."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int) -> None:
        """``total`` steps are coming."""
        ...

    def advance(self, label: str) -> None:
        """One step done; ``label`` says which (names only, never a secret). Called from
        worker threads too."""
        ...


class _Silent:
    def start(self, total: int) -> None:
        pass

    def advance(self, label: str) -> None:
        pass


SILENT: Progress = _Silent()
