"""The governance API over a real state store, in process, for tests of requests and
approvals that need no target: a policy with approval stages, tokens for its people, and a
client that speaks for one of them."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from lockstep.governance.tokens import PersonTokens
from lockstep.journal import Entry, Journal
from lockstep.model import Policy
from lockstep.policy.load import load_policy
from lockstep.secret import Secret
from lockstep.service.governance_api import Governance, router
from lockstep.service.logs import get_logger
from lockstep.service.principals import Authenticators
from lockstep.store import Store

POLICY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
    environment: prod
  reports-db:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
owners:
  payments-team:
    contacts: [alice@example.com, amir@example.com]
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    environment: prod
    access:
      - target: orders-db
        account: payments_api
        entitlements: [role:app_readonly]
  reporting:
    owner: payments-team
    purpose: Reports
    access:
      - target: reports-db
        account: reporting
        entitlements: []
  triage-agent:
    owner: payments-team
    purpose: Triage
    kind: agent
    sponsor: alice@example.com
    access:
      - target: reports-db
        account: triage_agent
        entitlements: []
governance:
  groups:
    security: [sam@example.com, sue@example.com]
  admins: [root@example.com]
  approvals:
    prod:
      - {approvers: [owner], required: 1}
      - {approvers: [group:security], required: 1}
    default:
      - {approvers: [owner], required: 1}
  max_duration: {prod: 7d, default: 30d}
  pending_expires_after: 24h
"""
PEOPLE = (
    "alice@example.com",
    "amir@example.com",
    "sam@example.com",
    "sue@example.com",
    "root@example.com",
)
ENV = {"ORDERS_DB_DSN": "postgresql://admin@127.0.0.1:1/orders"}
OPERATOR = "operator-token-for-tests"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    workdir: Path
    store: Store
    governance: Governance
    client: TestClient
    clock: Clock
    tokens: dict[str, str]
    rung: list[str] = field(default_factory=list)

    def call(self, person: str | None, method: str, path: str, **body: Any) -> Any:
        token = OPERATOR if person is None else self.tokens[person]
        return self.client.request(
            method,
            path,
            json=body or None,
            headers={"Authorization": f"Bearer {token}"},
        )

    def file(self, person: str | None = "alice@example.com", **over: Any) -> Any:
        body = {
            "identity": "payments-api",
            "target": "orders-db",
            "entitlements": ["SELECT on table public.payments"],
            "for": "8h",
            "reason": "incident 42",
            **over,
        }
        return self.call(person, "POST", "/v1/requests", **body)

    def approve(self, person: str, request_id: str, comment: str = "") -> Any:
        return self.call(person, "POST", f"/v1/requests/{request_id}/approve", comment=comment)

    def deny(self, person: str, request_id: str, reason: str = "no") -> Any:
        return self.call(person, "POST", f"/v1/requests/{request_id}/deny", reason=reason)

    def journal(self, kind: str | None = None) -> list[Entry]:
        return [e for e in Journal(self.store).entries() if kind is None or e.kind == kind]

    def reload(self, text: str) -> None:
        (self.workdir / "lockstep.yaml").write_text(textwrap.dedent(text))
        self.governance.load(load_policy(self.workdir / "lockstep.yaml", ENV))


def open_world(workdir: Path, text: str = POLICY) -> Iterator[World]:
    (workdir / "lockstep.yaml").write_text(text)
    clock = Clock()
    store = Store.open(f"sqlite:///{workdir}/state.db")
    rung: list[str] = []
    governance = Governance(store, rung.append, get_logger(), clock)
    app = FastAPI()
    app.include_router(router)
    governance.serve(app.state)
    governance.load(load_policy(workdir / "lockstep.yaml", ENV))

    def policy() -> Policy:
        live = governance.live()
        assert live is not None
        return live.requests.loaded.policy

    app.state.authenticators = Authenticators(policy, Secret(OPERATOR), store, clock=clock)
    tokens = PersonTokens(store, Journal(store), clock)
    made = {p: tokens.create(p, 86400 * 30)[1] for p in PEOPLE}
    with TestClient(app) as client:
        yield World(workdir, store, governance, client, clock, made, rung)
    store.close()
