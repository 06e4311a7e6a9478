"""What the pages read from the state store directly, a page at a time: findings (always as
the ledger has them now, so that an acceptance shows at once)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, func, select

from lockstep.engine.catalog import HELD, STATUSES
from lockstep.store import Store
from lockstep.store.tables import findings as t

ALL = "all"
_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@dataclass(frozen=True)
class FindingFilter:
    status: str = ""  # '' for the held ones, ALL for every status
    type: str = ""
    severity: str = ""
    target: str = ""
    account: str = ""
    id: str = ""

    def where(self, query: Select[Any], visible: frozenset[str] | None) -> Select[Any]:
        if self.id:
            query = query.where(t.c.id == self.id)
        if self.status == ALL:
            pass
        elif self.status in STATUSES:
            query = query.where(t.c.status == self.status)
        else:
            query = query.where(t.c.status.in_(HELD))
        for column, value in (
            (t.c.type, self.type),
            (t.c.severity, self.severity),
            (t.c.target, self.target),
            (t.c.account, self.account),
        ):
            if value:
                query = query.where(column == value)
        if visible is not None:
            query = query.where(t.c.identity.in_(sorted(visible)))
        return query


def findings_page(
    store: Store,
    chosen: FindingFilter,
    visible: frozenset[str] | None,
    offset: int,
    limit: int,
) -> tuple[list[Mapping[str, Any]], int]:
    """One page of findings, most severe and oldest first, and how many match in all."""
    severity = case(_RANK, value=t.c.severity, else_=len(_RANK))
    rows_q = (
        chosen.where(select(t), visible)
        .order_by(severity, t.c.first_seen, t.c.id)
        .offset(offset)
        .limit(limit)
    )
    count_q = chosen.where(select(func.count()).select_from(t), visible)
    with store.reading() as conn:
        total = int(conn.execute(count_q).scalar_one())
        rows: list[Mapping[str, Any]] = [dict(r._mapping) for r in conn.execute(rows_q)]
    return rows, total
