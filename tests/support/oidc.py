"""A local OIDC issuer for tests: publishes discovery and a JWKS of keys the tests generate,
on 127.0.0.1, and signs tokens with them."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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

    def start(self) -> Issuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, object]
                if self.path == "/.well-known/openid-configuration":
                    body = {
                        "issuer": issuer.discovery_issuer or issuer.url,
                        "jwks_uri": issuer.url + "/jwks.json",
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
