"""Whether a lease may be issued: an identity holds at most ``credentials.max_live_leases``
live leases (10 unless the policy says otherwise), and a workload token is traded for one
lease only (its ``jti`` is remembered in the state store until the token expires, so the
refusal holds across every service sharing the store). Decided inside the issuing batch,
so that a request waiting for its lease holds no thread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, tuple_

from lockstep.leases.records import LeaseError, LeaseRecords, LeaseStatus
from lockstep.model import Policy
from lockstep.store import Store
from lockstep.store.tables import token_replay


class TokenReplayed(LeaseError):
    code = "token_replayed"


class QuotaExceeded(LeaseError):
    code = "lease_quota"


@dataclass(frozen=True, slots=True)
class Token:
    """The workload token a lease is requested with."""

    issuer: str
    jti: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Request:
    lease_id: str
    identity: str
    token: Token | None  # None: the operator's own request (``lockstep issue``)


def admit(
    store: Store, records: LeaseRecords, policy: Policy, batch: Sequence[Request], now: datetime
) -> dict[str, LeaseError]:
    """The requests of ``batch`` refused, by lease id: over their identity's quota (counting
    those admitted before them in the batch), or with a token already spent. The tokens of
    the others are spent, in one transaction."""
    refused: dict[str, LeaseError] = {}
    live: dict[str, int] = {}
    for request in batch:
        identity = request.identity
        if identity not in live:
            live[identity] = sum(
                lease.expires_at > now
                for lease in records.list(identity=identity, status=LeaseStatus.ACTIVE)
            )
        limit = policy.identities[identity].credentials.max_live_leases
        if live[identity] >= limit:
            refused[request.lease_id] = QuotaExceeded(
                f"identity {identity!r} holds {live[identity]} live lease(s), its limit "
                f"(credentials.max_live_leases) is {limit}: release one first"
            )
        else:
            live[identity] += 1
    tokens = [r for r in batch if r.token is not None and r.lease_id not in refused]
    if not tokens:
        return refused
    with store.writing(token_replay) as conn:
        conn.execute(delete(token_replay).where(token_replay.c.expires_at <= now))
        keys = sorted({(r.token.issuer, r.token.jti) for r in tokens if r.token is not None})
        spent = {
            (row.issuer, row.jti)
            for row in conn.execute(
                select(token_replay.c.issuer, token_replay.c.jti).where(
                    tuple_(token_replay.c.issuer, token_replay.c.jti).in_(keys)
                )
            )
        }
        rows = []
        for request in tokens:
            assert request.token is not None
            key = (request.token.issuer, request.token.jti)
            if key in spent:
                refused[request.lease_id] = TokenReplayed(
                    "this token (its jti) was already traded for a lease: a token is used once"
                )
                continue
            spent.add(key)
            rows.append(
                {
                    "issuer": key[0],
                    "jti": key[1],
                    "expires_at": request.token.expires_at,
                    "used_at": now,
                }
            )
        if rows:
            conn.execute(insert(token_replay), rows)
    return refused


def token_expiry(exp: float) -> datetime:
    return datetime.fromtimestamp(exp, UTC)
