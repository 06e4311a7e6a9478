"""Workload identity: a workload proves who it is with a JWT from an issuer the policy trusts.

An identity's ``workload:`` binding names the only workload that may obtain its short-lived
credentials: the token's issuer, subject (a SPIFFE ID such as
``spiffe://example.org/ns/payments/sa/api``), audience and any required claims must match it
exactly, and the token must match no other identity's binding.

An issuer's signing keys come from OIDC discovery (``{issuer}/.well-known/openid-configuration``
names the ``jwks_uri``) unless the service is told otherwise with ``--jwks ISSUER=URL`` or
``--jwks ISSUER=file:PATH`` (a JWKS document on disk, re-read on every request so that a
rotated key set takes effect at once). Plain ``http`` is accepted for loopback hosts only.

Only asymmetric algorithms are accepted (RS256, ES256, EdDSA); ``none`` and the HMAC family
never are, so a public key can never be replayed as a shared secret. A refusal names its
reason; it never contains the token.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from lockstep.engine.inert import inert
from lockstep.errors import LockstepError
from lockstep.model import Identity, Workload
from lockstep.policy.hosts import is_loopback

ALGORITHMS = ("RS256", "ES256", "EdDSA")
LEEWAY_S = 30  # clock skew tolerated on exp, nbf and iat
FETCH_TIMEOUT_S = 5.0
KEYS_CACHE_S = 300
FAILURE_BACKOFF_S = 2.0  # a failed key fetch is answered from memory this long, doubling
FAILURE_BACKOFF_MAX_S = 60.0
_REQUIRED_CLAIMS = ["exp", "iss", "sub", "aud"]
# A workload token also needs these: its lifetime is bounded and its id is never reused.
_WORKLOAD_CLAIMS = ["iat", "jti"]
_SHOWN_MAX = 200  # attacker-chosen strings are cut before they reach a message or the journal


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token says about itself before it is verified: fit for the journal, never
    proof of anything."""

    issuer: str | None = None
    subject: str | None = None
    kid: str | None = None

    def fields(self) -> dict[str, str | None]:
        """Cut to a sane length: these are whatever the bearer chose to write."""
        return {
            "iss": _shown_or_none(self.issuer),
            "sub": _shown_or_none(self.subject),
            "kid": _shown_or_none(self.kid),
        }


class WorkloadRefused(LockstepError):
    """A token that does not entitle its bearer to the identity it asked for.

    ``status`` is 401 when the token itself is not acceptable, 403 when it is but is not
    bound to the identity, 503 when the issuer's keys cannot be fetched."""

    code = "workload_refused"

    def __init__(self, status: HTTPStatus, reason: str, token: TokenInfo) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.token = token


@dataclass(frozen=True, slots=True)
class VerifiedWorkload:
    identity: str
    issuer: str
    subject: str
    jti: str = ""  # the token's id: what replay protection remembers
    expires_at: float = 0.0  # the token's exp, in seconds since the epoch

    def __str__(self) -> str:
        return self.subject


class KeySourceError(LockstepError, ValueError):
    """A ``--jwks`` option or a discovery document that cannot be used."""

    code = "key_source_invalid"


def parse_key_source(option: str) -> tuple[str, str]:
    """``ISSUER=URL`` or ``ISSUER=file:PATH`` -> (issuer, source)."""
    # OIDC issuer identifiers have no query component, so the first '=' ends the issuer.
    issuer, sep, source = option.partition("=")
    if not sep or not issuer or not source:
        raise KeySourceError(f"--jwks {option!r}: expected ISSUER=URL or ISSUER=file:PATH")
    if not source.startswith("file:"):
        _check_fetchable(source)
    return issuer, source


def _check_fetchable(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise KeySourceError(
        f"{_shown(url)!r}: keys are fetched over https only (http for loopback hosts)"
    )


@dataclass
class _IssuerKeys:
    """One issuer's key client, and what its last failed fetch said, under its own lock: a
    slow or failing issuer never holds up another's tokens."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    client: jwt.PyJWKClient | None = None
    failures: int = 0
    retry_at: float = 0.0  # monotonic; before it a failed fetch is not tried again
    failure: str = ""


class KeySets:
    """Where each issuer's signing keys come from; fetched keys are cached for a while and
    fetched again when a token names a key id not seen yet (the issuer rotated its keys).

    Each issuer has its own lock, so discovery and key fetches of one issuer (each bounded by
    ``FETCH_TIMEOUT_S``) never wait on another's. A failed fetch is remembered and answered
    at once, without fetching, until a backoff that doubles with each failure (up to
    ``FAILURE_BACKOFF_MAX_S``) has passed: a dead issuer cannot tie up the service's threads.
    """

    def __init__(
        self, sources: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sources = dict(sources or {})
        self._issuers: dict[str, _IssuerKeys] = {}
        self._lock = threading.Lock()  # guards the dictionary only, never a fetch
        self._clock = clock

    def signing_key(self, issuer: str, kid: str) -> jwt.PyJWK:
        """Raises ``LookupError`` for an unknown key id, ``ConnectionError`` when the keys
        cannot be fetched."""
        source = self._sources.get(issuer)
        if source is not None and source.startswith("file:"):
            return _from_file(Path(source.removeprefix("file:")), kid)
        entry = self._entry(issuer)
        with entry.lock:
            now = self._clock()
            if now < entry.retry_at:
                wait = entry.retry_at - now
                raise ConnectionError(f"{entry.failure} (not tried again for {wait:.0f}s)")
            try:
                key = self._fetch(entry, issuer, source, kid)
            except ConnectionError as exc:
                entry.failures += 1
                backoff = FAILURE_BACKOFF_S * 2 ** (entry.failures - 1)
                entry.retry_at = now + min(backoff, FAILURE_BACKOFF_MAX_S)
                entry.failure = str(exc)
                raise
            entry.failures, entry.retry_at = 0, 0.0
            return key

    def _entry(self, issuer: str) -> _IssuerKeys:
        with self._lock:
            return self._issuers.setdefault(issuer, _IssuerKeys())

    @staticmethod
    def _fetch(entry: _IssuerKeys, issuer: str, source: str | None, kid: str) -> jwt.PyJWK:
        if entry.client is None:
            uri = source if source is not None else _discover_jwks_uri(issuer)
            entry.client = jwt.PyJWKClient(
                uri, cache_jwk_set=True, lifespan=KEYS_CACHE_S, timeout=FETCH_TIMEOUT_S
            )
        client = entry.client
        try:
            keys = client.get_signing_keys()
        except jwt.PyJWKClientConnectionError as exc:
            raise _unfetchable(issuer, exc) from None
        except jwt.PyJWTError:
            raise ConnectionError(f"the key set of {issuer} holds no signing key") from None
        found = client.match_kid(keys, kid)
        if found is not None:
            return found
        try:
            # An unseen kid refetches the set once (PyJWT rate-limits that per client).
            return client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise _unfetchable(issuer, exc) from None
        except jwt.PyJWTError:
            raise LookupError(kid) from None


def _unfetchable(issuer: str, exc: Exception) -> ConnectionError:
    return ConnectionError(f"cannot fetch the signing keys of {issuer}: {exc}")


def _from_file(path: Path, kid: str) -> jwt.PyJWK:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        keys = jwt.PyJWKSet.from_dict(document)
    except OSError as exc:
        raise ConnectionError(f"cannot read the key set {path}: {exc.strerror}") from None
    except (ValueError, AttributeError, jwt.PyJWTError):
        raise ConnectionError(f"the key set {path} is not a JWKS document") from None
    for key in keys.keys:
        if key.key_id == kid and key.public_key_use in (None, "sig"):
            return key
    raise LookupError(kid)


def _discover_jwks_uri(issuer: str) -> str:
    try:
        _check_fetchable(issuer)
    except KeySourceError as exc:
        raise ConnectionError(f"cannot discover the keys of issuer {exc}") from None
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310
            document: Any = json.load(response)
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise ConnectionError(f"OIDC discovery at {url} failed: {exc}") from None
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        # OIDC Discovery 4.3: a document for another issuer must not be used.
        raise ConnectionError(f"the discovery document at {url} is not that of issuer {issuer}")
    uri = document.get("jwks_uri")
    if not isinstance(uri, str):
        raise ConnectionError(f"the discovery document at {url} names no jwks_uri")
    try:
        _check_fetchable(uri)
    except KeySourceError as exc:
        raise ConnectionError(f"the jwks_uri of issuer {issuer}: {exc}") from None
    return uri


class WorkloadVerifier:
    """Decides whether a token entitles its bearer to an identity's short-lived credentials."""

    def __init__(self, identities: Mapping[str, Identity], keys: KeySets) -> None:
        self._bindings = {n: i.workload for n, i in identities.items() if i.workload is not None}
        self._issuers = {w.issuer for w in self._bindings.values()}
        self._keys = keys

    def authenticate(self, token: str) -> TokenInfo:
        """Only that the token is genuine (signature, trusted issuer, expiry), whatever it is
        bound to; else ``WorkloadRefused``."""
        return verified_claims(token, self._issuers, self._keys)[1]

    def verify(self, token: str, identity: str) -> VerifiedWorkload:
        """The workload, when the token is valid and bound to ``identity`` alone; else
        ``WorkloadRefused``."""
        claims, info = verified_claims(token, self._issuers, self._keys)
        binding = self._bindings.get(identity)
        if binding is None:
            raise _forbidden(f"identity {identity!r} has no workload binding", info)
        _check_binding(binding, claims, info)
        bound = sorted(n for n, w in self._bindings.items() if _matches(w, claims))
        if bound != [identity]:
            raise _forbidden(
                f"the token matches the workload bindings of several identities "
                f"({', '.join(bound)}): bind each workload to one identity",
                info,
            )
        for claim in _WORKLOAD_CLAIMS:
            if claim not in claims:
                raise _unauthorized(f"the token has no {claim!r} claim", info)
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > binding.max_token_lifetime_s:
            raise _unauthorized(
                f"the token's lifetime (exp - iat) is {lifetime:.0f}s; identity {identity!r} "
                f"accepts at most {binding.max_token_lifetime_s}s",
                info,
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > _SHOWN_MAX:
            raise _unauthorized("the token's jti must be a string of 1 to 200 characters", info)
        return VerifiedWorkload(
            identity, binding.issuer, binding.subject, jti, float(claims["exp"])
        )


def verified_claims(
    token: str, issuers: Collection[str], keys: KeySets
) -> tuple[dict[str, Any], TokenInfo]:
    """The claims of ``token`` once its signature (by a key of its issuer, with an
    asymmetric algorithm), issuer (one of ``issuers``), expiry and required claims check out;
    else ``WorkloadRefused``. The audience is the caller's to check. Shared by workload
    tokens and people's tokens."""
    info, alg = _inspect(token)
    if info.issuer is None or info.issuer not in issuers:
        raise _unauthorized(f"issuer {_shown(info.issuer)!r} is not trusted", info)
    if info.kid is None:
        raise _unauthorized("the token names no signing key (kid)", info)
    try:
        key = keys.signing_key(info.issuer, info.kid)
    except LookupError:
        raise _unauthorized(
            f"unknown kid {_shown(info.kid)!r}: no such key in the issuer's key set", info
        ) from None
    except ConnectionError as exc:
        raise WorkloadRefused(HTTPStatus.SERVICE_UNAVAILABLE, str(exc), info) from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            issuer=info.issuer,
            leeway=LEEWAY_S,
            options={"require": _REQUIRED_CLAIMS, "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired", info) from None
    except jwt.ImmatureSignatureError:
        raise _unauthorized("the token is not valid yet (nbf or iat in the future)", info) from None
    except jwt.InvalidSignatureError:
        raise _unauthorized("the token's signature does not verify", info) from None
    except jwt.MissingRequiredClaimError as exc:
        raise _unauthorized(f"the token has no {exc.claim!r} claim", info) from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"invalid token: {_shown(str(exc))}", info) from None
    return claims, info


def matches_binding(binding: Workload, claims: Mapping[str, Any]) -> bool:
    """Whether verified ``claims`` are those of the workload ``binding`` names."""
    return _matches(binding, claims)


def audiences(claims: Mapping[str, Any]) -> list[str]:
    return _audiences(claims)


def _inspect(token: str) -> tuple[TokenInfo, str]:
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise _unauthorized("the bearer token is not a JWT", TokenInfo()) from None
    info = TokenInfo(
        issuer=_str_or_none(unverified.get("iss")),
        subject=_str_or_none(unverified.get("sub")),
        kid=_str_or_none(header.get("kid")),
    )
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise _unauthorized(
            f"algorithm {_shown(str(alg))!r} is not accepted (only {', '.join(ALGORITHMS)})",
            info,
        )
    return info, str(alg)


def _check_binding(binding: Workload, claims: Mapping[str, Any], info: TokenInfo) -> None:
    if claims["iss"] != binding.issuer:
        raise _forbidden(
            f"wrong issuer: the identity accepts tokens from {binding.issuer} only", info
        )
    audiences = _audiences(claims)
    if binding.audience not in audiences:
        raise _unauthorized(
            f"wrong audience: the token is for {_shown(', '.join(audiences))!r}, "
            f"not {binding.audience!r}",
            info,
        )
    if claims["sub"] != binding.subject:
        raise _forbidden(
            f"the token's subject {_shown(str(claims['sub']))!r} is not the workload bound "
            f"to this identity",
            info,
        )
    for name, wanted in sorted(binding.claims.items()):
        if claims.get(name) != wanted:
            raise _forbidden(f"claim {name!r} does not hold the value the binding requires", info)


def _matches(binding: Workload, claims: Mapping[str, Any]) -> bool:
    return (
        claims["iss"] == binding.issuer
        and claims["sub"] == binding.subject
        and binding.audience in _audiences(claims)
        and all(claims.get(k) == v for k, v in binding.claims.items())
    )


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims["aud"]
    values = aud if isinstance(aud, list) else [aud]
    return [v for v in values if isinstance(v, str)]


def _unauthorized(reason: str, info: TokenInfo) -> WorkloadRefused:
    return WorkloadRefused(HTTPStatus.UNAUTHORIZED, reason, info)


def _forbidden(reason: str, info: TokenInfo) -> WorkloadRefused:
    return WorkloadRefused(HTTPStatus.FORBIDDEN, reason, info)


def _shown(text: str | None) -> str:
    text = inert(text or "")
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "…"


def _shown_or_none(text: str | None) -> str | None:
    return None if text is None else _shown(text)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
