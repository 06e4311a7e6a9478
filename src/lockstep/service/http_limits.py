"""Limits every request to the service meets before any route sees it.

- A body larger than ``max_body_bytes`` (default 64 KiB) is refused with 413, whether its
  ``Content-Length`` says so or it streams past the limit: nothing lockstep accepts is near
  that size, and an unbounded body would be read into memory.
- A client whose requests failed authentication too often (401: a wrong bearer token, a
  failed dashboard sign-in, by token or OIDC) is answered 429 for a while, without the
  request reaching authentication: token guessing and brute force cost the attacker time,
  and cost the service nothing (no signature check, no key fetch, no journal). The API gets
  its JSON error, the dashboard a page saying when to try again. Clients are told apart by
  their address; at most ``max_clients`` are remembered.
  ``/healthz`` and ``/metrics`` are answered all the same.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 64 * 1024
# Open by design and answered whatever a client did before: a load balancer's health check
# shares its address with the traffic it fronts.
UNAUTHENTICATED_PROBES = frozenset({"/healthz", "/metrics"})
_API = "/v1/"
_LOCKED_OUT = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Too many failed '
    "sign-ins · lockstep</title></head><body><main><h1>Too many failed sign-ins</h1><p "
    'role="alert">Too many sign-ins failed from this address: nothing more is checked from it '
    'for now. Try again in {seconds} seconds.</p><p><a href="/signin">Sign in</a></p></main>'
    "</body></html>"
)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    failures_allowed: int = 20  # authentication failures per client ...
    failure_window_s: float = 60.0  # ... within this window, before it is refused
    max_clients: int = 10_000


class FailureCounter:
    """Authentication failures per client in a sliding window. Safe to share between threads."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        now = self._clock()
        with self._lock:
            recent = self._recent(client, now)
            if len(recent) < self._limits.failures_allowed:
                return None
            return max(recent[0] + self._limits.failure_window_s - now, 1.0)

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            recent = self._recent(client, now)
            recent.append(now)
            self._failures[client] = recent
            self._failures.move_to_end(client)
            while len(self._failures) > self._limits.max_clients:
                self._failures.popitem(last=False)

    def _recent(self, client: str, now: float) -> list[float]:
        horizon = now - self._limits.failure_window_s
        return [t for t in self._failures.get(client, ()) if t > horizon]


class RequestLimits:
    """ASGI middleware applying ``Limits`` to every HTTP request.

    The body is read here, at most ``max_body_bytes`` of it, before the application sees the
    request, then handed on as one message: a body over the limit is answered 413 without
    the application (nor its error handlers) ever starting on it."""

    def __init__(self, app: ASGIApp, limits: Limits | None = None) -> None:
        self._app = app
        self._limits = limits or Limits()
        self.failures = FailureCounter(self._limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "?"
        wait = self.failures.retry_after(client)
        path = str(scope.get("path", ""))
        if wait is not None and path not in UNAUTHENTICATED_PROBES:
            retry = {"retry-after": str(int(wait) + 1)}
            if path.startswith(_API):
                message = "too many failed authentications from this client; try again later"
                await _answer(send, 429, message, retry)
            else:  # the dashboard's: a page a person reads (failed sign-ins count here)
                await _page(send, 429, _LOCKED_OUT.format(seconds=int(wait) + 1), retry)
            return
        if self._declared_size(scope) > self._limits.max_body_bytes:
            await self._too_large(send)
            return
        body = await self._read_body(receive)
        if body is None:
            await self._too_large(send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect comes

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.failures.failed(client)
            await send(message)

        await self._app(scope, replay, watched_send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client went away: the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limits.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _declared_size(self, scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return self._limits.max_body_bytes + 1  # unreadable: refused
        return 0

    async def _too_large(self, send: Send) -> None:
        await _answer(
            send, 413, f"request body larger than {self._limits.max_body_bytes} bytes", {}
        )


async def _page(send: Send, status: int, html: str, headers: dict[str, str]) -> None:
    body = html.encode()
    raw = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
