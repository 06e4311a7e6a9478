"""The grant watch of `lockstep run`: asks the state store, several times a second, for
grants approved and not yet enforced and for grants past their end, and rings their targets'
doorbells. A grant approved through another service, or whose window closes, is thus
enforced within a fraction of a second plus one pass, never at the next interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from lockstep.errors import LockstepError
from lockstep.governance.grants import GrantBook
from lockstep.journal import Journal
from lockstep.model import RequestStatus
from lockstep.service.logs import Log
from lockstep.store import Store

GRANT_WATCH_S = 0.2
ENDING_RETRY_S = 2.0  # how often a target is passed again while one of its grants is ending


class GrantWatch:
    def __init__(
        self, store: Store, journal: Journal, ring: Callable[[str], None], log: Log
    ) -> None:
        self._book = GrantBook(store, journal)
        self._ring = ring
        self._log = log

    def run(self, stopping: threading.Event) -> None:
        """Ring each grant's target once per status it shows; an ending one again every
        ENDING_RETRY_S, since its end waits on proofs (a lease's expiry, a removal)."""
        rung: dict[tuple[str, str], float] = {}
        failing = False
        while not stopping.wait(GRANT_WATCH_S):
            try:
                due = self._book.due()
            except LockstepError as exc:
                if not failing:
                    self._log.error(
                        "grant watch cannot read the store",
                        target=None,
                        op="grants",
                        status="error",
                        error=str(exc),
                    )
                failing = True
                continue
            failing = False
            clock = time.monotonic()
            seen: dict[tuple[str, str], float] = {}
            for d in due:
                key = (d.request, str(d.status))
                last = rung.get(key)
                again = d.status is RequestStatus.ENDING and clock - (last or 0) >= ENDING_RETRY_S
                if last is None or again:
                    self._ring(d.target)
                    last = clock
                seen[key] = last
            rung = seen
