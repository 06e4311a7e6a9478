"""Access requests as the state store keeps them, and as the API and the CLI show them.

A request is one row in ``access_requests`` plus its approvals; once approved it is also the
grant it became (``starts_at``, ``ends_at``, ``verified_at``, ``ended_at``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from lockstep.engine.approvals import ApprovalRules, Given, current_stage
from lockstep.model import RequestStatus
from lockstep.store.tables import access_requests, request_approvals

__all__ = ["RequestStatus"]

# What a pass counts in the desired state: grants to enforce, and those to remove.
ENFORCED = (
    RequestStatus.APPROVED,
    RequestStatus.ACTIVE,
    RequestStatus.FAILED,
    RequestStatus.ENDING,
)
GRANTED = (*ENFORCED, RequestStatus.ENDED)  # `lockstep grants`
DECIDED = frozenset(RequestStatus) - {RequestStatus.PENDING}


@dataclass(frozen=True)
class Ask:
    """What a person asks for, as given (checked by ``Requests.file``)."""

    identity: str
    target: str
    entitlements: tuple[str, ...]
    duration_s: int
    reason: str


@dataclass(frozen=True, slots=True)
class Approval:
    by: str
    stage: int  # 0-based
    at: datetime
    comment: str


@dataclass(frozen=True, slots=True)
class AccessRequest:
    id: str
    identity: str
    target: str
    account: str
    entitlements: tuple[str, ...]
    requester: str
    reason: str
    status: RequestStatus
    environment: str | None
    duration_s: int
    rules: ApprovalRules
    created_at: datetime
    pending_until: datetime
    decided_at: datetime | None
    decided_by: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    verified_at: datetime | None
    ended_at: datetime | None
    detail: str
    approvals: tuple[Approval, ...] = ()

    @property
    def given(self) -> list[Given]:
        return [Given(a.by, a.stage) for a in self.approvals]

    def json(self) -> dict[str, Any]:
        """The contract's shape, and more: the stages and where the request stands."""
        stage = current_stage(self.rules, self.given)
        return {
            "id": self.id,
            "identity": self.identity,
            "target": self.target,
            "account": self.account,
            "entitlements": list(self.entitlements),
            "requester": self.requester,
            "reason": self.reason,
            "status": str(self.status),
            "created_at": iso(self.created_at),
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "approvals": [
                {"by": a.by, "at": iso(a.at), "stage": a.stage + 1, "comment": a.comment}
                for a in self.approvals
            ],
            "verified_at": iso(self.verified_at),
            "ended_at": iso(self.ended_at),
            "environment": self.environment,
            "duration_s": self.duration_s,
            "pending_until": iso(self.pending_until),
            "decided_at": iso(self.decided_at),
            "decided_by": self.decided_by,
            "detail": self.detail,
            "stage": None
            if stage is None or self.status is not RequestStatus.PENDING
            else stage + 1,
            "stages": [
                {**s.fields(), "approved_by": [a.by for a in self.approvals if a.stage == i]}
                for i, s in enumerate(self.rules.stages)
            ],
        }


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_row(row: Row[Any], approvals: Sequence[Approval] = ()) -> AccessRequest:
    return AccessRequest(
        id=row.id,
        identity=row.identity,
        target=row.target,
        account=row.account,
        entitlements=tuple(json.loads(row.entitlements)),
        requester=row.requester,
        reason=row.reason,
        status=RequestStatus(row.status),
        environment=row.environment,
        duration_s=int(row.duration_s),
        rules=ApprovalRules.from_fields(json.loads(row.rules)),
        created_at=row.created_at,
        pending_until=row.pending_until,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        verified_at=row.verified_at,
        ended_at=row.ended_at,
        detail=row.detail,
        approvals=tuple(sorted(approvals, key=lambda a: (a.stage, a.at, a.by))),
    )


def read_requests(
    conn: Connection, where: Iterable[Any] = (), limit: int | None = None, offset: int = 0
) -> list[AccessRequest]:
    """Requests matching every condition of ``where``, newest first, with their approvals
    (``offset`` and ``limit``: one page of them)."""
    query = select(access_requests).order_by(
        access_requests.c.created_at.desc(), access_requests.c.id
    )
    for condition in where:
        query = query.where(condition)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    rows = conn.execute(query).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    by_request: dict[str, list[Approval]] = {}
    for chunk in range(0, len(ids), 500):
        for a in conn.execute(
            select(request_approvals).where(
                request_approvals.c.request_id.in_(ids[chunk : chunk + 500])
            )
        ):
            by_request.setdefault(a.request_id, []).append(
                Approval(a.by, int(a.stage), a.at, a.comment)
            )
    return [from_row(r, by_request.get(r.id, ())) for r in rows]
