"""The journal indexed for the identity pages: which entries act on each account, and the
verifications that can still be an account's last proof. Kept by tailing the journal (the
seq of the last entry read), so that a page reads its few entries by seq instead of
searching a million payloads for an account's name and parsing every verification.

A verification that failed nothing proves every account at once: no verification before it
can be anyone's last, so only it and the ones after it are kept.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from sqlalchemy import select

from lockstep.evidence.history import ACTION_KINDS, Event, History, parse_events
from lockstep.store import Store
from lockstep.store.tables import journal

Key = tuple[str, str]
PAGE = 5000  # entries read per statement while catching up
_BY_SEQ = 500  # seqs per IN list when reading an account's entries
_VERIFICATION = "verification"
_COLUMNS = (journal.c.seq, journal.c.hash, journal.c.at, journal.c.kind, journal.c.payload)


class JournalIndex:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()  # guards the index itself
        self._catching = threading.Lock()  # one catch-up at a time
        self._seq = 0
        self._actions: dict[Key, list[int]] = {}
        self._verifications: list[Event] = []

    @property
    def seq(self) -> int:
        """The last entry read."""
        return self._seq

    def catch_up(self, wait: bool = True) -> None:
        """Read the entries appended since the last call. ``wait=False``: return at once if
        another thread is already reading them (a page shows what is indexed so far)."""
        if not self._catching.acquire(blocking=wait):
            return
        try:
            while self._page():
                pass
        finally:
            self._catching.release()

    def _page(self) -> bool:
        kinds = (*ACTION_KINDS, _VERIFICATION)
        query = (
            select(*_COLUMNS)
            .where(journal.c.seq > self._seq, journal.c.kind.in_(kinds))
            .order_by(journal.c.seq)
            .limit(PAGE)
        )
        with self._store.reading() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return False
        added: dict[Key, list[int]] = {}
        checks: list[Event] = []
        for event in parse_events(rows):
            if event.kind == _VERIFICATION:
                checks.append(_verification(event))
            else:
                key = (str(event.payload.get("target")), str(event.payload.get("account")))
                added.setdefault(key, []).append(event.seq)
        with self._lock:
            for key, seqs in added.items():
                self._actions.setdefault(key, []).extend(seqs)
            for check in checks:
                if check.payload["failed"]:
                    self._verifications.append(check)
                else:
                    self._verifications = [check]
            self._seq = int(rows[-1].seq)
        return len(rows) == PAGE

    def history(self, keys: Collection[Key]) -> History:
        """What ``lockstep.evidence.history.read_history`` finds for ``keys``, from the index."""
        with self._lock:
            seqs = sorted(s for key in keys for s in self._actions.get(key, ()))
            verifications = list(self._verifications)
        rows: list[Any] = []
        if seqs:
            with self._store.reading() as conn:
                for start in range(0, len(seqs), _BY_SEQ):
                    chunk = seqs[start : start + _BY_SEQ]
                    rows += conn.execute(
                        select(*_COLUMNS).where(journal.c.seq.in_(chunk)).order_by(journal.c.seq)
                    ).all()
        actions: dict[Key, list[Event]] = {}
        for event in parse_events(rows):
            key = (str(event.payload.get("target")), str(event.payload.get("account")))
            actions.setdefault(key, []).append(event)
        return History(actions, verifications)


def _verification(event: Event) -> Event:
    """Only what ``History`` reads of a verification: its number of checks and what failed
    (the rest of a payload is not kept in memory for thousands of them)."""
    failed = event.payload.get("failed")
    kept = {
        "checks": event.payload.get("checks"),
        "failed": [f for f in failed if isinstance(f, dict)] if isinstance(failed, list) else [],
    }
    return Event(event.seq, event.hash, event.at, event.kind, kept)
