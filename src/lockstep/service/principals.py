"""Who is calling, and what they may see and do: the one code path the API and the dashboard
share.

A caller presents a token: a bearer header to the API, the "Token" field of the dashboard's
sign-in. ``Authenticators`` checks it with governance's authenticator
(``lockstep.governance.auth``: the operator's ``LOCKSTEP_API_TOKEN``, personal tokens, and
the JWTs of ``governance.people``) under the policy in force, and answers with a
``Principal``. A dashboard session keeps the principal, never the token, and asks
``still_valid`` on every request, so that a revoked or expired personal token, a replaced
operator token or a person the policy no longer names ends its sessions too.

``Authority`` answers what a principal may see and do. The operator and the admins see
everything; a person sees the identities whose active owner lists them as a contact, or
that they sponsor, and may act on those.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from http import HTTPStatus
from typing import Any

import jwt
from sqlalchemy import Row, select

from lockstep.engine.approvals import NotAllowed, check_may_deny, may_approve
from lockstep.governance.auth import Authenticator, AuthRefused
from lockstep.governance.auth import Principal as Actor
from lockstep.governance.people import admins, may_request, named_people, owner_contacts
from lockstep.governance.records import AccessRequest, RequestStatus
from lockstep.governance.tokens import PersonTokens
from lockstep.journal import Journal
from lockstep.leases.workload import KeySets, audiences
from lockstep.model import Policy
from lockstep.policy.governance import normal_person
from lockstep.secret import Secret
from lockstep.store import Store
from lockstep.store.tables import person_tokens

OPERATOR = "operator"
_REQUIRED = "a bearer token is required (LOCKSTEP_TOKEN)"
_TOKEN_VIA = "token "  # noqa: S105 - how governance says a personal token signed in


class Kind(StrEnum):
    OPERATOR = "operator"
    PERSON = "person"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``credential`` names what authenticated them (``token ID``,
    ``oidc ISSUER``, or a keyed fingerprint of the operator's token): never the token."""

    name: str
    kind: Kind
    credential: str
    expires_at: datetime | None  # the token's own expiry; None: until it is changed

    @property
    def is_operator(self) -> bool:
        return self.kind is Kind.OPERATOR

    @property
    def actor(self) -> Actor:
        """Who governance's decisions record: the person and how they signed in; the
        operator acts for nobody."""
        if self.is_operator:
            return Actor(None, OPERATOR)
        return Actor(self.name, self.credential)


class Authenticators:
    """Every kind of token the service accepts, checked under the policy in force: by the
    API's routes (``check``, whose refusals say why) and the dashboard's sign-in alike."""

    def __init__(
        self,
        policy: Callable[[], Policy],
        operator_token: Secret | None,
        store: Store,
        key_sources: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._policy = policy
        self._operator = operator_token
        self._store = store
        self._sources = dict(key_sources or {})
        self._tokens = PersonTokens(store, Journal(store), clock)
        self.clock = clock
        self._keys: dict[tuple[str, str | None], KeySets] = {}
        self._checker: tuple[Policy, Authenticator, frozenset[str]] | None = None
        self._lock = threading.Lock()
        self._fingerprint = (
            None
            if operator_token is None
            else "operator:"
            + hmac.new(
                b"lockstep operator token", operator_token.reveal().encode(), hashlib.sha256
            ).hexdigest()[:16]
        )

    @property
    def operator_configured(self) -> bool:
        return self._operator is not None

    @property
    def configured(self) -> bool:
        """Whether any token at all can sign in: the operator's, a personal token, or the
        people's issuer's."""
        if self._operator is not None or self._policy().governance.people is not None:
            return True
        with self._store.reading() as conn:
            return conn.execute(select(person_tokens.c.id).limit(1)).first() is not None

    def _current(self) -> tuple[Authenticator, frozenset[str]]:
        """Governance's authenticator and the people named, made once per policy loaded
        (naming the people walks every identity)."""
        policy = self._policy()
        with self._lock:
            cached = self._checker
            if cached is None or cached[0] is not policy:
                people = policy.governance.people
                sources = dict(self._sources)
                if people is not None and people.jwks is not None:
                    sources[people.issuer] = people.jwks
                issuer = (people.issuer, people.jwks) if people is not None else ("", None)
                # One cache of the issuer's keys across policy edits that keep its source.
                keys = self._keys.setdefault(issuer, KeySets(sources))
                checker = Authenticator(policy, self._tokens, self._operator, keys)
                cached = (policy, checker, named_people(policy))
                self._checker = cached
        return cached[1], cached[2]

    def check(self, token: str, now: datetime) -> Principal:
        """The principal ``token`` proves; ``AuthRefused`` (401, 403 or 503, with why and
        never the token) otherwise."""
        token = token.strip()
        if not token:
            raise AuthRefused(HTTPStatus.UNAUTHORIZED, _REQUIRED)
        found = self._current()[0].authenticate(f"Bearer {token}")
        if found.person is None:
            assert self._fingerprint is not None
            return Principal(OPERATOR, Kind.OPERATOR, self._fingerprint, None)
        expires = self._expiry(found.via, token)
        if expires is not None and expires <= now:
            raise AuthRefused(HTTPStatus.UNAUTHORIZED, "the token has expired")
        return Principal(found.person, Kind.PERSON, found.via, expires)

    def check_id_token(self, id_token: str, nonce: str) -> Principal:
        """The person an OIDC sign-in's ID token names (issued by the people's issuer to the
        dashboard's client, for this sign-in's ``nonce``), until the token expires;
        ``AuthRefused`` otherwise."""
        people = self._policy().governance.people
        if people is None or people.client is None:
            raise AuthRefused(HTTPStatus.UNAUTHORIZED, "governance.people names no OIDC client")
        client_id = people.client.client_id
        found, claims = self._current()[0].id_token(id_token, client_id)
        if len(audiences(claims)) > 1 and claims.get("azp") != client_id:
            raise AuthRefused(HTTPStatus.UNAUTHORIZED, "the ID token was issued to another client")
        given = claims.get("nonce")
        if not isinstance(given, str) or not hmac.compare_digest(given, nonce):
            raise AuthRefused(HTTPStatus.UNAUTHORIZED, "the ID token is not this sign-in's")
        assert found.person is not None  # an issuer's token always names a person
        expires = datetime.fromtimestamp(float(claims["exp"]), UTC)
        return Principal(found.person, Kind.PERSON, found.via, expires)

    def authenticate(self, token: str, now: datetime) -> Principal | None:
        """The principal ``token`` proves; None when it proves nobody allowed."""
        try:
            return self.check(token, now)
        except AuthRefused:
            return None

    def _expiry(self, via: str, token: str) -> datetime | None:
        if via.startswith(_TOKEN_VIA):
            row = self._token_row(via.removeprefix(_TOKEN_VIA))
            return None if row is None else row.expires_at
        # A JWT the governance authenticator verified just now: its exp is to be trusted.
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        return datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None

    def _token_row(self, token_id: str) -> Row[Any] | None:
        with self._store.reading() as conn:
            return conn.execute(
                select(person_tokens.c.expires_at, person_tokens.c.revoked_at).where(
                    person_tokens.c.id == token_id
                )
            ).one_or_none()

    def still_valid(self, principal: Principal, now: datetime) -> bool:
        if principal.expires_at is not None and principal.expires_at <= now:
            return False
        if principal.is_operator:
            return self._fingerprint is not None and hmac.compare_digest(
                principal.credential, self._fingerprint
            )
        if normal_person(principal.name) not in self._current()[1]:
            return False
        if principal.credential.startswith(_TOKEN_VIA):
            row = self._token_row(principal.credential.removeprefix(_TOKEN_VIA))
            return row is not None and row.revoked_at is None
        return True


class Authority:
    """What a principal may see and do under one policy."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._admins = admins(policy)
        self._visible: dict[str, frozenset[str]] = {}

    def sees_everything(self, principal: Principal) -> bool:
        return principal.is_operator or normal_person(principal.name) in self._admins

    def visible_identities(self, principal: Principal) -> frozenset[str] | None:
        """The identities ``principal`` may see; None for every one (and what no identity
        holds: orphans, targets)."""
        if self.sees_everything(principal):
            return None
        person = normal_person(principal.name)
        visible = self._visible.get(person)
        if visible is None:
            visible = frozenset(
                name
                for name, identity in self._policy.identities.items()
                if person in owner_contacts(self._policy, identity) or identity.sponsor == person
            )
            self._visible[person] = visible
        return visible

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

    # ------------------------------------------------------------ requests and grants

    def may_see_request(self, principal: Principal, request: AccessRequest) -> bool:
        """Those who see its identity, its requester, and whoever its rules (as snapshotted
        when it was filed) let approve it."""
        if self.may_see(principal, [request.identity]):
            return True
        person = normal_person(principal.name)
        rules = request.rules
        return (
            person == request.requester
            or person in rules.admins
            or any(person in stage.people for stage in rules.stages)
        )

    def may_approve(self, principal: Principal, request: AccessRequest) -> bool:
        """Whether an approval by ``principal`` would count now (``Requests.approve``
        decides it again, with the separation of duties, when it is given)."""
        if principal.is_operator or request.status is not RequestStatus.PENDING:
            return False
        person = normal_person(principal.name)
        return may_approve(request.rules, request.requester, request.given, person)

    def may_deny(self, principal: Principal, request: AccessRequest) -> bool:
        if principal.is_operator or request.status is not RequestStatus.PENDING:
            return False
        try:
            check_may_deny(
                request.rules, request.requester, request.given, normal_person(principal.name)
            )
        except NotAllowed:
            return False
        return True

    def may_request(self, principal: Principal, identity: str) -> bool:
        """Whether ``principal`` may ask access for ``identity``: its owner's contacts, its
        sponsor and admins (never the operator, who acts for nobody)."""
        found = self._policy.identities.get(identity)
        if principal.is_operator or found is None:
            return False
        return may_request(self._policy, principal.name, found)
