"""Signing people in through the people's OIDC issuer: the authorization-code flow with PKCE
(RFC 7636, S256), by authlib, when ``governance.people`` names the dashboard's client.

``start`` sends the browser to the issuer with a fresh state, nonce and code verifier, kept
in a signed, HttpOnly cookie of their own that lasts ``FLOW_MAX_S``; ``finish`` takes that
cookie back on the callback, checks the state, trades the code and the verifier for the
tokens at the issuer's token endpoint, and hands the ID token on to be verified. The
redirect URI is the policy's, never built from the request's Host. The endpoints come from
the issuer's discovery document, which must name that issuer.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from itsdangerous import BadSignature

from lockstep.model import PeopleIssuer, SignInClient
from lockstep.policy.hosts import is_loopback

from .sessions import Sessions

FLOW_COOKIE = "lockstep_oidc"
FLOW_MAX_S = 600  # from leaving for the issuer to coming back
DISCOVERY_TTL_S = 3600.0
TIMEOUT_S = 10.0
_SHOWN_MAX = 200  # what the issuer says is shown, never more


class SignInFailed(Exception):
    """Why an OIDC sign-in did not sign anybody in: one line, no token in it."""


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    fetched_at: float


@dataclass(frozen=True)
class Returned:
    """What a callback brought back: the ID token to verify, with this sign-in's nonce,
    and where the person was going."""

    id_token: str
    nonce: str
    next: str


class OidcSignIn:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self._signer = sessions.signer("lockstep-dashboard-oidc")
        self._endpoints: dict[str, Endpoints] = {}
        self._lock = threading.Lock()

    def start(self, people: PeopleIssuer, client: SignInClient, next_path: str) -> Response:
        """The redirect to the issuer's authorization endpoint, with the flow's cookie."""
        endpoints = self.endpoints(people.issuer)
        verifier, state, nonce = generate_token(64), generate_token(32), generate_token(32)
        with _session(client) as session:
            uri, _ = session.create_authorization_url(
                endpoints.authorization, state=state, nonce=nonce, code_verifier=verifier
            )
        flow = {"s": state, "n": nonce, "v": verifier, "x": next_path, "i": people.issuer}
        response = RedirectResponse(uri, status_code=303)
        response.set_cookie(
            FLOW_COOKIE,
            self._signer.dumps(flow),
            max_age=FLOW_MAX_S,
            path="/",
            secure=self._sessions.secure,
            httponly=True,
            samesite="lax",  # sent on the issuer's top-level redirect back
        )
        return response

    def finish(
        self, request: Request, response: Response, people: PeopleIssuer, client: SignInClient
    ) -> Returned:
        """The callback's ID token, once its state is this browser's flow and the code is
        traded; ``SignInFailed`` otherwise. The flow's cookie is spent either way."""
        response.delete_cookie(FLOW_COOKIE, path="/", secure=self._sessions.secure,
                               httponly=True, samesite="lax")  # fmt: skip
        flow = self._flow(request)
        params = request.query_params
        if flow is None:
            raise SignInFailed("this sign-in expired or was started elsewhere: start again")
        if flow.get("i") != people.issuer:
            raise SignInFailed("the policy's issuer changed during this sign-in: start again")
        if not hmac.compare_digest(str(params.get("state", "")), str(flow["s"])):
            raise SignInFailed("the answer is not this sign-in's (state differs): start again")
        if "error" in params:
            said = " ".join(filter(None, (params.get("error"), params.get("error_description"))))
            raise SignInFailed(f"the identity provider refused: {said[:_SHOWN_MAX]}")
        code = params.get("code")
        if not code:
            raise SignInFailed("the identity provider sent no authorization code")
        tokens = self._trade(people.issuer, client, code, str(flow["v"]))
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInFailed("the identity provider sent no ID token (is openid a scope?)")
        return Returned(id_token, str(flow["n"]), str(flow["x"]))

    def _flow(self, request: Request) -> Mapping[str, Any] | None:
        value = request.cookies.get(FLOW_COOKIE)
        if not value:
            return None
        try:
            flow = self._signer.loads(value, max_age=FLOW_MAX_S)
        except BadSignature:
            return None
        needed = ("s", "n", "v", "x", "i")
        return flow if isinstance(flow, dict) and all(k in flow for k in needed) else None

    def _trade(
        self, issuer: str, client: SignInClient, code: str, verifier: str
    ) -> Mapping[str, Any]:
        endpoint = self.endpoints(issuer).token
        try:
            with _session(client) as session:
                token: Mapping[str, Any] = session.fetch_token(
                    endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=verifier,
                )
        except OAuthError as exc:
            said = " ".join(filter(None, (exc.error, exc.description)))
            raise SignInFailed(f"the token endpoint refused: {said[:_SHOWN_MAX]}") from None
        except (requests.RequestException, ValueError) as exc:
            raise SignInFailed(f"the token endpoint failed: {type(exc).__name__}") from None
        return token

    # ------------------------------------------------------------ discovery

    def endpoints(self, issuer: str) -> Endpoints:
        """The issuer's authorization and token endpoints, from its discovery document
        (kept for ``DISCOVERY_TTL_S``); ``SignInFailed`` when they cannot be had."""
        with self._lock:
            known = self._endpoints.get(issuer)
        if known is not None and time.monotonic() - known.fetched_at < DISCOVERY_TTL_S:
            return known
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            answer = requests.get(url, timeout=TIMEOUT_S)
            answer.raise_for_status()
            document = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise SignInFailed(f"OIDC discovery at {url} failed: {type(exc).__name__}") from None
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            # OIDC Discovery 4.3: a document for another issuer must not be used.
            raise SignInFailed(f"the discovery document at {url} is not that of {issuer}")
        found = []
        for key in ("authorization_endpoint", "token_endpoint"):
            value = document.get(key)
            if not isinstance(value, str) or not _fetchable(value):
                raise SignInFailed(f"the discovery document at {url} has no usable {key}")
            found.append(value)
        known = Endpoints(found[0], found[1], time.monotonic())
        with self._lock:
            self._endpoints[issuer] = known
        return known


def _session(client: SignInClient) -> OAuth2Session:
    secret = client.client_secret
    return OAuth2Session(
        client.client_id,
        None if secret is None else secret.reveal(),
        token_endpoint_auth_method="none" if secret is None else "client_secret_basic",
        scope=" ".join(client.scopes),
        redirect_uri=client.redirect_uri,
        code_challenge_method="S256",
        default_timeout=TIMEOUT_S,
    )


def _fetchable(url: str) -> bool:
    """https, or http to loopback (a local issuer)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return bool(host) and (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))
    )
