"""A local HTTP server that receives webhook notifications, for the tests: it records each
request (headers and JSON body) and answers 500 to the first ``fail_first`` of them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: str


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

    def bodies(self, event: str) -> list[dict[str, Any]]:
        return [r.body for r, code in zip(self.received, self.answered, strict=True)
                if code == 200 and r.body.get("event") == event]  # fmt: skip


@contextmanager
def receiver(fail_first: int = 0) -> Iterator[Receiver]:
    lock = threading.Lock()
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            got = Received(self.path, dict(self.headers.items()), json.loads(raw), raw)
            with lock:
                me = state["receiver"]
                me.received.append(got)
                code = 500 if len(me.received) <= me.fail_first else 200
                me.answered.append(code)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    state["receiver"] = Receiver(f"http://{host!s}:{port}/hooks/lockstep", fail_first)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
