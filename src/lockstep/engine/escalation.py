"""Escalation paths within a reconcile pass: the facts read from every target the pass read
(and from this host's file sinks), the analysis, and its findings and revocations joined to
the plan, so that ``plan``, ``apply``, ``lockstep paths`` and the service see one answer.

Unknown is not compliant: a target whose facts could not be read makes the analysis
partial, and so does a pass over some of the policy's targets (the service's per-target
passes). A partial pass adds what it finds and never concludes that a path is gone: the
escalation findings it does not see again are carried as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime

from lockstep.credentials.sink_files import read_sink_files
from lockstep.engine.catalog import HELD
from lockstep.engine.grants import GrantState
from lockstep.engine.observe import Observer
from lockstep.engine.workspace import Workspace
from lockstep.model import Action, Desired, Finding, FindingType, Observation, Plan, Snapshot
from lockstep.paths.analysis import DEFAULT_LIMIT, PathReport, analyse
from lockstep.paths.assemble import Estate, path_request, sink_locations
from lockstep.paths.sinks import HOST


def read_estate(
    ws: Workspace,
    observer: Observer,
    observed: Mapping[str, Observation],
    grants: Iterable[GrantState],
    now: datetime,
) -> Estate:
    read = [name for name, obs in observed.items() if isinstance(obs, Snapshot)]
    facts, unread = observer.read_paths(read, path_request(ws.policy))
    for name, obs in observed.items():
        if not isinstance(obs, Snapshot):
            unread[name] = obs.error
    files = [s for s in sink_locations(ws.policy) if s.startswith("file:")]
    every = {**facts, HOST: read_sink_files(files)}
    held = {
        (name, account): found.entitlements
        for name, obs in observed.items()
        if isinstance(obs, Snapshot)
        for account, found in obs.accounts.items()
    }
    approved = frozenset(
        (g.grant.identity, g.grant.target, entitlement)
        for g in grants
        if now < g.grant.ends_at
        for entitlement in g.grant.entitlements
    )
    return Estate(every, unread, approved, held)


def escalation(
    ws: Workspace,
    observer: Observer,
    desired: Desired,
    observed: Mapping[str, Observation],
    grants: Iterable[GrantState],
    now: datetime,
    accepted: AbstractSet[str],
    limit: int = DEFAULT_LIMIT,
) -> tuple[Estate, PathReport]:
    estate = read_estate(ws, observer, observed, grants, now)
    return estate, analyse(ws.policy, desired, estate, limit, accepted)


def with_paths(plan: Plan, report: PathReport) -> Plan:
    """``plan`` with the report's findings, and its revocations that the plan does not make
    already (an excess entitlement's revocation is the same action) on targets it read."""
    existing = {_key(a): a for a in plan.actions}
    added: list[Action] = []
    for action in report.actions:
        if action.target in plan.unreachable or _key(action) in existing:
            continue
        existing[_key(action)] = action
        added.append(action)
    actions = sorted([*plan.actions, *added], key=Action.sort_key)
    findings = sorted(
        [*plan.findings, *report.findings],
        key=lambda f: (f.target, f.type, f.account or "", f.entitlement or ""),
    )
    remedies = tuple((existing[_key(a)], fid) for a, fid in report.remedies if _key(a) in existing)
    return replace(plan, actions=tuple(actions), findings=tuple(findings), remedies=remedies)


def carried(
    ws: Workspace, report: PathReport, plan: Plan, targets_read: list[str], partial: bool
) -> list[Finding]:
    """The escalation findings a partial pass did not see again, kept as they were."""
    if not (partial or report.unread):
        return []
    seen = {f.id for f in plan.findings}
    held = ws.ledger.current(HELD, types=[str(FindingType.ESCALATION_PATH)], targets=targets_read)
    return [r.finding for r in held if r.id not in seen]


def _key(action: Action) -> tuple[str, str, str, str | None]:
    return (str(action.op), action.target, action.account, action.entitlement)
