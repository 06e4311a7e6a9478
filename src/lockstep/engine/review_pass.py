"""The reviews' part of a reconcile pass: the edges around the pure ``engine.reviews``.

Within ``engine.reconcile.observe``: reviews past due become overdue (and what
``rules.unreviewed`` enforces joins this pass's plan), their ``review_overdue`` findings join
the plan's, and once the findings ledger is up to date runtime's triggers open reviews
(drift and sod read the ledger's transitions). After apply, removals the pass proved settle
their reviews (``revoked``), and revocations with nothing left to hold back are lifted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from lockstep.engine.catalog import OPEN
from lockstep.engine.review_enforcement import lifted, proven, revocations
from lockstep.engine.review_model import (
    UNANSWERED,
    Leak,
    Recurrence,
    Review,
    Revocation,
    Signals,
    iso,
)
from lockstep.engine.reviews import open_reviews, overdue_findings, past_due
from lockstep.engine.workspace import Workspace
from lockstep.governance.reviews import Changes, ReviewState, ReviewStore, rule_entry
from lockstep.leases.ending import Ended
from lockstep.leases.manager import LeaseManager
from lockstep.leases.records import LeaseRecords, LeaseStatus
from lockstep.model import (
    Desired,
    FindingType,
    IdentityKind,
    Observation,
    Plan,
    Result,
)
from lockstep.store.findings import Transition

_TRIGGERING = frozenset({FindingType.EXCESS_ENTITLEMENT, FindingType.SOD_VIOLATION})


def review_store(ws: Workspace) -> ReviewStore:
    return ReviewStore(ws.store, ws.journal, ws.clock)


@dataclass
class Reviewing:
    """One pass's reviews, from the first look at the overdue ones to the last settlement."""

    ws: Workspace
    targets_read: list[str]
    state: ReviewState
    held: dict[str, Review] = field(default_factory=dict)
    opened: list[Review] = field(default_factory=list)

    @classmethod
    def begin(cls, ws: Workspace, targets_read: Sequence[str]) -> Reviewing:
        agents = [i.name for i in ws.policy.identities.values() if i.kind is IdentityKind.AGENT]
        state = review_store(ws).state(targets_read, agents)
        return cls(ws, list(targets_read), state, {r.id: r for r in state.held})

    def overdue(self, now: datetime) -> bool:
        """Mark the reviews past due; True when the rule now holds something back."""
        late = past_due(self.ws.policy, self.held.values(), now)
        rule = str(self.ws.policy.rules.unreviewed)
        for r in late:
            self.held[r.id] = r
        self._record(Changes(changed=[(r, "review_overdue", rule_entry(r, rule)) for r in late]))
        return any(r.enforce is not None for r in late)

    def revocations(self) -> list[Revocation]:
        return revocations(self.held.values())

    def with_findings(self, plan: Plan) -> Plan:
        """The plan with one ``review_overdue`` per access unanswered past due."""
        read = set(self.targets_read)
        late = [r for r in self.held.values() if r.target in read]
        found = overdue_findings(self.ws.policy, late)
        if not found:
            return plan
        findings = sorted(
            (*plan.findings, *found),
            key=lambda f: (f.target, f.type, f.account or "", f.entitlement or ""),
        )
        return replace(plan, findings=tuple(findings))

    def open(
        self,
        desired: Desired,
        transitions: Sequence[Transition],
        last_used: Mapping[tuple[str, str], tuple[datetime, str]],
        observable: Collection[str],
        now: datetime,
        leaks: Sequence[Leak] = (),
    ) -> list[Review]:
        """Open what runtime's triggers call for this pass; returns the reviews opened."""
        signals = Signals(
            last_used=last_used,
            observable=frozenset(observable),
            findings=[
                Recurrence(t.finding, t.before)
                for t in transitions
                if t.after == OPEN and t.finding.type in _TRIGGERING
            ],
            leaks=leaks,
            requesters=review_store(self.ws).requesters(self.targets_read),
        )
        unanswered = [r for r in self.held.values() if r.status in UNANSWERED]
        opened = open_reviews(
            self.ws.policy, desired, self.targets_read, self.state.subjects, unanswered,
            signals, now,
        )  # fmt: skip
        self._record(Changes(opened=opened.reviews, subjects=opened.subjects, gone=opened.gone))
        for r in opened.reviews:
            self.held[r.id] = r
        self.opened = opened.reviews
        return opened.reviews

    def settle(
        self, observed: Mapping[str, Observation], results: Sequence[Result], now: datetime
    ) -> list[Review]:
        """Reviews whose removal this pass proved (their identity's leases on the target
        ended and proven refused too), then revocations with nothing left to hold back;
        returns the reviews that changed."""
        changes = Changes()
        waiting = [r for r in self.held.values() if r.in_force and r.verified_at is None]
        leases = _end_leases(self.ws, waiting)
        for r, how in proven(self.held.values(), observed, results, now):
            ended = leases.get(r.id, [])
            if not all(e.verified for e in ended):
                continue  # a lease still works: the removal is not proven yet
            self.held[r.id] = r
            how = {**how, "leases": [{"lease_id": e.lease_id, "status": str(e.status)}
                                     for e in ended]}  # fmt: skip
            changes.changed.append((r, "review_verified", {"verified_at": iso(now), **how}))
        for r in lifted(self.ws.policy, self.held.values(), self.targets_read, now):
            self.held[r.id] = r
            changes.changed.append(
                (r, "review_lifted", {"why": "the policy no longer declares it"})
            )
        self._record(changes)
        return [r for r, _, _ in changes.changed]

    def _record(self, changes: Changes) -> None:
        review_store(self.ws).record(changes, self.ws.policy.governance.notify is not None)


def _end_leases(ws: Workspace, reviews: Sequence[Review]) -> dict[str, list[Ended]]:
    """End the leases of each review's identity on its target: what a review takes away, no
    short-lived credential keeps (new ones leave it out: see ``lease_terms``)."""
    records = LeaseRecords(ws.store, ws.vault, ws.journal)
    live = (LeaseStatus.ACTIVE, LeaseStatus.FAILED)  # a failed end is tried again
    found = {
        r.id: [x for x in records.list(identity=r.identity, target=r.target) if x.status in live]
        for r in reviews
    }
    if not any(found.values()):
        return {}
    manager = LeaseManager.for_workspace(ws)
    try:
        return {
            r.id: manager.revoke_where(identity=r.identity, target=r.target)
            for r in reviews
            if found[r.id]
        }
    finally:
        manager.close()


def leaked(
    ws: Workspace, identity: str, target: str | None, at: datetime, seq: int
) -> list[Review]:
    """``rotate --reason leaked``: a review of every account of the identity (on ``target``),
    opened now whatever the targets' state."""
    declared = ws.policy.identities.get(identity)
    if declared is None:
        return []
    targets = sorted({a.target for a in declared.access if target in (None, a.target)})
    reviewing = Reviewing(ws, [], review_store(ws).state(targets, [identity]))
    reviewing.held = {r.id: r for r in reviewing.state.held}
    empty = Desired({})
    return reviewing.open(empty, [], {}, (), at, [Leak(identity, target, at, seq)])
