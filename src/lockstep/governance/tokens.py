"""Personal tokens: how a person the policy names signs in to the API without an OIDC issuer.

A token is ``lsp_<id>_<secret>``: the id finds its record, the secret is 256 random bits.
Only a SHA-256 of the whole token is stored (with 256 bits of entropy a slow hash would add
nothing), so neither the store nor the journal can give a token back. Every token has a
lifetime; revoking one ends it at once, in every service sharing the store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from lockstep.errors import LockstepError
from lockstep.journal import LOCK, Journal
from lockstep.policy.durations import format_duration
from lockstep.store import Store
from lockstep.store.tables import person_tokens

PREFIX = "lsp_"
MAX_TTL_S = 90 * 86400
_ID_BYTES = 6
_SECRET_BYTES = 32
_SHAPE = re.compile(r"^lsp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class TokenError(LockstepError):
    """A token that cannot be made, found or revoked as asked."""

    code = "token_invalid"


class TokenRefused(LockstepError):
    """A bearer token that does not sign anybody in. The message never holds the token."""

    code = "token_refused"


@dataclass(frozen=True)
class TokenRecord:
    id: str
    person: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"

    def fields(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "person": self.person,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "status": self.status(now),
        }


def looks_like_token(text: str) -> bool:
    return text.startswith(PREFIX)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PersonTokens:
    def __init__(
        self, store: Store, journal: Journal, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._store = store
        self._journal = journal
        self._clock = clock

    def create(self, person: str, ttl_s: int) -> tuple[TokenRecord, str]:
        """A new token for ``person`` (whom the caller has checked the policy names): its
        record, and the token itself, which exists nowhere else from then on."""
        if ttl_s <= 0:
            raise TokenError("a token's ttl must be at least 1s")
        if ttl_s > MAX_TTL_S:
            raise TokenError(
                f"ttl {format_duration(ttl_s)} is longer than a token may live "
                f"({format_duration(MAX_TTL_S)})"
            )
        token_id = secrets.token_hex(_ID_BYTES)
        token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        now = self._clock().replace(microsecond=0)
        record = TokenRecord(token_id, person, now, now + timedelta(seconds=ttl_s), None)
        with self._store.writing(LOCK, person_tokens) as conn:
            conn.execute(
                person_tokens.insert().values(
                    id=record.id,
                    person=person,
                    hash=_digest(token),
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                )
            )
            self._journal.append_in(
                conn,
                [
                    (
                        "token_created",
                        {
                            "token_id": record.id,
                            "person": person,
                            "expires_at": _iso(record.expires_at),
                        },
                    )
                ],
            )
        return record, token

    def list(self) -> list[TokenRecord]:
        with self._store.reading() as conn:
            rows = conn.execute(select(person_tokens).order_by(person_tokens.c.created_at))
            return [_record(r) for r in rows]

    def revoke(self, token_id: str) -> TokenRecord:
        with self._store.writing(LOCK, person_tokens) as conn:
            row = conn.execute(
                select(person_tokens).where(person_tokens.c.id == token_id)
            ).one_or_none()
            if row is None:
                raise TokenError(f"no token {token_id!r} (lockstep token list shows them)")
            record = _record(row)
            if record.revoked_at is not None:
                raise TokenError(f"token {token_id} was revoked already")
            now = self._clock()
            conn.execute(
                update(person_tokens).where(person_tokens.c.id == token_id).values(revoked_at=now)
            )
            self._journal.append_in(
                conn, [("token_revoked", {"token_id": token_id, "person": record.person})]
            )
        return TokenRecord(record.id, record.person, record.created_at, record.expires_at, now)

    def authenticate(self, token: str) -> TokenRecord:
        """The record of a live token; TokenRefused otherwise."""
        match = _SHAPE.match(token)
        if match is None:
            raise TokenRefused("malformed personal token")
        with self._store.reading() as conn:
            row = conn.execute(
                select(person_tokens).where(person_tokens.c.id == match.group(1))
            ).one_or_none()
        # Compared whether or not the id was found, so that timing tells nothing.
        expected = row.hash if row is not None else "0" * 64
        if not hmac.compare_digest(expected, _digest(token)) or row is None:
            raise TokenRefused("unknown personal token")
        record = _record(row)
        if record.revoked_at is not None:
            raise TokenRefused(f"personal token {record.id} was revoked")
        if record.expires_at <= self._clock():
            raise TokenRefused(f"personal token {record.id} has expired")
        return record


def _record(row: Any) -> TokenRecord:
    return TokenRecord(row.id, row.person, row.created_at, row.expires_at, row.revoked_at)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
