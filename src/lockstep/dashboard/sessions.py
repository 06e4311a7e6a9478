"""Dashboard sessions: a signed cookie that holds the principal (never the token), and the
double-submit CSRF token every state-changing request must carry.

The session cookie is signed with a key derived from the vault key (so every service of a
scale-out shares it, and a restart keeps people signed in), HttpOnly, SameSite=Lax, Secure
unless the service listens on loopback, and lasts no longer than ``SESSION_MAX_S`` nor than
the token it came from. Signing out ends the session for every copy of the cookie: the
state store keeps a digest of each session signed out until it would have expired. The CSRF
token is a random value in a cookie of its own, bound to
the session at sign-in, and sent back in a form field or the ``X-CSRF-Token`` header; a
request the browser marks as cross-site (``Sec-Fetch-Site``) is refused before that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, insert, select

from lockstep.service.principals import Kind, Principal
from lockstep.store import Store
from lockstep.store.tables import ended_sessions

SESSION_COOKIE = "lockstep_session"
CSRF_COOKIE = "lockstep_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_S = 12 * 3600
_SAFE_SITES = {"same-origin", "none"}


def session_key(vault_key: bytes) -> bytes:
    """The cookies' signing key, derived from the vault key (never the key itself)."""
    raw = base64.urlsafe_b64decode(vault_key)
    return HKDF(hashes.SHA256(), 32, None, b"lockstep dashboard sessions").derive(raw)


@dataclass(frozen=True)
class Session:
    principal: Principal
    ends_at: datetime
    csrf: str


class Sessions:
    def __init__(self, key: bytes, secure: bool, store: Store) -> None:
        self._key = key
        self._store = store
        self._signer = self.signer("lockstep-dashboard-session")
        self.secure = secure

    def signer(self, purpose: str) -> URLSafeTimedSerializer:
        """A signer of this key for one purpose (what one signs, another never accepts)."""
        return URLSafeTimedSerializer(self._key, salt=purpose)

    # ------------------------------------------------------------ the session

    def open(self, response: Response, principal: Principal, now: datetime) -> Session:
        ends = now + timedelta(seconds=SESSION_MAX_S)
        if principal.expires_at is not None:
            ends = min(ends, principal.expires_at)
        session = Session(principal, ends, secrets.token_urlsafe(32))
        value = self._signer.dumps(
            {
                "n": principal.name,
                "k": str(principal.kind),
                "c": principal.credential,
                "t": _epoch(principal.expires_at),
                "e": _epoch(ends),
                "x": session.csrf,
            }
        )
        max_age = max(1, int((ends - now).total_seconds()))
        self._cookie(response, SESSION_COOKIE, value, max_age)
        self._cookie(response, CSRF_COOKIE, session.csrf, max_age)
        return session

    def read(self, request: Request, now: datetime) -> Session | None:
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=SESSION_MAX_S)
            ends = _at(data["e"])
            principal = Principal(str(data["n"]), Kind(data["k"]), str(data["c"]), _at(data["t"]))
            csrf = str(data["x"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if ends is None or ends <= now:
            return None
        ended = select(ended_sessions.c.digest).where(ended_sessions.c.digest == _digest(csrf))
        with self._store.reading() as conn:
            if conn.execute(ended).first() is not None:
                return None
        return Session(principal, ends, csrf)

    def end(self, response: Response, session: Session, now: datetime) -> None:
        """Sign out: this session is refused from now on, whoever holds a copy of it."""
        with self._store.writing(ended_sessions) as conn:
            conn.execute(delete(ended_sessions).where(ended_sessions.c.ends_at <= now))
            ended = {"digest": _digest(session.csrf), "ends_at": session.ends_at}
            conn.execute(insert(ended_sessions), ended)
        self.close(response)

    def close(self, response: Response) -> None:
        for name in (SESSION_COOKIE, CSRF_COOKIE):
            response.delete_cookie(
                name, path="/", secure=self.secure, httponly=True, samesite="lax"
            )

    # ------------------------------------------------------------ CSRF

    @staticmethod
    def csrf_for(request: Request) -> str:
        """The CSRF token the page's forms carry: the cookie's, or a new one."""
        return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)

    def keep_csrf(self, request: Request, response: Response, token: str) -> None:
        """Set the CSRF cookie to ``token`` when the request came without it."""
        if request.cookies.get(CSRF_COOKIE) != token:
            self._cookie(response, CSRF_COOKIE, token, SESSION_MAX_S)

    @staticmethod
    def check(request: Request, submitted: str | None, session: Session | None) -> None:
        """Refuse a state-changing request that is cross-site or lacks the CSRF token."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in _SAFE_SITES:
            raise HTTPException(403, "refused: a cross-site request")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        given = submitted or request.headers.get(CSRF_HEADER, "")
        if not cookie or not given or not hmac.compare_digest(cookie, given):
            raise HTTPException(403, "refused: the form's CSRF token is missing or wrong")
        if session is not None and not hmac.compare_digest(session.csrf, cookie):
            raise HTTPException(403, "refused: the CSRF token is not this session's")

    def _cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )


def _digest(session_value: str) -> str:
    return hashlib.sha256(session_value.encode()).hexdigest()


def _epoch(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def _at(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, int):
        raise TypeError("not a time")
    return datetime.fromtimestamp(value, UTC)
