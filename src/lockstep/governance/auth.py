"""Who is calling: the operator, or a person the policy names.

Every governance call carries ``Authorization: Bearer TOKEN``, one of:

- the operator's token (``LOCKSTEP_API_TOKEN``): the operator reads everything and acts for
  nobody, so it never files, approves or denies a request;
- a personal token (``lsp_…``, made by ``lockstep token create``);
- with ``governance.people``, a JWT from that OIDC issuer, checked by the same verifier as
  workload tokens (signature by the issuer's keys, ``iss``, ``exp``, then ``aud`` here) and
  naming the person in the configured claim. A token that a workload binding accepts is a
  workload's, and a workload never acts as a person, whatever its claims say.

A person the policy does not name (any more) is refused, whatever the token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from lockstep.errors import LockstepError
from lockstep.governance.people import named_people
from lockstep.governance.tokens import PersonTokens, TokenRefused, looks_like_token
from lockstep.leases.workload import (
    KeySets,
    WorkloadRefused,
    audiences,
    matches_binding,
    verified_claims,
)
from lockstep.model import Policy
from lockstep.policy.governance import normal_person
from lockstep.secret import Secret

_BEARER = "bearer "
OPERATOR = "operator"
_SHOWN_MAX = 200  # a claim is whatever the issuer put there


@dataclass(frozen=True)
class Principal:
    person: str | None  # None: the operator, who acts for nobody
    via: str  # how they signed in, for the journal: "operator", "token ID", "oidc ISSUER"

    @property
    def operator(self) -> bool:
        return self.person is None

    def __str__(self) -> str:
        return self.person or OPERATOR


class AuthRefused(LockstepError):
    """401: no acceptable token; 403: a token, but not of anybody allowed; 503: the
    issuer's keys cannot be fetched. The message never holds the token."""

    code = "unauthenticated"

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _unauthorized(reason: str) -> AuthRefused:
    return AuthRefused(HTTPStatus.UNAUTHORIZED, reason)


def _forbidden(reason: str) -> AuthRefused:
    return AuthRefused(HTTPStatus.FORBIDDEN, reason)


class Authenticator:
    def __init__(
        self, policy: Policy, tokens: PersonTokens, operator: Secret | None, keys: KeySets
    ) -> None:
        self._policy = policy
        self._tokens = tokens
        self._operator = operator
        self._keys = keys
        self._people = named_people(policy)

    def authenticate(self, authorization: str | None) -> Principal:
        if authorization is None or not authorization.lower().startswith(_BEARER):
            raise _unauthorized("a bearer token is required (LOCKSTEP_TOKEN)")
        token = authorization[len(_BEARER) :].strip()
        if not token:
            raise _unauthorized("a bearer token is required (LOCKSTEP_TOKEN)")
        if self._operator is not None and hmac.compare_digest(
            token.encode(), self._operator.reveal().encode()
        ):
            return Principal(None, OPERATOR)
        if looks_like_token(token):
            try:
                record = self._tokens.authenticate(token)
            except TokenRefused as exc:
                raise _unauthorized(str(exc)) from None
            return Principal(self._named(record.person), f"token {record.id}")
        return self._from_issuer(token)[0]

    def id_token(self, token: str, client_id: str) -> tuple[Principal, dict[str, Any]]:
        """The person an ID token from the people's issuer names, issued to the dashboard's
        client ``client_id`` (its audience), and its claims (the caller checks the nonce)."""
        return self._from_issuer(token, client_id)

    def _from_issuer(
        self, token: str, audience: str | None = None
    ) -> tuple[Principal, dict[str, Any]]:
        people = self._policy.governance.people
        if people is None:
            raise _unauthorized("not a personal token, and governance.people names no OIDC issuer")
        try:
            claims, _ = verified_claims(token, {people.issuer}, self._keys)
        except WorkloadRefused as exc:
            raise AuthRefused(exc.status, exc.reason) from None
        audience = audience or people.audience
        if audience not in audiences(claims):
            raise _unauthorized(f"wrong audience: the token is not for {audience!r}")
        for identity in self._policy.identities.values():
            if identity.workload is not None and matches_binding(identity.workload, claims):
                raise _forbidden(
                    f"the token is workload {identity.name!r}'s: a workload never acts as a person"
                )
        value = claims.get(people.claim)
        if not isinstance(value, str) or not value:
            raise _unauthorized(f"the token has no {people.claim!r} claim naming a person")
        return Principal(self._named(value), f"oidc {people.issuer}"), claims

    def _named(self, person: str) -> str:
        person = normal_person(person)
        if person not in self._people:
            shown = person if len(person) <= _SHOWN_MAX else person[:_SHOWN_MAX] + "…"
            raise _forbidden(f"{shown} is not a person the policy names")
        return person
