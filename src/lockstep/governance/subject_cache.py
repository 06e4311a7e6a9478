"""What reviews remember of each access, read fast and kept between passes.

A pass reads every access of its targets (100k rows and more), so the rows are read without
the ORM's per-value type processing, and a process keeps what it read of each target until
the target's counter in ``review_versions`` moves. Every write of ``review_subjects`` moves
the counter in its own transaction; the writer then brings its copy up to date, or drops it
when another writer got there in between. A copy is never trusted without a look at the
counter, so several processes sharing a store each see the others' writes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, bindparam, insert, select, text, update

from lockstep.engine.review_model import Subject, SubjectKey
from lockstep.store import Store
from lockstep.store.tables import review_versions

_ROWS = (
    "SELECT identity, target, account, began_at, reviewed_at, owner, sponsor_ok, scope, "
    "dormant FROM review_subjects WHERE "
)
_OF_TARGETS = text(_ROWS + "target IN :targets").bindparams(bindparam("targets", expanding=True))
_OF_AGENTS = text(_ROWS + "identity IN :agents AND target NOT IN :targets").bindparams(
    bindparam("agents", expanding=True), bindparam("targets", expanding=True)
)

Versions = dict[str, tuple[int, int]]  # target -> (before, after) a write


class _Copies:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version: dict[str, int] = {}
        self.subjects: dict[str, dict[SubjectKey, Subject]] = {}


_COPIES: WeakKeyDictionary[Store, _Copies] = WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()


def _copies(store: Store) -> _Copies:
    with _COPIES_LOCK:
        return _COPIES.setdefault(store, _Copies())


def read_subjects(
    store: Store, conn: Connection, targets: Sequence[str], agents: Sequence[str]
) -> dict[SubjectKey, Subject]:
    """The subjects of ``targets``, and of ``agents`` on any other target."""
    copies = _copies(store)
    now_at = _versions(conn, targets)
    with copies.lock:
        stale = [t for t in targets if copies.version.get(t) != now_at.get(t, 0)]
    if stale:
        fresh: dict[str, dict[SubjectKey, Subject]] = {t: {} for t in stale}
        for s in _rows(conn.execute(_OF_TARGETS, {"targets": stale})):
            fresh[s.target][s.identity, s.target, s.account] = s
        with copies.lock:
            for t, read in fresh.items():
                copies.version[t] = now_at.get(t, 0)
                copies.subjects[t] = read
    found: dict[SubjectKey, Subject] = {}
    with copies.lock:
        for t in targets:
            found.update(copies.subjects[t])
    if agents:
        params = {"agents": list(agents), "targets": list(targets) or [""]}
        found.update({s.key: s for s in _rows(conn.execute(_OF_AGENTS, params))})
    return found


def move_versions(conn: Connection, targets: Iterable[str]) -> Versions:
    """Move each target's counter, within the caller's writing transaction."""
    wanted = sorted(set(targets))
    if not wanted:
        return {}
    before = _versions(conn, wanted)
    for t in wanted:
        if t in before:
            conn.execute(
                update(review_versions)
                .where(review_versions.c.target == t)
                .values(version=before[t] + 1)
            )
        else:
            conn.execute(insert(review_versions).values(target=t, version=1))
    return {t: (before.get(t, 0), before.get(t, 0) + 1) for t in wanted}


def written(
    store: Store,
    moved: Versions,
    changed: Mapping[SubjectKey, Subject] | None = None,
    gone: Collection[SubjectKey] = (),
    touch: Callable[[Subject], Subject] | None = None,
    touched: SubjectKey | None = None,
) -> None:
    """After the write committed: bring the copies of the targets written up to date (a
    copy another writer moved past in between is dropped, to be read again)."""
    copies = _copies(store)
    with copies.lock:
        for t, (before, after) in moved.items():
            mine = copies.subjects.get(t)
            if mine is None or copies.version.get(t) != before:
                copies.version.pop(t, None)
                copies.subjects.pop(t, None)
                continue
            for key in gone:
                if key[1] == t:
                    mine.pop(key, None)
            for key, s in (changed or {}).items():
                if key[1] == t:
                    mine[key] = s
            if touch is not None and touched is not None and touched in mine:
                mine[touched] = touch(mine[touched])
            copies.version[t] = after


def _versions(conn: Connection, targets: Sequence[str]) -> dict[str, int]:
    query = select(review_versions.c.target, review_versions.c.version).where(
        review_versions.c.target.in_(list(targets))
    )
    return {row.target: row.version for row in conn.execute(query)}


def _rows(rows: Iterable[Any]) -> Iterable[Subject]:
    for identity, target, account, began, reviewed, owner, ok, scope, dormant in rows:
        yield Subject(
            identity,
            target,
            account,
            _utc(began),
            None if reviewed is None else _utc(reviewed),
            owner,
            None if ok is None else bool(ok),
            None if scope is None else frozenset(json.loads(scope)),
            dormant,
        )


def _utc(value: datetime | str) -> datetime:
    """SQLite hands back UTC as naive text, PostgreSQL an aware datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
