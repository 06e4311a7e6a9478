"""An issuer whose discovery or keys hang or fail never holds up another issuer: each has
its own lock, fetches time out, and a failure is answered from memory (with a growing
backoff) instead of being fetched again by every request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lockstep.leases import workload
from lockstep.leases.workload import KeySets
from support.oidc import Issuer, new_key


class Hanging:
    """An issuer that answers nothing until ``release`` is set, then 500."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests = 0
        hanging = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hanging.requests += 1
                hanging.release.wait(30)
                self.send_error(500)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    server = Hanging()
    yield server
    server.stop()


@pytest.fixture
def healthy() -> Iterator[Issuer]:
    issuer = Issuer([new_key("ES256", "good-1")]).start()
    yield issuer
    issuer.stop()


def test_a_hanging_issuer_does_not_hold_up_another(hanging: Hanging, healthy: Issuer) -> None:
    keys = KeySets()
    failed: list[Exception] = []

    def ask_hanging() -> None:
        try:
            keys.signing_key(hanging.url, "any")
        except ConnectionError as exc:
            failed.append(exc)

    stuck = threading.Thread(target=ask_hanging)
    stuck.start()
    while hanging.requests == 0:
        stuck.join(0.01)
    # The other issuer's key comes while the first fetch is still hanging.
    assert keys.signing_key(healthy.url, "good-1").key_id == "good-1"
    assert stuck.is_alive()
    hanging.release.set()
    stuck.join(30)
    assert failed and "discovery" in str(failed[0])


def test_a_failed_fetch_is_answered_from_memory_with_a_growing_backoff(hanging: Hanging) -> None:
    hanging.release.set()  # it fails at once
    now = [1000.0]
    keys = KeySets(clock=lambda: now[0])
    with pytest.raises(ConnectionError):
        keys.signing_key(hanging.url, "any")
    assert hanging.requests == 1
    for _ in range(5):
        with pytest.raises(ConnectionError, match="not tried again"):
            keys.signing_key(hanging.url, "any")
    assert hanging.requests == 1  # nothing fetched while backing off
    now[0] += workload.FAILURE_BACKOFF_S + 0.1
    with pytest.raises(ConnectionError):
        keys.signing_key(hanging.url, "any")
    assert hanging.requests == 2
    now[0] += workload.FAILURE_BACKOFF_S + 0.1  # the backoff doubled: still waiting
    with pytest.raises(ConnectionError, match="not tried again"):
        keys.signing_key(hanging.url, "any")
    assert hanging.requests == 2


def test_fetches_time_out(hanging: Hanging, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workload, "FETCH_TIMEOUT_S", 0.2)
    with pytest.raises(ConnectionError, match=r"timed out|failed"):
        KeySets().signing_key(hanging.url, "any")
