"""A local OIDC issuer for tests: publishes discovery and a JWKS of keys the tests generate,
on 127.0.0.1, and signs tokens with them. It also serves the authorization-code flow with
PKCE (S256) for one registered client: ``/authorize`` signs in ``login_as`` at once (no
page of its own) and sends the browser back with a code; ``/token`` trades a code for an
ID token, checking the client's secret, the redirect URI and the code verifier, each code
once. What it was asked is kept in ``authorizations`` and ``token_requests``."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        public: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": self.alg}


def new_key(alg: str, kid: str) -> SigningKey:
    private: Any
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(kid, alg, private)


@dataclass
class Issuer:
    """An OIDC issuer on 127.0.0.1 that publishes discovery and its keys. Its tokens carry
    ``subject``, ``audience`` and ``claims`` unless a call says otherwise."""

    keys: list[SigningKey]
    subject: str = "subject"
    audience: str = "lockstep"
    claims: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    discovery_issuer: str | None = None  # what discovery claims; the real URL by default
    fetches: int = 0
    server: ThreadingHTTPServer | None = field(default=None, repr=False)
    # The authorization-code flow: the one client, and who signs in through it.
    client_id: str = "lockstep-dashboard"
    client_secret: str | None = None
    login_as: str = "alice@example.com"
    id_token_claims: dict[str, Any] = field(default_factory=dict)  # over the defaults
    refuse_with: str | None = None  # /authorize answers with this OAuth error instead
    authorizations: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def start(self) -> Issuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, object]
                if self.path.startswith("/authorize?"):
                    self.redirect(issuer.authorize(_query(self.path)))
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {
                        "issuer": issuer.discovery_issuer or issuer.url,
                        "jwks_uri": issuer.url + "/jwks.json",
                        "authorization_endpoint": issuer.url + "/authorize",
                        "token_endpoint": issuer.url + "/token",
                        "code_challenge_methods_supported": ["S256"],
                    }
                elif self.path == "/jwks.json":
                    issuer.fetches += 1
                    body = {"keys": [k.jwk() for k in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                if self.path != "/token":
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length", "0"))
                form = _query("?" + self.rfile.read(length).decode())
                status, body = issuer.trade(form, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def redirect(self, to: str) -> None:
                self.send_response(302)
                self.send_header("Location", to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def token(
        self,
        subject: str | None = None,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A signed token; a claim given as None is left out."""
        key = key or self.keys[0]
        now = int(time.time())
        body = {
            "iss": self.url,
            "sub": subject or self.subject,
            "aud": self.audience,
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_hex(8),  # each token its own: workload tokens are used once
            **self.claims,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, key.private, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})}
        )

    # ------------------------------------------------------------ the code flow

    def authorize(self, query: dict[str, str]) -> str:
        """Where ``/authorize`` sends the browser: back to the client with a code (or an
        error), as a real issuer does once its person has signed in."""
        self.authorizations.append(query)
        back = query.get("redirect_uri", "")
        answer: dict[str, str] = {"state": query.get("state", "")}
        if query.get("client_id") != self.client_id:
            answer.update(error="unauthorized_client")
        elif self.refuse_with is not None:
            answer.update(error=self.refuse_with, error_description="refused by the test")
        else:
            code = secrets.token_urlsafe(16)
            self.codes[code] = query
            answer["code"] = code
        return back + ("&" if "?" in back else "?") + urlencode(answer)

    def trade(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """``/token``: an ID token for a code, once; an OAuth error otherwise."""
        self.token_requests.append(form)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if client_id != self.client_id or (self.client_secret or None) != (secret or None):
            return 401, {"error": "invalid_client"}
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if form.get("redirect_uri") != asked.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if asked.get("code_challenge_method") != "S256" or (
            challenge.rstrip(b"=").decode() != asked.get("code_challenge")
        ):
            return 400, {"error": "invalid_grant", "error_description": "PKCE check failed"}
        claims = {"aud": self.client_id, "email": self.login_as, "nonce": asked.get("nonce")}
        id_token = self.token(self.login_as, **{**claims, **self.id_token_claims})
        return 200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                     "expires_in": 300, "id_token": id_token}  # fmt: skip


def _query(path: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
