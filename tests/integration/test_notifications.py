"""Notifications reach people without polling: each queued event is POSTed as JSON to the
webhook, retried with backoff until it is accepted, and never carries a secret or a token.
Tested against a local HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockstep.governance.notify import MAX_ATTEMPTS, Notifier, backoff, enqueue, shown
from lockstep.store import Store
from lockstep.store.tables import notifications
from support.webhook import receiver


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/state.db") as opened:
        yield opened


def queue(store: Store, clock: Clock, subject: str = "R-1") -> None:
    with store.writing(notifications) as conn:
        body = {"event": "review_opened", "review": {"id": subject, "reviewers": ["a@x.io"]}}
        enqueue(conn, "review_opened", subject, body, clock())


def test_a_notification_is_posted_as_json_without_any_token(store: Store) -> None:
    clock = Clock()
    queue(store, clock)
    with receiver() as hook:
        [attempt] = Notifier(store, clock).send_due(hook.url)
    assert attempt.ok and attempt.attempts == 1
    [got] = hook.received
    assert got.path == "/hooks/lockstep"
    assert got.body == {"event": "review_opened", "review": {"id": "R-1", "reviewers": ["a@x.io"]}}
    assert got.headers["Content-Type"] == "application/json"
    assert "Authorization" not in got.headers
    assert Notifier(store, clock).send_due(hook.url) == []  # sent once


def test_a_failed_delivery_is_retried_with_backoff(store: Store) -> None:
    clock = Clock()
    queue(store, clock)
    notifier = Notifier(store, clock)
    with receiver(fail_first=2) as hook:
        [first] = notifier.send_due(hook.url)
        assert not first.ok and first.error == "HTTP 500"
        assert notifier.send_due(hook.url) == []  # not due yet
        assert notifier.due() == clock.now + timedelta(seconds=backoff(1))
        clock.now += timedelta(seconds=backoff(1))
        [second] = notifier.send_due(hook.url)
        assert not second.ok and second.attempts == 2
        clock.now += timedelta(seconds=backoff(1))
        assert notifier.send_due(hook.url) == []  # the backoff doubled
        clock.now += timedelta(seconds=backoff(2))
        [third] = notifier.send_due(hook.url)
    assert third.ok and third.attempts == 3
    assert [r.body for r in hook.received] == [hook.received[0].body] * 3
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_an_unreachable_webhook_is_retried_then_given_up(store: Store) -> None:
    clock = Clock()
    queue(store, clock)
    notifier = Notifier(store, clock)
    with receiver() as hook:
        gone = hook.url
    for n in range(1, MAX_ATTEMPTS + 1):
        [attempt] = notifier.send_due(gone)
        assert not attempt.ok and attempt.attempts == n
        clock.now += timedelta(seconds=backoff(n))
    assert attempt.given_up
    clock.now += timedelta(days=365)
    assert notifier.send_due(gone) == []


def test_a_notification_holding_a_secret_is_refused(store: Store) -> None:
    from lockstep.secret import generate_password, register

    secret = generate_password()
    register(secret.reveal())
    with store.writing(notifications) as conn, pytest.raises(ValueError, match="holds a secret"):
        enqueue(conn, "review_opened", "R-2", {"detail": secret.reveal()}, Clock()())


def test_logs_show_the_webhook_by_its_host_only() -> None:
    assert shown("https://hooks.example.com:8443/services/T0/B0/XXSECRET?x=1") == (
        "https://hooks.example.com:8443"
    )
