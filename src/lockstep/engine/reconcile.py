"""One reconcile pass, the shape of a Kubernetes controller's ``Reconcile``: read every target,
plan against the desired state, record what was seen (use, findings), apply what may be
applied, then settle what the pass enforced. The CLI (``plan``, ``apply``, ``rotate``, the
demo) and the service assemble their passes here and nowhere else.

What differs between them is the gate between planning and applying: the CLI shows the plan
and asks; the service drops rotations another service must make and never applies a plan
the blast-radius guard stopped. A gate returns the plan to apply, or None to stop there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from lockstep.connectors.base import ObservesUsage, TargetUnreachable
from lockstep.engine.apply import Applier, action_fields
from lockstep.engine.delivered import SinkState, redeliver, sink_states, undelivered_findings
from lockstep.engine.delivery import Deliverer
from lockstep.engine.desired import desired_state
from lockstep.engine.escalation import carried, escalation, with_paths
from lockstep.engine.grants import GrantState, grant_findings, transitions
from lockstep.engine.observe import Observer
from lockstep.engine.plan import Key, make_plan
from lockstep.engine.recovery import Recovery
from lockstep.engine.review_pass import Reviewing
from lockstep.engine.sod import SodIndex, violations
from lockstep.engine.workspace import Workspace
from lockstep.governance.separation import held_now, record_holdings
from lockstep.leases.records import LeaseRecords
from lockstep.model import (
    LEASE_PREFIX,
    Desired,
    Finding,
    Observation,
    Op,
    Plan,
    Result,
    Snapshot,
    Status,
)
from lockstep.paths.analysis import PathReport
from lockstep.paths.assemble import Estate
from lockstep.store.findings import FindingRecord, remediated_ids
from lockstep.store.identity_states import IdentityStates
from lockstep.store.tables import sod_holdings

Progress = Callable[[Result], None]


@dataclass
class Pass:
    """What one observation of every target found."""

    desired: Desired
    observed: dict[str, Observation]
    plan: Plan
    findings: list[FindingRecord]
    grants: list[GrantState] = field(default_factory=list)  # as read when the pass began
    sinks: list[SinkState] = field(default_factory=list)
    estate: Estate | None = None  # what was read for escalation paths
    paths: PathReport | None = None
    reviewing: Reviewing | None = None

    @property
    def targets_read(self) -> list[str]:
        return [n for n, o in self.observed.items() if isinstance(o, Snapshot)]


@dataclass
class Reconciled:
    seen: Pass
    applied: Plan | None  # None when the gate stopped the pass before applying
    results: list[Result] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)  # sinks a redelivery could not fill


Gate = Callable[[Pass], Plan | None]


def reconcile(
    ws: Workspace,
    observer: Observer,
    desired: Desired,
    gate: Gate,
    progress: Progress,
    stop: Callable[[], bool] = lambda: False,
) -> Reconciled:
    """Settle what an earlier, interrupted pass left unfinished, then read, plan, gate and
    apply. The settled changes come first among the results."""
    recovered = recover(ws, observer, progress)
    seen = observe(ws, observer, desired)
    plan = gate(seen)
    if plan is None:
        settle_grants(ws, seen, recovered)
        _settle_reviews(ws, seen, recovered)
        return Reconciled(seen, None, recovered)
    if not plan.actions:
        settle_identity_states(ws, plan, [])
        results = recovered
    else:
        results = recovered + apply(ws, observer, plan, progress, stop)
    settle_grants(ws, seen, results)
    _settle_reviews(ws, seen, results)
    changed = {(r.action.target, r.action.account) for r in results}
    deliverer = Deliverer(ws.policy, ws.journal, ws.clock)
    undelivered = redeliver(deliverer, ws.vault, seen.sinks, changed)
    return Reconciled(seen, plan, results, undelivered)


def _settle_reviews(ws: Workspace, seen: Pass, results: list[Result]) -> None:
    if seen.reviewing is not None:
        seen.reviewing.settle(seen.observed, results, ws.clock())


def recover(ws: Workspace, observer: Observer, progress: Progress) -> list[Result]:
    """Complete or roll back every credential change still pending (one cheap query when
    there is none): the sessions are opened, the change settled, each result reported."""
    pending = ws.vault.pending()
    if not pending:
        return []
    observer.observe()
    results = Recovery(_applier(ws, observer, progress)).run(pending)
    for result in results:
        progress(result)
    return results


def observe(ws: Workspace, observer: Observer, desired: Desired) -> Pass:
    """Read every target, record the use seen, plan, and bring the findings ledger up to
    date with what the plan found."""
    now = ws.clock()
    observed = observer.observe()
    issued = ws.vault.issued_times()
    observable = _record_usage(ws, observer, observed, now)
    accepted = {r.id for r in ws.ledger.current("accepted")}
    targets_read = [n for n, o in observed.items() if isinstance(o, Snapshot)]
    grants = ws.grants.states(ws.policy.targets)
    reviewing = Reviewing.begin(ws, targets_read)
    if reviewing.overdue(now):
        # rules.unreviewed took something away just now: this pass enforces it already.
        live = [s.grant for s in grants]
        desired = desired_state(ws.policy, now, live, reviewing.revocations())
    seen_use = ws.usage.last_seen()
    plan = make_plan(
        ws.policy,
        desired,
        observed,
        now,
        issued,
        last_used={key: at for key, (at, _) in seen_use.items()},
        rotate_now=_rotation_events(ws),
        accepted=accepted,
        leases=lease_statuses(ws, observed),
    )
    sinks = sink_states(ws.policy, ws.vault, desired, observed)
    plan = replace(plan, findings=(*plan.findings, *undelivered_findings(sinks)))
    extra = grant_findings(grants, targets_read) + _separation(ws, desired, observed, now)
    plan = _with_findings(plan, extra)
    # Escalation paths come out of the same read: their findings and revocations join the
    # plan before the ledger is brought up to date.
    estate, paths = escalation(ws, observer, desired, observed, grants, now, accepted)
    plan = reviewing.with_findings(with_paths(plan, paths))
    findings = [*plan.findings, *carried(ws, paths, plan, targets_read, ws.partial)]
    outcome = ws.ledger.reconcile(findings, targets_read, now)
    records = outcome.records[: len(plan.findings)]
    # Runtime's triggers read what the ledger just saw (drift, sod) and what use showed.
    reviewing.open(desired, outcome.transitions, seen_use, observable, now)
    return Pass(desired, observed, plan, records, grants, sinks, estate, paths, reviewing)


def _separation(
    ws: Workspace, desired: Desired, observed: Mapping[str, Observation], now: datetime
) -> list[Finding]:
    """Record what the read targets hold of the entitlements sod rules name, and find the
    identities they show breaking a rule (with what other targets were last seen holding)."""
    index = SodIndex(ws.policy.rules.sod)
    if not index:
        return []
    read = {n: o for n, o in observed.items() if isinstance(o, Snapshot)}
    with ws.store.writing(sod_holdings) as conn:
        record_holdings(conn, index, desired, read, now)
        elsewhere = held_now(conn, index, {t for t, _ in index.entitlements} - read.keys())
    return violations(index, desired, read, elsewhere)


def _with_findings(plan: Plan, extra: list[Finding]) -> Plan:
    if not extra:
        return plan
    findings = sorted(
        (*plan.findings, *extra),
        key=lambda f: (f.target, f.type, f.account or "", f.entitlement or ""),
    )
    return replace(plan, findings=tuple(findings))


def settle_grants(ws: Workspace, seen: Pass, results: list[Result]) -> None:
    """Move each grant on the targets read as far as the pass proved: active once read
    back held, ended once read back gone, failed when its enforcement failed."""
    if not seen.grants:
        return
    snapshots = {n: o for n, o in seen.observed.items() if isinstance(o, Snapshot)}
    now = ws.clock()
    leased = ws.grants.leased([g for g in seen.grants if g.grant.ends_at <= now])
    moves = transitions(seen.grants, seen.desired, snapshots, results, now, leased)
    ws.grants.settle(seen.grants, moves)


def apply(
    ws: Workspace,
    observer: Observer,
    plan: Plan,
    progress: Progress,
    stop: Callable[[], bool] = lambda: False,
) -> list[Result]:
    """Journal the plan, execute and verify each action, then settle: old credentials
    purged, usage of deleted accounts forgotten, findings marked remediated, identity
    states recorded."""
    ws.journal.append(
        "plan",
        {
            "actions": [action_fields(a) for a in plan.actions],
            "unreachable": list(plan.unreachable),
            "findings": len(plan.findings),
        },
    )
    results = replace(_applier(ws, observer, progress), stop=stop).apply(plan)
    now = ws.clock()
    ws.vault.purge_retired_of({(r.action.target, r.action.account) for r in results}, keep=3)
    ws.usage.forget_all(
        (r.action.target, r.action.account)
        for r in results
        if r.action.op is Op.DELETE_ACCOUNT and r.status is Status.VERIFIED
    )
    verified = {r.action for r in results if r.status is Status.VERIFIED}
    cut_off = [fid for action, fid in plan.remedies if action in verified]
    ws.ledger.remediated([*remediated_ids(results, plan.findings), *cut_off], now)
    settle_identity_states(ws, plan, results)
    return results


def _applier(ws: Workspace, observer: Observer, progress: Progress) -> Applier:
    return Applier(
        ws.policy, observer.sessions, observer.connectors, ws.journal, ws.vault, ws.clock, progress
    )


def settle_identity_states(ws: Workspace, plan: Plan, results: list[Result]) -> None:
    """Remember what was enforced, except for identities whose rotation did not happen
    (a failed rotation or an unreadable target): their event stays pending. In a
    workspace narrowed to some targets (the service's per-target passes), an identity
    with access beyond them is recorded when first seen, but a change of it stays
    pending until a pass covers all of its targets."""
    pending = {
        r.action.identity
        for r in results
        if r.action.op is Op.ROTATE_CREDENTIAL and r.status is not Status.VERIFIED
    }
    states = IdentityStates(ws.store)
    uncovered = {
        name
        for name, identity in ws.policy.identities.items()
        if any(a.target not in ws.policy.targets for a in identity.access)
    }
    if uncovered:
        pending |= uncovered & states.changed(ws.policy.identities).keys()
    unread = set(plan.unreachable)
    settled = {
        name: identity
        for name, identity in ws.policy.identities.items()
        if name not in pending and not any(a.target in unread for a in identity.access)
    }
    states.save(settled, ws.clock())


def lease_statuses(ws: Workspace, observed: Mapping[str, Observation]) -> dict[Key, str]:
    """The lease record's status of every account bearing the lease prefix, read after the
    targets: a lease being issued has its record before its account exists."""
    prefixed = [
        (name, account)
        for name, obs in observed.items()
        if isinstance(obs, Snapshot)
        for account in obs.accounts
        if account.startswith(LEASE_PREFIX)
    ]
    return LeaseRecords(ws.store, ws.vault, ws.journal).statuses(prefixed)


def _record_usage(
    ws: Workspace, observer: Observer, observed: Mapping[str, Observation], now: datetime
) -> set[str]:
    """Record the use seen; returns the targets whose use could be observed this pass."""
    observable = set()
    for name, obs in observed.items():
        session = observer.sessions.get(name)
        if not isinstance(obs, Snapshot) or session is None:
            continue
        try:
            used = session.observe_usage() if isinstance(session, ObservesUsage) else []
        except TargetUnreachable:
            continue  # use unknown this pass: nothing is stamped, nothing concluded
        if isinstance(session, ObservesUsage):
            observable.add(name)
        ws.usage.record(name, used, obs.accounts, now)
    return observable


def _rotation_events(ws: Workspace) -> dict[tuple[str, str], str]:
    changed = IdentityStates(ws.store).changed(ws.policy.identities)
    return {
        (access.target, access.account): reason
        for name, reason in changed.items()
        for access in ws.policy.identities[name].access
    }
