"""Findings kept across runs: when each was first and last seen, and whether it still holds.

A finding is resolved only by a pass that read its target and no longer found it. A target
that could not be read says nothing, so its findings stay as they were.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from lockstep.model import Finding, FindingType, Severity
from lockstep.store import Store
from lockstep.store.tables import findings as table

OPEN = "open"
RESOLVED = "resolved"
_CHUNK = 500  # ids per IN (...): far below SQLite's and PostgreSQL's bind limits


@dataclass(frozen=True)
class FindingRecord:
    finding: Finding
    id: str
    first_seen: datetime
    last_seen: datetime
    status: str  # "open" | "resolved"


class FindingLedger:
    def __init__(self, store: Store) -> None:
        self._store = store

    def record(
        self, findings: Sequence[Finding], targets_read: Collection[str], now: datetime
    ) -> list[FindingRecord]:
        """Record one pass's findings; returns their records, in the order given."""
        latest = {f.id: f for f in findings}
        with self._store.writing(lock=table) as conn:
            first_seen = {row.id: row.first_seen for row in _rows(conn, list(latest))}
            new = [_values(f, now) for i, f in latest.items() if i not in first_seen]
            seen = [
                {"b_id": i, "b_severity": str(f.severity), "b_detail": f.detail}
                for i, f in latest.items()
                if i in first_seen
            ]
            still_open = conn.execute(
                select(table.c.id).where(
                    table.c.status == OPEN, table.c.target.in_(list(targets_read))
                )
            )
            gone = [{"b_id": i} for (i,) in still_open if i not in latest]
            if new:
                conn.execute(insert(table), new)
            if seen:
                refresh = update(table).where(table.c.id == bindparam("b_id"))
                conn.execute(
                    refresh.values(
                        severity=bindparam("b_severity"),
                        detail=bindparam("b_detail"),
                        last_seen=now,
                        status=OPEN,
                    ),
                    seen,
                )
            if gone:
                resolve = update(table).where(table.c.id == bindparam("b_id"))
                conn.execute(resolve.values(status=RESOLVED), gone)
        return [FindingRecord(f, f.id, first_seen.get(f.id, now), now, OPEN) for f in findings]

    def current(self, status: str | None = OPEN) -> list[FindingRecord]:
        """Findings with ``status`` (all of them for None), oldest first."""
        query = select(table).order_by(table.c.first_seen, table.c.id)
        if status is not None:
            query = query.where(table.c.status == status)
        with self._store.reading() as conn:
            return [_record(row) for row in conn.execute(query)]


def _rows(conn: Connection, ids: list[str]) -> Iterator[Row[Any]]:
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        yield from conn.execute(select(table.c.id, table.c.first_seen).where(table.c.id.in_(chunk)))


def _values(finding: Finding, now: datetime) -> dict[str, Any]:
    return {
        "id": finding.id,
        "type": str(finding.type),
        "severity": str(finding.severity),
        "target": finding.target,
        "account": finding.account,
        "entitlement": finding.entitlement,
        "identity": finding.identity,
        "detail": finding.detail,
        "first_seen": now,
        "last_seen": now,
        "status": OPEN,
    }


def _record(row: Row[Any]) -> FindingRecord:
    finding = Finding(
        type=FindingType(row.type),
        severity=Severity(row.severity),
        target=row.target,
        account=row.account,
        entitlement=row.entitlement,
        identity=row.identity,
        detail=row.detail,
    )
    return FindingRecord(finding, row.id, row.first_seen, row.last_seen, row.status)
