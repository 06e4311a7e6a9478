"""A lockstep project for the review tests, on a real target (the suite's PostgreSQL or
Redis): its policy, passes run in process at chosen times (so that a review falls due
without waiting days), decisions, and what the target, the vault and the journal show."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lockstep.engine.reconcile import Pass, Reconciled, reconcile
from lockstep.engine.review_model import Decision, Review
from lockstep.engine.workspace import Workspace
from lockstep.governance.reviews import ReviewStore
from lockstep.journal import Journal
from lockstep.model import Account, Result, Snapshot

T0 = datetime.now(UTC).replace(microsecond=0)
OWNERS = """\
owners:
  payments-team:
    contacts: [alice@example.com, amir@example.com]
    status: {team_status}
  support-team:
    contacts: [carol@example.com]
    status: {support_status}
"""


@dataclass(frozen=True)
class Estate:
    """One kind of real target, as the review tests need it."""

    name: str
    target: str  # the policy's targets: entry, YAML
    account: str
    declared: tuple[str, str]  # two entitlements in the target's grammar, canonical
    extra: str  # one more, granted by hand to make drift
    add_by_hand: Callable[[str, str], None]  # (account, entitlement)
    logs_in: Callable[[str, str], bool]  # (username, password): accepted?
    sessions: Callable[[str], int]  # connections open as the account


@dataclass
class Project:
    workdir: Path
    estate: Estate
    rules: str = ""
    governance: str = "governance:\n  admins: [root@example.com]\n"
    results: list[Result] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.workdir / "lockstep.yaml"

    def write(
        self,
        identities: str,
        team_status: str = "active",
        support_status: str = "active",
    ) -> None:
        text = (
            "version: 1\n"
            + "targets:\n"
            + textwrap.indent(self.estate.target, "  ")
            + OWNERS.format(team_status=team_status, support_status=support_status)
            + "identities:\n"
            + textwrap.indent(textwrap.dedent(identities), "  ")
            + self.rules
            + self.governance
        )
        self.config.write_text(text)

    def service(self, owner: str = "payments-team", entitlements: tuple[str, ...] = ()) -> str:
        ents = entitlements or self.estate.declared
        return textwrap.dedent(f"""\
            payments-api:
              owner: {owner}
              purpose: Serve the payments API
              access:
                - target: t
                  account: {self.estate.account}
                  entitlements: {list(ents)!r}
            """)

    def agent(self, entitlements: tuple[str, ...], sponsor: str = "carol@example.com") -> str:
        return textwrap.dedent(f"""\
            triage-agent:
              owner: payments-team
              purpose: Triage tickets
              kind: agent
              sponsor: {sponsor}
              access:
                - target: t
                  account: {self.estate.account}
                  entitlements: {list(entitlements)!r}
            """)

    @contextmanager
    def ws(self, at: datetime) -> Iterator[Workspace]:
        with Workspace.open(self.config) as ws:
            ws.clock = lambda: at
            ws.journal = Journal(ws.store, ws.clock)
            yield ws

    def apply(self, at: datetime) -> Reconciled:
        """One pass at ``at``, applying everything it plans (``lockstep apply --yes``)."""

        def gate(seen: Pass) -> Any:
            return seen.plan

        with self.ws(at) as ws, ws.observer() as (observer, desired):
            done = reconcile(ws, observer, desired, gate, self.results.append)
        return done

    def reviews(self, **where: Any) -> list[Review]:
        with self.ws(T0) as ws:
            found = ReviewStore(ws.store, ws.journal).list()
        return [r for r in found if all(getattr(r, k) == v for k, v in where.items())]

    def review(self, **where: Any) -> Review:
        [found] = self.reviews(**where)
        return found

    def decide(
        self,
        review: Review,
        decision: Decision,
        at: datetime,
        by: str = "alice@example.com",
        reason: str = "checked with the team",
    ) -> Review:
        with self.ws(at) as ws:
            store = ReviewStore(ws.store, ws.journal, ws.clock)
            return store.decide(ws.policy, review.id, by, f"token test-{by}", decision, reason)

    def account(self, at: datetime = T0) -> Account | None:
        """The account as the target shows it now."""
        with self.ws(at) as ws, ws.observer() as (observer, _):
            snap = observer.observe()["t"]
        assert isinstance(snap, Snapshot), snap
        return snap.accounts.get(self.estate.account)

    def lease_account(self, name: str, at: datetime = T0) -> Account | None:
        """A lease's own account as the target shows it."""
        with self.ws(at) as ws, ws.observer() as (observer, _):
            snap = observer.observe()["t"]
        assert isinstance(snap, Snapshot), snap
        return snap.accounts.get(name)

    def credential(self) -> tuple[str, str]:
        with self.ws(T0) as ws:
            current = ws.vault.current("t", self.estate.account)
        assert current is not None
        return current.username, current.secret.reveal()

    def journal(self, kind: str) -> list[dict[str, Any]]:
        with self.ws(T0) as ws:
            return [e.payload for e in ws.journal.entries() if e.kind == kind]

    def plan(self, at: datetime) -> Pass:
        from lockstep.engine.reconcile import observe

        with self.ws(at) as ws, ws.observer() as (observer, desired):
            return observe(ws, observer, desired)


def days(n: float) -> timedelta:
    return timedelta(days=n)


@contextmanager
def lease_manager(project: Project, at: datetime) -> Iterator[Any]:
    """A lease manager over the project at ``at``, as the service opens one."""
    from lockstep.leases.manager import LeaseManager

    with project.ws(at) as ws:
        manager = LeaseManager.for_workspace(ws)
        try:
            yield manager
        finally:
            manager.close()
