"""Grants as the passes see them: read from the state store for the desired state, and
moved along (active, failed, ending, ended) by what a pass proved, each move journaled with
the journal entries of the results that brought it about.

A move is written only from the status the pass read (``UPDATE … WHERE status = read``): two
services can never both activate or end one grant, and its journal says so once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select, update

from lockstep.engine.grants import GrantState, Transition
from lockstep.governance.records import ENFORCED, iso
from lockstep.journal import LOCK, Journal
from lockstep.model import Grant, RequestStatus
from lockstep.store import Store
from lockstep.store.tables import access_requests, leases

_KINDS = {
    RequestStatus.ACTIVE: "grant_active",
    RequestStatus.FAILED: "grant_failed",
    RequestStatus.ENDING: "grant_ending",
    RequestStatus.ENDED: "grant_ended",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Due:
    """A grant a service should pass its target for now: approved, or past its end."""

    request: str
    target: str
    status: RequestStatus


class GrantBook:
    def __init__(
        self, store: Store, journal: Journal | None = None, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._store = store
        self._journal = journal or Journal(store)
        self._clock = clock

    def states(self, targets: Collection[str]) -> list[GrantState]:
        """The grants a pass over ``targets`` counts: to enforce, and to remove."""
        if not targets:
            return []
        query = select(
            access_requests.c.id,
            access_requests.c.identity,
            access_requests.c.target,
            access_requests.c.account,
            access_requests.c.entitlements,
            access_requests.c.ends_at,
            access_requests.c.starts_at,
            access_requests.c.status,
            access_requests.c.detail,
        ).where(access_requests.c.status.in_([str(s) for s in ENFORCED]))
        if len(targets) <= 100:
            query = query.where(access_requests.c.target.in_(list(targets)))
        with self._store.reading() as conn:
            rows = conn.execute(query).all()
        wanted = set(targets)
        return [
            GrantState(
                Grant(
                    r.id,
                    r.identity,
                    r.target,
                    r.account,
                    frozenset(json.loads(r.entitlements)),
                    r.ends_at,
                    r.starts_at,
                ),
                RequestStatus(r.status),
                r.detail,
            )
            for r in rows
            if r.target in wanted
        ]

    def settle(self, states: Sequence[GrantState], moves: Sequence[Transition]) -> list[Transition]:
        """Write ``moves`` (from the ``states`` a pass read) and journal each; returns those
        written (a grant another service moved meanwhile is left to it)."""
        if not moves:
            return []
        now = self._clock()
        current = {s.grant.request: s for s in states}
        status = {s.grant.request: s.status for s in states}
        written = []
        with self._store.writing(LOCK, access_requests) as conn:
            entries: list[tuple[str, dict[str, Any]]] = []
            for move in moves:
                state = current[move.request]
                values: dict[str, Any] = {"status": str(move.status), "updated_at": now}
                if move.status is RequestStatus.ACTIVE:
                    values.update(verified_at=now, detail="")
                elif move.status is RequestStatus.FAILED:
                    values.update(detail=move.detail)
                elif move.status is RequestStatus.ENDED:
                    values.update(ended_at=now)
                done = conn.execute(
                    update(access_requests)
                    .where(
                        access_requests.c.id == move.request,
                        access_requests.c.status == str(status[move.request]),
                    )
                    .values(values)
                )
                if done.rowcount != 1:
                    continue
                status[move.request] = move.status
                written.append(move)
                entries.append((_KINDS[move.status], _entry(state.grant, move, now)))
            self._journal.append_in(conn, entries)
        return written

    def active(self, identity: str, target: str) -> list[Grant]:
        """The identity's grants proven in ``target`` now: what its leases there hold too."""
        return [
            s.grant
            for s in self.states([target])
            if s.status is RequestStatus.ACTIVE and s.grant.identity == identity
        ]

    def leased(self, states: Sequence[GrantState]) -> set[str]:
        """The grants among ``states`` under which a lease still lives (issued while the
        grant was, not yet proven ended): a grant ends only once its leases have."""
        found: set[str] = set()
        for state in states:
            g = state.grant
            if g.starts_at is None:
                continue
            with self._store.reading() as conn:
                live = conn.execute(
                    select(leases.c.id)
                    .where(
                        leases.c.identity == g.identity,
                        leases.c.target == g.target,
                        leases.c.status.in_(["active", "failed"]),
                        leases.c.issued_at >= g.starts_at,
                        leases.c.issued_at < g.ends_at,
                    )
                    .limit(1)
                ).first()
            if live is not None:
                found.add(g.request)
        return found

    def due(self) -> list[Due]:
        """Grants approved and not yet enforced, and grants past their end: what the
        services' grant watch rings the targets for."""
        now = self._clock()
        with self._store.reading() as conn:
            rows = conn.execute(
                select(
                    access_requests.c.id, access_requests.c.target, access_requests.c.status
                ).where(
                    or_(
                        access_requests.c.status.in_(
                            [str(RequestStatus.APPROVED), str(RequestStatus.ENDING)]
                        ),
                        and_(
                            access_requests.c.status.in_(
                                [str(RequestStatus.ACTIVE), str(RequestStatus.FAILED)]
                            ),
                            access_requests.c.ends_at <= now,
                        ),
                    )
                )
            ).all()
        return [Due(r.id, r.target, RequestStatus(r.status)) for r in rows]


def _entry(grant: Grant, move: Transition, now: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request": grant.request,
        "identity": grant.identity,
        "target": grant.target,
        "account": grant.account,
        "entitlements": sorted(grant.entitlements),
        "at": iso(now),
        "results": list(move.results),
    }
    if move.status is RequestStatus.FAILED:
        body["detail"] = move.detail
    if move.status is RequestStatus.ENDED:
        body["kept"] = list(move.kept)
    if move.status is RequestStatus.ENDING:
        body["ends_at"] = iso(grant.ends_at)
    return body
