"""Reviews and what reviews remember of each access, as the state store keeps them, and as
the API and the CLI show them (CONTRACT.md, "Governance")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from lockstep.engine.review_model import (
    Decision,
    Enforcement,
    Review,
    ReviewStatus,
    Subject,
    Trigger,
    iso,
)


def review_json(r: Review) -> dict[str, Any]:
    """The contract's keys, then what an auditor asks next: who decided, when, why, on what
    evidence, and when the removal was proven."""
    return {
        "id": r.id,
        "identity": r.identity,
        "target": r.target,
        "account": r.account,
        "entitlement": r.entitlement,
        "trigger": str(r.trigger),
        "reviewers": list(r.reviewers),
        "due": iso(r.due),
        "status": str(r.status),
        "decision": str(r.decision) if r.decision else None,
        "decided_by": r.decided_by,
        "decided_at": _iso(r.decided_at),
        "reason": r.reason,
        "opened_at": iso(r.opened),
        "evidence": dict(r.evidence),
        "enforced": str(r.enforce) if r.in_force else None,
        "verified_at": _iso(r.verified_at),
        "lifted_at": _iso(r.lifted_at),
    }


def review_row(r: Review, now: datetime) -> dict[str, Any]:
    return {
        "id": r.id,
        "identity": r.identity,
        "target": r.target,
        "account": r.account,
        "entitlement": r.entitlement,
        "trigger": str(r.trigger),
        "occurrence": r.occurrence,
        "reviewers": json.dumps(list(r.reviewers)),
        "evidence": json.dumps(dict(r.evidence), sort_keys=True, default=str),
        "opened_at": r.opened,
        "due_at": r.due,
        "status": str(r.status),
        "decision": str(r.decision) if r.decision else None,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at,
        "reason": r.reason,
        "enforce": str(r.enforce) if r.enforce else None,
        "verified_at": r.verified_at,
        "lifted_at": r.lifted_at,
        "updated_at": now,
    }


def review_of(row: Row[Any] | Mapping[str, Any]) -> Review:
    v = row._mapping if isinstance(row, Row) else row
    return Review(
        id=v["id"],
        identity=v["identity"],
        target=v["target"],
        account=v["account"],
        entitlement=v["entitlement"],
        trigger=Trigger(v["trigger"]),
        occurrence=v["occurrence"],
        reviewers=tuple(json.loads(v["reviewers"])),
        opened=v["opened_at"],
        due=v["due_at"],
        status=ReviewStatus(v["status"]),
        evidence=json.loads(v["evidence"]),
        decision=Decision(v["decision"]) if v["decision"] else None,
        decided_by=v["decided_by"],
        decided_at=v["decided_at"],
        reason=v["reason"],
        enforce=Enforcement(v["enforce"]) if v["enforce"] else None,
        verified_at=v["verified_at"],
        lifted_at=v["lifted_at"],
    )


def subject_row(s: Subject) -> dict[str, Any]:
    return {
        "identity": s.identity,
        "target": s.target,
        "account": s.account,
        "began_at": s.began,
        "reviewed_at": s.reviewed,
        "owner": s.owner,
        "sponsor_ok": None if s.sponsor_ok is None else int(s.sponsor_ok),
        "scope": None if s.scope is None else json.dumps(sorted(s.scope)),
        "dormant": s.dormant,
    }


def subject_of(row: Row[Any]) -> Subject:
    return Subject(
        identity=row.identity,
        target=row.target,
        account=row.account,
        began=row.began_at,
        reviewed=row.reviewed_at,
        owner=row.owner,
        sponsor_ok=None if row.sponsor_ok is None else bool(row.sponsor_ok),
        scope=None if row.scope is None else frozenset(json.loads(row.scope)),
        dormant=row.dormant,
    )


def journal_fields(r: Review) -> dict[str, Any]:
    """What the journal says of a review: what it is about, never more than the JSON shows."""
    return {
        "review": r.id,
        "identity": r.identity,
        "target": r.target,
        "account": r.account,
        "entitlement": r.entitlement,
        "trigger": str(r.trigger),
        "status": str(r.status),
    }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso(at)
