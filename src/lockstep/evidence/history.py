"""What the journal says about some accounts: every action on them (intent, result, with
what was read back and probed) and every whole-state verification. Found with a text search
of the stored payloads for the account names, then read exactly."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, or_, select

from lockstep.store import Store
from lockstep.store.tables import journal

Key = tuple[str, str]
ACTION_KINDS = ("result", "delivery")
_ISSUING = ("create_account", "restore_account")


@dataclass(frozen=True)
class Event:
    seq: int
    hash: str
    at: str
    kind: str
    payload: dict[str, Any] = field(repr=False)

    @property
    def verified(self) -> bool:
        return self.payload.get("status") == "verified"

    def brief(self, how: str) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "at": self.at, "kind": self.kind, "how": how}


@dataclass
class History:
    actions: dict[Key, list[Event]]  # results and deliveries per account, oldest first
    verifications: list[Event]  # every `lockstep verify`, oldest first

    def enforced(self, key: Key, entitlement: str | None = None) -> dict[str, Any] | None:
        """The last verified action that made it so: a grant of ``entitlement``, or the
        creation or restoring of the account."""
        for event in reversed(self.actions.get(key, [])):
            op = event.payload.get("op")
            if not event.verified or event.kind != "result":
                continue
            if entitlement is None and op in _ISSUING:
                return event.brief(f"{op}: {_checks(event)}")
            if (
                entitlement is not None
                and op == "grant"
                and event.payload.get("entitlement") == (entitlement)
            ):
                return event.brief(f"grant, read back: {_checks(event)}")
        return None

    def last_verified(self, key: Key, entitlement: str | None = None) -> dict[str, Any] | None:
        """The last journal entry that proved it: a verified action on the account (or on
        the entitlement), or a `lockstep verify` that read the target and found nothing
        wrong with it."""
        best: dict[str, Any] | None = None
        for event in reversed(self.actions.get(key, [])):
            if event.kind != "result" or not event.verified:
                continue
            if entitlement is None or event.payload.get("entitlement") == entitlement:
                best = event.brief(f"{event.payload.get('op')}, read back: {_checks(event)}")
                break
        for event in reversed(self.verifications):
            if best is not None and event.seq < best["seq"]:
                break
            if _clean_for(event, key, entitlement):
                how = (
                    f"lockstep verify read the target back ({event.payload.get('checks')} "
                    "checks; none failed here) and probed the credentials lockstep issued"
                )
                return event.brief(how)
        return best

    def credential(self, key: Key) -> dict[str, Any] | None:
        """The last verified issue of the account's credential, with what was probed."""
        for event in reversed(self.actions.get(key, [])):
            if event.kind == "result" and event.verified and event.payload.get("fingerprint"):
                brief = event.brief(f"{event.payload.get('op')}: {_checks(event)}")
                brief["fingerprint"] = event.payload.get("fingerprint")
                return brief
        return None

    def trail(self, key: Key, limit: int = 50) -> list[dict[str, Any]]:
        return [
            {
                "seq": e.seq,
                "hash": e.hash,
                "at": e.at,
                "kind": e.kind,
                "op": e.payload.get("op"),
                "entitlement": e.payload.get("entitlement"),
                "identity": e.payload.get("identity"),
                "status": e.payload.get("status"),
                "detail": e.payload.get("detail") or e.payload.get("reason"),
            }
            for e in self.actions.get(key, [])[-limit:]
        ]


def read_history(store: Store, keys: Collection[Key]) -> History:
    accounts = sorted({account for _, account in keys})
    with store.reading() as conn:
        rows = list(_rows(conn, accounts)) if accounts else []
        checks = conn.execute(
            select(journal.c.seq, journal.c.hash, journal.c.at, journal.c.kind, journal.c.payload)
            .where(journal.c.kind == "verification")
            .order_by(journal.c.seq)
        ).all()
    actions: dict[Key, list[Event]] = {}
    for event in parse_events(rows):
        key = (str(event.payload.get("target")), str(event.payload.get("account")))
        if key in keys:
            actions.setdefault(key, []).append(event)
    return History(actions, list(parse_events(checks)))


def _rows(conn: Connection, accounts: list[str]) -> Iterable[Any]:
    # The payload is canonical JSON: an account appears exactly as "account":"NAME".
    for start in range(0, len(accounts), 200):
        patterns = [
            journal.c.payload.like(f"%{_like(json.dumps(a, ensure_ascii=False))}%", escape="\\")
            for a in accounts[start : start + 200]
        ]
        yield from conn.execute(
            select(journal.c.seq, journal.c.hash, journal.c.at, journal.c.kind, journal.c.payload)
            .where(journal.c.kind.in_(ACTION_KINDS), or_(*patterns))
            .order_by(journal.c.seq)
        )


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'"account":{escaped}'


def parse_events(rows: Iterable[Any]) -> Iterable[Event]:
    for row in rows:
        payload = json.loads(row.payload)
        if isinstance(payload, dict):
            yield Event(row.seq, row.hash, row.at.strftime("%Y-%m-%dT%H:%M:%SZ"), row.kind, payload)


def _checks(event: Event) -> str:
    said = []
    for check in event.payload.get("checks") or []:
        if isinstance(check, dict):
            entitlement = check.get("entitlement")
            said.append(
                f"{entitlement} {check.get('actual')}" if entitlement else str(check.get("actual"))
            )
    return "; ".join(said) or str(event.payload.get("detail") or "")


def _clean_for(event: Event, key: Key, entitlement: str | None) -> bool:
    for failed in event.payload.get("failed", []):
        if not isinstance(failed, dict) or failed.get("target") != key[0]:
            continue
        if failed.get("account") == "*":
            return False  # the target was not read
        if failed.get("account") == key[1] and (
            entitlement is None or failed.get("entitlement") in (None, entitlement)
        ):
            return False
    return True
