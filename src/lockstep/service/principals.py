"""Who is calling, and what they may see and do: the one code path the API and the dashboard
share.

A caller presents a token (a bearer header to the API, the "Token" field of the dashboard's
sign-in). Each ``Authenticator`` recognises its own kind of token and answers with a
``Principal``: the operator (``LOCKSTEP_API_TOKEN``), and the people of ``governance`` once
their personal tokens or OIDC tokens are configured (each such authenticator is added to
``Authenticators`` without either front end changing). A dashboard session keeps the
principal, never the token, and asks ``still_valid`` on every request, so that a revoked or
expired token ends its sessions too.

``Authority`` answers what a principal may see and do. The operator may do everything the
service offers; a person sees the identities whose owner lists them as a contact (all of
them when ``governance.admins`` names them) and may act on those only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from lockstep.model import Policy
from lockstep.secret import Secret

OPERATOR = "operator"


class Kind(StrEnum):
    OPERATOR = "operator"
    PERSON = "person"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``credential`` names what authenticated them (a token id,
    or a keyed fingerprint of the operator's token): never the token itself."""

    name: str
    kind: Kind
    credential: str
    expires_at: datetime | None  # the token's own expiry; None: until it is changed

    @property
    def is_operator(self) -> bool:
        return self.kind is Kind.OPERATOR


class Authenticator(Protocol):
    def authenticate(self, token: str, now: datetime) -> Principal | None:
        """The principal ``token`` proves, or None when it is not one of this kind's."""
        ...

    def still_valid(self, principal: Principal, now: datetime) -> bool:
        """Whether the credential behind ``principal`` is still good (not revoked, expired
        or replaced); only asked about principals this authenticator made."""
        ...

    def makes(self, principal: Principal) -> bool: ...


class OperatorToken:
    """``LOCKSTEP_API_TOKEN``: the operator, who may do everything."""

    def __init__(self, token: Secret) -> None:
        self._token = token.reveal().encode()
        self._credential = (
            "operator:"
            + hmac.new(b"lockstep operator token", self._token, hashlib.sha256).hexdigest()[:16]
        )

    def authenticate(self, token: str, now: datetime) -> Principal | None:
        if not hmac.compare_digest(token.encode(), self._token):
            return None
        return Principal(OPERATOR, Kind.OPERATOR, self._credential, None)

    def still_valid(self, principal: Principal, now: datetime) -> bool:
        return hmac.compare_digest(principal.credential, self._credential)

    def makes(self, principal: Principal) -> bool:
        return principal.kind is Kind.OPERATOR


class Authenticators:
    """Every kind of token the service accepts, tried in turn."""

    def __init__(self, kinds: Sequence[Authenticator] = ()) -> None:
        self._kinds = list(kinds)

    @classmethod
    def for_service(cls, operator_token: Secret | None) -> Authenticators:
        return cls([OperatorToken(operator_token)] if operator_token is not None else [])

    def add(self, kind: Authenticator) -> None:
        self._kinds.append(kind)

    @property
    def configured(self) -> bool:
        """Whether any token at all can sign in."""
        return bool(self._kinds)

    def authenticate(self, token: str, now: datetime) -> Principal | None:
        token = token.strip()
        if not token:
            return None
        for kind in self._kinds:
            principal = kind.authenticate(token, now)
            if principal is not None:
                return principal if _unexpired(principal, now) else None
        return None

    def still_valid(self, principal: Principal, now: datetime) -> bool:
        if not _unexpired(principal, now):
            return False
        return any(k.makes(principal) and k.still_valid(principal, now) for k in self._kinds)


def _unexpired(principal: Principal, now: datetime) -> bool:
    return principal.expires_at is None or principal.expires_at > now


class Authority:
    """What a principal may see and do under one policy."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._owned: dict[str, set[str]] = {}
        for name, owner in policy.owners.items():
            for contact in owner.contacts:
                self._owned.setdefault(contact.lower(), set()).add(name)
        self._admins = {a.lower() for a in _admins(policy)}

    def sees_everything(self, principal: Principal) -> bool:
        return principal.is_operator or principal.name.lower() in self._admins

    def visible_identities(self, principal: Principal) -> frozenset[str] | None:
        """The identities ``principal`` may see; None for every one (and what no identity
        holds: orphans, targets)."""
        if self.sees_everything(principal):
            return None
        owners = self._owned.get(principal.name.lower(), set())
        return frozenset(n for n, i in self._policy.identities.items() if i.owner in owners)

    def may_see(self, principal: Principal, identities: Iterable[str | None]) -> bool:
        """Whether ``principal`` may see something about ``identities`` (those an account
        or finding concerns; nothing but None: about no identity, for those who see all)."""
        visible = self.visible_identities(principal)
        if visible is None:
            return True
        return any(name in visible for name in identities if name is not None)

    def may_act_on(self, principal: Principal, identities: Iterable[str | None]) -> bool:
        """Accept a finding's risk, end a lease: the same people who may see it."""
        return self.may_see(principal, identities)

    def may_operate(self, principal: Principal) -> bool:
        """Service-wide operations: trigger passes, read every target's state."""
        return principal.is_operator


def _admins(policy: Policy) -> Iterable[str]:
    """``governance.admins`` as people (groups expanded), when governance is configured."""
    governance = getattr(policy, "governance", None)
    if governance is None:
        return ()
    groups = getattr(governance, "groups", {}) or {}
    people: set[str] = set()
    for entry in getattr(governance, "admins", ()) or ():
        text = str(entry)
        if text.startswith("group:"):
            people.update(str(p) for p in groups.get(text.removeprefix("group:"), ()))
        else:
            people.add(text)
    return people
