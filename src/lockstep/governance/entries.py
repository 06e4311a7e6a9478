"""What a request's row holds, and what the journal says of its filing and of refusals."""

from __future__ import annotations

import json
from typing import Any

from lockstep.governance.auth import Principal
from lockstep.governance.records import AccessRequest, Ask, iso
from lockstep.policy.durations import format_duration


def request_row(request: AccessRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "identity": request.identity,
        "target": request.target,
        "account": request.account,
        "entitlements": json.dumps(list(request.entitlements)),
        "requester": request.requester,
        "reason": request.reason,
        "status": str(request.status),
        "environment": request.environment,
        "duration_s": request.duration_s,
        "rules": json.dumps(request.rules.fields(), sort_keys=True),
        "created_at": request.created_at,
        "pending_until": request.pending_until,
        "detail": "",
        "updated_at": request.created_at,
    }


def filed_entry(request: AccessRequest, who: Principal) -> dict[str, Any]:
    return {
        "request": request.id,
        "identity": request.identity,
        "target": request.target,
        "account": request.account,
        "entitlements": list(request.entitlements),
        "requester": request.requester,
        "via": who.via,
        "reason": request.reason,
        "duration": format_duration(request.duration_s),
        "environment": request.environment,
        "pending_until": iso(request.pending_until),
        "rules": request.rules.fields(),
    }


def refused_entry(doing: str, who: Principal, ask: Ask, reason: str) -> tuple[str, dict[str, Any]]:
    return (
        "request_refused",
        {
            "op": doing,
            "by": str(who),
            "via": who.via,
            "identity": ask.identity,
            "target": ask.target,
            "entitlements": list(ask.entitlements),
            "reason": reason,
        },
    )


def decision_refused_entry(
    doing: str, who: Principal, request_id: str, reason: str
) -> tuple[str, dict[str, Any]]:
    return (
        "request_refused",
        {"op": doing, "by": str(who), "via": who.via, "request": request_id, "reason": reason},
    )
