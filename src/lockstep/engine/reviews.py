"""Access reviews tied to runtime: when a review opens, when it is overdue, what a decision
holds back from the desired state and when its removal counts as proven. Pure functions of
the policy, the observed state, use, the findings' history and ``now``.

A review opens periodically (``rules.review_every`` since the access began or was last kept)
and at once when runtime gives a reason (see ``Trigger``). One occurrence of a trigger opens
one review at most (its id derives from the occurrence), and an access, entitlement and
trigger have at most one unanswered review at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from lockstep.engine.catalog import REMEDIATED, RESOLVED, VERIFIED
from lockstep.engine.plan import finding
from lockstep.engine.review_decisions import reviewers
from lockstep.engine.review_model import (
    RULE,
    Decision,
    Enforcement,
    Review,
    ReviewStatus,
    Signals,
    Subject,
    SubjectKey,
    Trigger,
    iso,
    review_id,
)
from lockstep.model import (
    DEFAULT_ENVIRONMENT,
    Access,
    Desired,
    Finding,
    FindingType,
    Identity,
    IdentityKind,
    OwnerStatus,
    Policy,
    RuleAction,
)
from lockstep.policy.durations import format_duration
from lockstep.policy.governance import normal_person


def review_period(policy: Policy, identity: Identity, target: str) -> int | None:
    """``rules.review_every`` for the access: the target's environment, else the identity's,
    else ``default``; None when none applies (no periodic review)."""
    every = policy.rules.review_every_s
    t = policy.targets.get(target)
    for env in (t.environment if t else None, identity.environment):
        if env is not None and env in every:
            return every[env]
    return every.get(DEFAULT_ENVIRONMENT)


# ---------------------------------------------------------------- opening


@dataclass(frozen=True)
class Opened:
    reviews: list[Review]
    subjects: dict[SubjectKey, Subject]  # new or changed
    gone: list[SubjectKey]  # no longer declared on a target read this pass


def open_reviews(
    policy: Policy,
    desired: Desired,
    targets_read: Collection[str],
    subjects: Mapping[SubjectKey, Subject],
    unanswered: Iterable[Review],
    signals: Signals,
    now: datetime,
) -> Opened:
    """The reviews runtime opens this pass, and what reviews remember of each access after
    it. Only targets read in full count: of an unread target nothing is concluded."""
    read = set(targets_read)
    opener = _Opener(policy, signals, now, {r.slot for r in unanswered})
    agents = {n for n, i in policy.identities.items() if i.kind is IdentityKind.AGENT}
    known: defaultdict[str, set[SubjectKey]] = defaultdict(set)
    on_read = 0  # remembered accesses on the targets read
    for s in subjects.values():
        if s.identity in agents:
            known[s.identity].add(s.key)
        if s.target in read:
            on_read += 1
    quiet = _Quiet(policy, signals, now)
    still = 0  # ... of which the policy still declares
    changed: dict[SubjectKey, Subject] = {}
    remembered = subjects.get
    for identity in policy.identities.values():
        name, plain = identity.name, identity.kind is not IdentityKind.AGENT
        for access in identity.access:
            target, account = access.target, access.account
            if signals.leaks:
                opener.leaks(identity, target, account)
            if target not in read or (access.expires is not None and access.expires <= now):
                continue
            key = (name, target, account)
            old = remembered(key)
            if old is not None:
                still += 1
            if old is not None and plain and old.owner == identity.owner and quiet(identity, old):
                continue
            want = desired.accounts.get((target, account))
            active = want is not None and want.active
            agent_known = bool(known.get(name, set()) - {key})
            new = opener.subject(identity, access, old, active, agent_known)
            if new != old:
                changed[key] = new
    opener.findings()
    gone = _gone(policy, subjects, read, now) if still < on_read else []
    return Opened(opener.opened, changed, gone)


def _gone(
    policy: Policy, subjects: Mapping[SubjectKey, Subject], read: set[str], now: datetime
) -> list[SubjectKey]:
    """Remembered accesses on the targets read that the policy no longer declares (unexpired)."""
    live = {
        (identity.name, a.target, a.account)
        for identity in policy.identities.values()
        for a in identity.access
        if a.expires is None or a.expires > now
    }
    return [k for k in subjects if k[1] in read and k not in live]


_UNSET = timedelta(-1)


class _Quiet:
    """Whether an access of a service or workload, remembered with the same owner, has
    nothing to say this pass: use not observed for dormancy, and no periodic review due.
    Most accesses on most passes: they cost a few lookups instead of a full evaluation."""

    def __init__(self, policy: Policy, signals: Signals, now: datetime) -> None:
        self.policy = policy
        self.now = now
        self.dormancy = policy.rules.dormant_after_s is not None
        self.observable = signals.observable
        self.periods: dict[tuple[str, str | None], timedelta | None] = {}

    def __call__(self, identity: Identity, old: Subject) -> bool:
        target = old.target
        if self.dormancy and target in self.observable:
            return False
        period = self.periods.get((target, identity.environment), _UNSET)
        if period is _UNSET:
            seconds = review_period(self.policy, identity, target)
            period = None if seconds is None else timedelta(seconds=seconds)
            self.periods[target, identity.environment] = period
        if period is None:
            return True
        began, reviewed = old.began, old.reviewed
        anchor = reviewed if reviewed is not None and reviewed > began else began
        return anchor + period > self.now


class _Opener:
    def __init__(
        self, policy: Policy, signals: Signals, now: datetime, busy: set[tuple[Any, ...]]
    ) -> None:
        self.policy = policy
        self.signals = signals
        self.now = now
        self.busy = busy
        self.due = now + timedelta(seconds=policy.rules.review_grace_s)
        self.opened: list[Review] = []
        self.contacts = {
            normal_person(c)
            for o in policy.owners.values()
            if o.status is OwnerStatus.ACTIVE
            for c in o.contacts
        }

    def open(
        self,
        identity: Identity,
        target: str,
        account: str,
        trigger: Trigger,
        occurrence: str,
        evidence: Mapping[str, Any],
        entitlement: str | None = None,
    ) -> bool:
        slot = (identity.name, target, account, entitlement, trigger)
        if slot in self.busy:
            return False
        self.busy.add(slot)
        requesters = self.signals.requesters.get((target, account), frozenset())
        self.opened.append(
            Review(
                id=review_id(identity.name, target, account, entitlement, trigger, occurrence),
                identity=identity.name,
                target=target,
                account=account,
                entitlement=entitlement,
                trigger=trigger,
                occurrence=occurrence,
                reviewers=reviewers(self.policy, identity, requesters),
                opened=self.now,
                due=self.due,
                status=ReviewStatus.OPEN,
                evidence=dict(evidence),
            )
        )
        return True

    def leaks(self, identity: Identity, target: str, account: str) -> None:
        for leak in self.signals.leaks:
            if leak.identity == identity.name and leak.target in (None, target):
                evidence = {"rotation": "leaked", "at": iso(leak.at), "journal": leak.journal_seq}
                self.open(identity, target, account, Trigger.LEAKED, iso(leak.at), evidence)

    def subject(
        self,
        identity: Identity,
        access: Access,
        old: Subject | None,
        active: bool,
        agent_known: bool,
    ) -> Subject:
        """Open what this access's own triggers call for; what reviews remember of it."""
        target, account = access.target, access.account
        new = old or Subject(identity.name, target, account, self.now, None, identity.owner)
        if active:
            self._periodic(identity, new)
            new = self._dormant(identity, new)
        if old is not None and old.owner != identity.owner:
            change = {"from": old.owner, "to": identity.owner}
            occurrence = f"{old.owner}->{identity.owner}@{iso(self.now)}"
            self.open(identity, target, account, Trigger.OWNER_CHANGED, occurrence, change)
            new = replace(new, owner=identity.owner)
        if identity.kind is IdentityKind.AGENT:
            new = self._agent(identity, access, old, new, agent_known)
        return new

    def _periodic(self, identity: Identity, subject: Subject) -> None:
        period = review_period(self.policy, identity, subject.target)
        if period is None:
            return
        anchor = max(subject.began, subject.reviewed or subject.began)
        at = anchor + timedelta(seconds=period)
        if at > self.now:
            return
        evidence = {
            "since": iso(anchor),
            "review_every": format_duration(period),
            **self._use(subject.target, subject.account),
        }
        self.open(identity, subject.target, subject.account, Trigger.PERIODIC, iso(at), evidence)

    def _use(self, target: str, account: str) -> dict[str, Any]:
        """What the review can say of the account's use: where the target cannot show use,
        it says so rather than calling the access unused."""
        if target not in self.signals.observable:
            return {"use": f"not observable on target {target}", "last_used": None}
        seen = self.signals.last_used.get((target, account))
        if seen is None:
            return {"use": "observed", "last_used": None}
        at, source = seen
        return {"use": "observed", "last_used": iso(at), "source": source}

    def _dormant(self, identity: Identity, subject: Subject) -> Subject:
        after = self.policy.rules.dormant_after_s
        if after is None or subject.target not in self.signals.observable:
            return subject
        seen = self.signals.last_used.get((subject.target, subject.account))
        if seen is None or seen[0] + timedelta(seconds=after) > self.now:
            return subject
        occurrence = iso(seen[0])
        if subject.dormant == occurrence:
            return subject
        evidence = {
            **self._use(subject.target, subject.account),
            "dormant_after": format_duration(after),
        }
        if self.open(
            identity, subject.target, subject.account, Trigger.DORMANT, occurrence, evidence
        ):
            return replace(subject, dormant=occurrence)
        return subject

    def _agent(
        self,
        identity: Identity,
        access: Access,
        old: Subject | None,
        new: Subject,
        agent_known: bool,
    ) -> Subject:
        target, account = access.target, access.account
        sponsor = identity.sponsor or ""
        ok = sponsor in self.contacts
        if not ok and (old is None or old.sponsor_ok is not False):
            departed: dict[str, Any] = {
                "sponsor": sponsor or None,
                "detail": "the sponsor is no longer a contact of an active owner",
            }
            occurrence = f"{sponsor}@{iso(self.now)}"
            self.open(identity, target, account, Trigger.SPONSOR_DEPARTED, occurrence, departed)
        # A new account of an agent already known is growth too; a new agent is not: its
        # declaration is what the policy's own review in git approved.
        before = old.scope if old is not None else (frozenset() if agent_known else None)
        if before is not None:
            for ent in sorted(access.entitlements - before):
                evidence: dict[str, Any] = {"added": ent, "before": sorted(before)}
                self.open(
                    identity, target, account, Trigger.SCOPE_CHANGED, iso(self.now), evidence, ent
                )
        return replace(new, sponsor_ok=ok, scope=access.entitlements)

    def findings(self) -> None:
        """Drift (an excess found again after lockstep removed it) and sod conflicts found
        anew in a target."""
        for seen in self.signals.findings:
            f = seen.finding
            identity = self.policy.identities.get(f.identity or "")
            if identity is None or f.account is None:
                continue
            if f.type is FindingType.EXCESS_ENTITLEMENT and seen.before in (REMEDIATED, VERIFIED):
                trigger = Trigger.DRIFT
                evidence: dict[str, Any] = {
                    "finding": f.id,
                    "detail": f.detail,
                    "before": seen.before,
                    "remediated_at": iso(seen.remediated_at) if seen.remediated_at else None,
                    "verified_at": iso(seen.verified_at) if seen.verified_at else None,
                }
            elif f.type is FindingType.SOD_VIOLATION and seen.before in (None, VERIFIED, RESOLVED):
                trigger = Trigger.SOD
                evidence = {"finding": f.id, "detail": f.detail}
            else:
                continue
            occurrence = f"{f.id}@{iso(self.now)}"
            self.open(identity, f.target, f.account, trigger, occurrence, evidence, f.entitlement)


# ---------------------------------------------------------------- unanswered


def past_due(policy: Policy, reviews: Iterable[Review], now: datetime) -> list[Review]:
    """Open reviews whose due time has passed, as ``rules.unreviewed`` leaves them: overdue
    (``report``), overdue with the account suspended (``suspend``), or revoked by the rule
    (``revoke``: the entitlement, or a whole account's access)."""
    rule = policy.rules.unreviewed
    changed = []
    for review in reviews:
        if review.status is not ReviewStatus.OPEN or review.due > now:
            continue
        if rule is RuleAction.REVOKE:
            changed.append(
                replace(
                    review,
                    status=ReviewStatus.REVOKING,
                    decision=Decision.REVOKE,
                    decided_by=RULE,
                    decided_at=now,
                    reason=f"unanswered by {iso(review.due)}; rules.unreviewed: revoke",
                    enforce=Enforcement.REVOKE,
                )
            )
        elif rule is RuleAction.SUSPEND:
            changed.append(
                replace(review, status=ReviewStatus.OVERDUE, enforce=Enforcement.SUSPEND)
            )
        else:
            changed.append(replace(review, status=ReviewStatus.OVERDUE))
    return changed


def overdue_findings(policy: Policy, reviews: Iterable[Review]) -> list[Finding]:
    """One ``review_overdue`` per access and entitlement with a review unanswered past due
    (or revoked by the rule and not proven yet)."""
    late: defaultdict[tuple[str, str, str | None, str], list[Review]] = defaultdict(list)
    for r in reviews:
        by_rule = r.status is ReviewStatus.REVOKING and r.decided_by == RULE
        if r.status is ReviewStatus.OVERDUE or by_rule:
            late[r.target, r.account, r.entitlement, r.identity].append(r)
    found = []
    for (target, account, entitlement, identity), items in sorted(late.items(), key=_by_key):
        items.sort(key=lambda r: (r.due, r.id))
        listed = ", ".join(f"{r.id} ({r.trigger}, due {iso(r.due)})" for r in items)
        detail = f"unanswered: {listed}; rule: unreviewed: {policy.rules.unreviewed}"
        found.append(
            finding(FindingType.REVIEW_OVERDUE, target, account, entitlement, identity, detail)
        )
    return found


def _by_key(item: tuple[tuple[str, str, str | None, str], list[Review]]) -> tuple[str, ...]:
    (target, account, entitlement, identity), _ = item
    return (target, account, entitlement or "", identity)
