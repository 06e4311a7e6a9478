"""The dashboard's static files and the headers of every response.

Static files are served from the package under a path that holds a digest of their bytes,
``/static/<digest>/<name>``, and cached for a year as immutable: a new release changes the
digest, so a browser never keeps a stale one. Nothing is fetched from anywhere else.

Every response carries a Content-Security-Policy that allows scripts, styles and requests
from the service's own origin only (no inline script, no ``eval``), forbids framing, and
keeps the URL out of the Referer of any link followed.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"cross-origin-opener-policy": b"same-origin",
    b"permissions-policy": b"camera=(), microphone=(), geolocation=()",
}
_IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    digest: str
    media_type: str

    @property
    def url(self) -> str:
        return f"/static/{self.digest}/{self.name}"


class Assets:
    def __init__(self) -> None:
        self._by_name: dict[str, Asset] = {}
        folder = resources.files("lockstep.dashboard") / "static"
        for item in folder.iterdir():
            if item.is_file():
                body = item.read_bytes()
                media = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
                if media.startswith("text/") or media.endswith("javascript"):
                    media += "; charset=utf-8"
                digest = hashlib.sha256(body).hexdigest()[:16]
                self._by_name[item.name] = Asset(item.name, body, digest, media)

    def url(self, name: str) -> str:
        return self._by_name[name].url

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)

        @router.get("/static/{digest}/{name}")
        def static(digest: str, name: str) -> Response:
            asset = self._by_name.get(name)
            if asset is None or asset.digest != digest:
                raise HTTPException(404, "no such file")
            return Response(asset.body, media_type=asset.media_type,
                            headers={"cache-control": _IMMUTABLE})  # fmt: skip

        return router


class SecurityHeaders:
    """ASGI middleware: the headers above on every response; a response that sets its own
    Content-Security-Policy (a report, which has its styles inline) keeps it. Pages that
    are not static files are never cached: they show one person's view of the estate."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                headers += [(k, v) for k, v in _HEADERS.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)
