"""Notifications to people, without polling: each opened review and each pending approval is
POSTed as JSON to ``governance.notify.webhook``.

A notification is queued in the state store in the transaction that made the event, so it is
never lost to a crash; the service's notifier sends what is due and retries a failure with
exponential backoff (doubling from ``FIRST_RETRY_S`` up to ``MAX_RETRY_S``, given up after
``MAX_ATTEMPTS``, each attempt logged). The body is built from the event's public fields:
never a secret, a credential or a token, and the request carries no Authorization header.
The webhook URL itself may hold a token (chat services put one in the path): it is never
logged or journaled beyond its scheme and host.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, insert, select, update

from lockstep.secret import holds_secret, redact
from lockstep.store import Store
from lockstep.store.tables import notifications

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 300.0
MAX_ATTEMPTS = 12
TIMEOUT_S = 5.0
BATCH = 50
GIVEN_UP_DAYS = 36500  # a notification given up on stays, as evidence, and is never retried


def enqueue(
    conn: Connection, kind: str, subject: str, body: Mapping[str, Any], now: datetime
) -> None:
    """Queue one notification in the caller's transaction."""
    text = json.dumps(body, sort_keys=True, default=str)
    if holds_secret(text):
        raise ValueError(f"refusing to queue a {kind} notification that holds a secret")
    conn.execute(
        insert(notifications).values(
            kind=kind, subject=subject, body=text, created_at=now, attempts=0, next_at=now
        )
    )


def shown(url: str) -> str:
    """A webhook as logs may show it: scheme and host, never the path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def backoff(attempts: int) -> float:
    return min(FIRST_RETRY_S * 2.0 ** max(attempts - 1, 0), MAX_RETRY_S)


@dataclass(frozen=True)
class Attempt:
    id: int
    kind: str
    subject: str
    ok: bool
    attempts: int
    error: str | None
    given_up: bool = False


Post = Callable[[str, bytes], None]  # raises OSError (urllib's errors) on failure


def post_json(url: str, body: bytes) -> None:
    request = urllib.request.Request(  # noqa: S310 (the policy names the webhook)
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "lockstep"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
        response.read()


class Notifier:
    """Sends the queued notifications that are due to the webhook."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        post: Post = post_json,
    ) -> None:
        self._store = store
        self._clock = clock
        self._post = post

    def due(self) -> datetime | None:
        """When the next queued notification is due, or None when none waits."""
        query = select(notifications.c.next_at).where(notifications.c.sent_at.is_(None))
        with self._store.reading() as conn:
            times = [t for t in conn.execute(query.order_by(notifications.c.next_at).limit(1))]
        return times[0][0] if times else None

    def send_due(self, webhook: str | None) -> list[Attempt]:
        """Try every notification due now; returns the attempts made."""
        now = self._clock()
        query = (
            select(notifications)
            .where(notifications.c.sent_at.is_(None), notifications.c.next_at <= now)
            .order_by(notifications.c.id)
            .limit(BATCH)
        )
        with self._store.reading() as conn:
            rows = list(conn.execute(query))
        attempts = []
        for row in rows:
            if webhook is None:
                break  # kept until a policy names a webhook again
            attempts.append(self._send(webhook, row))
        return attempts

    def _send(self, webhook: str, row: Any) -> Attempt:
        tries = row.attempts + 1
        try:
            self._post(webhook, row.body.encode())
        except (OSError, urllib.error.URLError, ValueError) as exc:
            error = redact(_reason(exc))
            given_up = tries >= MAX_ATTEMPTS
            wait = timedelta(days=GIVEN_UP_DAYS) if given_up else timedelta(seconds=backoff(tries))
            self._write(row.id, attempts=tries, last_error=error, next_at=self._clock() + wait)
            return Attempt(row.id, row.kind, row.subject, False, tries, error, given_up)
        self._write(row.id, attempts=tries, sent_at=self._clock(), last_error=None)
        return Attempt(row.id, row.kind, row.subject, True, tries, None)

    def _write(self, notification_id: int, **values: Any) -> None:
        with self._store.writing(notifications) as conn:
            conn.execute(
                update(notifications).where(notifications.c.id == notification_id).values(**values)
            )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__
