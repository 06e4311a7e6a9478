"""Short-lived credentials on Redis: one ACL user per lease.

The lease account is created whole in one ``ACL SETUSER`` (on, its password, the identity's
rules), inside the same MULTI/EXEC that records its rules and its expiry, so nobody ever sees
the user without them. Redis has no expiring users: nothing in the server ends a lease at its
expiry. The expiry is recorded in the hash ``lockstep:lease-expiry`` of the admin URL's
database, and lockstep's lease reaper enforces it, on start too, finding lease accounts by
their name prefix even when the record is lost (their expiry then reads as unknown).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import redis

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    GrammarError,
    LeaseAccount,
    TargetUnreachable,
)
from lockstep.connectors.redis.acl import (
    RULES_KEY,
    apply_order,
    canonical_entitlement,
    check_account,
)
from lockstep.connectors.redis.admin import RedisAdmin, call, guard, scrub
from lockstep.model import LEASE_PREFIX
from lockstep.secret import Secret

LEASES_KEY = "lockstep:lease-expiry"


class RedisLeases(RedisAdmin):
    def issue_lease(
        self,
        lease_account: str,
        template: str,
        entitlements: frozenset[str],
        secret: Secret,
        expires_at: datetime,
    ) -> Credential:
        """``template`` is not used: a Redis lease holds the rules it is given, not a copy of
        the declared account's."""
        self._lease_account(lease_account)
        until, rules = _stamp(expires_at), _rules(entitlements)
        if self._user(lease_account) is not None:
            raise ActionFailed(f"{lease_account!r} already exists on {self._target}")
        pipe = self._client.pipeline(transaction=True)
        call(pipe, "HSET", LEASES_KEY, lease_account, until)
        call(pipe, "HSET", RULES_KEY, lease_account, json.dumps(rules))
        # reset leaves nothing of a namesake; resetchannels as for any new account.
        login = ("reset", "resetchannels", "on", ">" + secret.reveal())
        call(pipe, "ACL", "SETUSER", lease_account, *login, *rules)
        with guard(f"issue lease {lease_account!r}", ActionFailed, secret):
            replies = pipe.execute(raise_on_error=False)
        errors = [r for r in replies if isinstance(r, redis.exceptions.ResponseError)]
        if errors:
            self._remove(lease_account)  # no half-made lease stays behind
            raise ActionFailed(f"redis issue lease {lease_account!r}: {scrub(errors[0], secret)}")
        self._save_acl()
        return Credential(lease_account, secret)

    def renew_lease(self, lease_account: str, expires_at: datetime) -> None:
        self._lease_account(lease_account)
        until = _stamp(expires_at)
        if self._user(lease_account) is None:
            raise ActionFailed(f"no lease account {lease_account!r} on {self._target}")
        self._command(f"HSET {LEASES_KEY}", "HSET", LEASES_KEY, lease_account, until)

    def revoke_lease(self, lease_account: str) -> None:
        """Delete the user (Redis closes its connections) and its records. A lease account
        that is already gone is revoked."""
        self._lease_account(lease_account)
        self._remove(lease_account)
        self._save_acl()
        remaining = self._sessions()[lease_account]
        if remaining:
            raise ActionFailed(f"{remaining} connection(s) of {lease_account!r} survived")

    def list_leases(self, prefix: str) -> list[LeaseAccount]:
        if not prefix.startswith(LEASE_PREFIX):
            # A shorter prefix would hand ordinary accounts to the reaper.
            raise ValueError(f"lease prefixes start with {LEASE_PREFIX!r}, got {prefix!r}")
        users = self._command("ACL USERS", "ACL", "USERS", failure=TargetUnreachable)
        names = sorted(n for n in users if n.startswith(prefix) and n not in self._excluded)
        if not names:
            return []
        with guard(f"HMGET {LEASES_KEY}", TargetUnreachable):
            try:
                stamps = call(self._client, "HMGET", LEASES_KEY, *names)
            except redis.exceptions.ResponseError as exc:
                if not str(exc).startswith("WRONGTYPE"):
                    raise
                stamps = [None] * len(names)  # records unreadable: every expiry unknown
        return [
            LeaseAccount(name, _parse_stamp(stamp))
            for name, stamp in zip(names, stamps, strict=True)
        ]

    def _lease_account(self, name: str) -> None:
        if not name.startswith(LEASE_PREFIX):
            raise ActionFailed(
                f"{name!r} is not a lease account (lease accounts start with {LEASE_PREFIX!r})"
            )
        try:
            check_account(name)
        except GrammarError as exc:
            raise ActionFailed(str(exc)) from None
        self._managed(name)

    def _remove(self, name: str) -> None:
        pipe = self._client.pipeline(transaction=True)
        call(pipe, "ACL", "DELUSER", name)
        call(pipe, "HDEL", LEASES_KEY, name)
        call(pipe, "HDEL", RULES_KEY, name)
        with guard(f"revoke lease {name!r}", ActionFailed):
            pipe.execute()


def _rules(entitlements: Iterable[str]) -> list[str]:
    try:
        return apply_order(canonical_entitlement(e) for e in entitlements)
    except GrammarError as exc:
        raise ActionFailed(str(exc)) from None


def _stamp(expires_at: datetime) -> str:
    if expires_at.tzinfo is None:
        raise ActionFailed("a lease's expiry must be an aware time (UTC), not a naive one")
    return expires_at.astimezone(UTC).isoformat()


def _parse_stamp(stamp: object) -> datetime | None:
    """The recorded expiry; None when there is none or it is not a time (a forged or broken
    record): the reaper then treats the lease as one it knows nothing about."""
    if not isinstance(stamp, str):
        return None
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
