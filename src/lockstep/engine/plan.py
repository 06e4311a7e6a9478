"""The plan: a pure diff of desired against observed state at ``now``.

Deterministic (same inputs, same plan) and convergent: once every action has been applied,
planning again against the resulting state yields no action. A target that could not be read
yields one ``target_unreachable`` finding and nothing else: no action, no verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta

from lockstep.engine.catalog import KINDS
from lockstep.engine.objects import room_warnings, withhold
from lockstep.engine.review_model import HeldBack
from lockstep.model import (
    LEASE_PREFIX,
    Account,
    Action,
    Desired,
    DesiredAccount,
    Finding,
    FindingType,
    MassChange,
    Observation,
    Op,
    Plan,
    Policy,
    RuleAction,
    Snapshot,
)
from lockstep.policy.durations import format_duration

Key = tuple[str, str]


def finding(
    type_: FindingType,
    target: str,
    account: str | None = None,
    entitlement: str | None = None,
    identity: str | None = None,
    detail: str = "",
) -> Finding:
    return Finding(type_, KINDS[type_].severity, target, account, entitlement, identity, detail)


def make_plan(
    policy: Policy,
    desired: Desired,
    observed: Mapping[str, Observation],
    now: datetime,
    issued: Mapping[Key, datetime] | None = None,
    last_used: Mapping[Key, datetime] | None = None,
    rotate_now: Mapping[Key, str] | None = None,
    accepted: AbstractSet[str] = frozenset(),
    leases: Mapping[Key, str] | None = None,
) -> Plan:
    """``issued``: when lockstep last issued each account's credential (for rotation).
    ``last_used``: when each account was last seen in use, or first seen at all (dormancy).
    ``rotate_now``: accounts whose credential an event (owner or environment changed) makes
    rotate now, with the reason.
    ``accepted``: ids of findings under a risk acceptance: reported, not remediated.
    ``leases``: the status of the lease record of each account bearing the lease prefix
    that has one; an account with the prefix and no record is an impostor."""
    leases = leases or {}
    issued = issued or {}
    last_used = last_used or {}
    rotate_now = rotate_now or {}
    actions: list[Action] = []
    findings: list[Finding] = []
    unreachable: list[str] = []
    held_back: list[HeldBack] = []
    managed = 0
    for name in sorted(policy.targets):
        obs = observed.get(name)
        if not isinstance(obs, Snapshot):
            error = obs.error if obs is not None else "not read"
            unreachable.append(name)
            findings.append(finding(FindingType.TARGET_UNREACHABLE, name, detail=error))
            continue
        insecure = policy.targets[name].insecure_transport
        if insecure is not None:  # said of a target read: an unread one has no other verdict
            findings.append(finding(FindingType.INSECURE_TRANSPORT, name, detail=insecure))
        managed += len(obs.accounts)
        wants = desired.for_target(name)
        max_age = policy.targets[name].max_credential_age_s
        for account, want in wants.items():
            if want.revoked or want.review:
                held_back.extend(_held_back(policy, want))
            rotate_every = _rotation_period(policy, want, max_age)
            actual = obs.accounts.get(account)
            actions_, findings_ = _declared(
                want, actual, policy, now, issued.get((name, account)), rotate_every
            )
            if obs.unknown:  # most reads find every granted object: no call for them
                withheld = withhold(actions_, findings_, want, actual, obs.unknown)
                actions_, findings_ = withheld.actions, withheld.findings
            event = rotate_now.get((name, account))
            if (
                event
                and actual is not None
                and actual.enabled
                and want.active
                and not any(a.op is Op.ROTATE_CREDENTIAL for a in actions_)
            ):
                actions_.append(
                    Action(Op.ROTATE_CREDENTIAL, name, account, None, want.identities[0], event)
                )
            actions.extend(actions_)
            findings.extend(findings_)
            findings.extend(_posture(policy, want, actual, last_used.get((name, account)), now))
        for account, actual in obs.accounts.items():
            if account.startswith(LEASE_PREFIX):
                # The lease reaper's, not an orphan; but the prefix is lockstep's own, so an
                # account wearing it that lockstep never issued is planted, and suspended.
                found, planned = _lease_account(name, actual, leases.get((name, account)))
                findings.extend(found)
                actions.extend(planned)
                continue
            if account not in wants and actual.privileged:
                findings.append(
                    finding(
                        FindingType.PRIVILEGED_ORPHAN,
                        name,
                        account=account,
                        detail=f"{actual.privileged}; no identity declares it: reported, "
                        "never acted on (declare it in the policy to manage it)",
                    )
                )
            elif account not in wants:
                actions.extend(_orphan(name, actual, policy.rules.orphan_accounts))
                findings.append(
                    finding(
                        FindingType.ORPHAN_ACCOUNT,
                        name,
                        account=account,
                        detail=f"no identity declares it; rule: {policy.rules.orphan_accounts}",
                    )
                )
    actions = _without_accepted(actions, findings, accepted)
    actions.sort(key=Action.sort_key)
    findings.sort(key=lambda f: (f.target, f.type, f.account or "", f.entitlement or ""))
    return Plan(
        tuple(actions),
        tuple(findings),
        tuple(unreachable),
        _mass_change(actions, managed, policy),
        held_back=tuple(held_back),
        warnings=tuple(room_warnings(actions, observed)),
    )


def _declared_entitlements(policy: Policy, want: DesiredAccount) -> frozenset[str]:
    return frozenset().union(
        *(
            a.entitlements
            for name in want.identities
            for a in policy.identities[name].access
            if (a.target, a.account) == (want.target, want.account)
        )
    )


def _held_back(policy: Policy, want: DesiredAccount) -> Iterator[HeldBack]:
    """What the policy declares of this account that reviews took away."""
    if want.review is not None:
        yield HeldBack(want.target, want.account, None, want.identities, want.review)
    declared = _declared_entitlements(policy, want)
    for ent, review in sorted(want.revoked.items()):
        if ent in declared:
            yield HeldBack(want.target, want.account, ent, want.identities, review)


def _rotation_period(
    policy: Policy, want: DesiredAccount, target_max_age_s: int | None
) -> int | None:
    periods = [
        p
        for name in want.identities
        if (p := policy.identities[name].credentials.rotate_every_s) is not None
    ]
    if target_max_age_s is not None:
        periods.append(target_max_age_s)
    return min(periods) if periods else None


def _posture(
    policy: Policy,
    want: DesiredAccount,
    actual: Account | None,
    last_used: datetime | None,
    now: datetime,
) -> Iterator[Finding]:
    """Findings that need no action of lockstep's but a decision of the owner's."""
    target = policy.targets[want.target]
    for name in want.identities:
        env = policy.identities[name].environment
        if env is not None and target.environment is not None and env != target.environment:
            yield finding(
                FindingType.ENVIRONMENT_CROSSING,
                want.target,
                account=want.account,
                identity=name,
                detail=f"identity of {env} holds access on a target of {target.environment}",
            )
    if len(want.identities) > 1:
        for name in want.identities:
            yield finding(
                FindingType.SHARED_ACCOUNT,
                want.target,
                account=want.account,
                identity=name,
                detail=f"declared by {len(want.identities)} identities: "
                + ", ".join(want.identities),
            )
    dormant_after = policy.rules.dormant_after_s
    if dormant_after is None or actual is None or not actual.enabled or last_used is None:
        return
    if last_used + timedelta(seconds=dormant_after) <= now:
        for name in want.identities:
            yield finding(
                FindingType.DORMANT_IDENTITY,
                want.target,
                account=want.account,
                identity=name,
                detail=f"not seen in use since {last_used:%Y-%m-%dT%H:%M:%SZ}; "
                f"dormant after {format_duration(dormant_after)}",
            )


def _declared(
    want: DesiredAccount,
    actual: Account | None,
    policy: Policy,
    now: datetime,
    issued_at: datetime | None,
    rotate_every_s: int | None,
) -> tuple[list[Action], list[Finding]]:
    target, account = want.target, want.account
    identity = want.identities[0]
    actions: list[Action] = []
    findings: list[Finding] = []

    def act(
        op: Op,
        reason: str,
        entitlement: str | None = None,
        request: str | None = None,
        review: str | None = None,
    ) -> None:
        actions.append(
            Action(op, target, account, entitlement, identity, reason, request, review=review)
        )

    def grant(ent: str) -> None:
        requests = want.granted.get(ent)
        if requests:
            act(Op.GRANT, f"granted by request {', '.join(requests)}", ent, requests[0])
        else:
            act(Op.GRANT, "granted by the policy", ent)

    def report(type_: FindingType, detail: str, entitlement: str | None = None) -> None:
        for name in want.identities:
            findings.append(
                finding(
                    type_,
                    target,
                    account=account,
                    entitlement=entitlement,
                    identity=name,
                    detail=detail,
                )
            )

    if want.ownerless:
        report(
            FindingType.OWNERLESS_IDENTITY,
            f"owner departed; rule: {policy.rules.ownerless_identities}",
        )
    if actual is None:
        if want.active:
            act(Op.CREATE_ACCOUNT, "declared by the policy, missing in the target")
            for ent in sorted(want.entitlements):
                grant(ent)
        return actions, findings

    expired, excess, missing = _differences(actual.entitlements, want)
    for ent in expired:
        ended = want.grant_ended.get(ent)
        if ended:
            act(Op.REVOKE, f"the grant of request {', '.join(ended)} ended", ent, ended[0])
            continue
        report(FindingType.EXPIRED_ACCESS, "access expired; revoked whatever the rules say", ent)
        act(Op.REVOKE, "access expired", ent)
    declared = _declared_entitlements(policy, want) if want.revoked else frozenset()
    for ent in excess:
        review = want.revoked.get(ent)
        if review is not None:
            if ent not in declared:
                report(
                    FindingType.EXCESS_ENTITLEMENT, f"not granted; revoked by review {review}", ent
                )
            act(Op.REVOKE, f"revoked by review {review}", ent, review=review)
            continue
        report(
            FindingType.EXCESS_ENTITLEMENT,
            f"not granted by the policy; rule: {policy.rules.excess_entitlements}",
            ent,
        )
        if policy.rules.excess_entitlements is RuleAction.REVOKE:
            act(Op.REVOKE, "not granted by the policy", ent)

    if want.active:
        if not actual.enabled:
            act(Op.RESTORE_ACCOUNT, "suspended, but the policy grants it access")
        for ent in missing:
            if ent not in want.granted:
                report(
                    FindingType.MISSING_ENTITLEMENT,
                    "granted by the policy, absent in the target",
                    ent,
                )
            grant(ent)
        if rotate_every_s is not None:
            _rotation(want, actual, issued_at, rotate_every_s, now, act, report)
        return actions, findings

    if want.all_expired and actual.enabled:
        report(FindingType.EXPIRED_ACCESS, "all access on this target expired")
    # A review's suspension is proven by its own verified action (credential refused,
    # sessions ended) even where the account already looks disabled.
    if actual.enabled or want.prove_suspension:
        act(Op.SUSPEND_ACCOUNT, want.suspend_reason or "no access granted", review=want.review)
    elif actual.sessions > 0:
        act(Op.END_SESSIONS, "suspended, but sessions are still open", review=want.review)
    return actions, findings


def _differences(
    held: frozenset[str], want: DesiredAccount
) -> tuple[list[str], list[str], list[str]]:
    """What the account holds past expiry, holds beyond its grants, and lacks; each sorted."""
    if held == want.entitlements:
        # Most accounts are in step; desired_state keeps expired disjoint from granted, so
        # all three are empty and one comparison stands for three set differences.
        return [], [], []
    return (
        sorted(held & want.expired),
        sorted(held - want.entitlements - want.expired),
        sorted(want.entitlements - held),
    )


def _rotation(
    want: DesiredAccount,
    actual: Account,
    issued_at: datetime | None,
    rotate_every_s: int,
    now: datetime,
    act: Callable[[Op, str], None],
    report: Callable[[FindingType, str], None],
) -> None:
    period = format_duration(rotate_every_s)
    if issued_at is None:
        # Lockstep never issued this credential: rotating it unasked could cut off a workload
        # that has no sink to receive the new one, so this is reported for `lockstep rotate`.
        report(FindingType.STALE_CREDENTIAL, f"credential age unknown; rotate every {period}")
    elif issued_at + timedelta(seconds=rotate_every_s) <= now:
        report(
            FindingType.STALE_CREDENTIAL,
            f"credential issued {issued_at:%Y-%m-%dT%H:%M:%SZ}; rotate every {period}",
        )
        if actual.enabled:
            act(Op.ROTATE_CREDENTIAL, "credential older than its rotation period")


def _lease_account(
    target: str, actual: Account, status: str | None
) -> tuple[list[Finding], list[Action]]:
    if status is None:
        detail = "bears lockstep's lease prefix but lockstep never issued it (no lease record)"
        reason = "lease impostor: suspended, since lockstep never deletes what it did not make"
        found = finding(FindingType.LEASE_IMPOSTOR, target, account=actual.name, detail=detail)
        return [found], list(_orphan(target, actual, RuleAction.SUSPEND, reason))
    if status == "failed":
        detail = "lease ended but its account is still present: the reaper could not remove it"
        return [
            finding(FindingType.UNVERIFIED_REVOCATION, target, account=actual.name, detail=detail)
        ], []
    return [], []


def _orphan(
    target: str, actual: Account, rule: RuleAction, reason: str | None = None
) -> Iterator[Action]:
    reason = reason or f"orphan account; rule orphan_accounts: {rule}"
    if rule is RuleAction.DELETE:
        yield Action(Op.DELETE_ACCOUNT, target, actual.name, reason=reason)
    elif rule is RuleAction.SUSPEND:
        if actual.enabled:
            yield Action(Op.SUSPEND_ACCOUNT, target, actual.name, reason=reason)
        elif actual.sessions > 0:
            yield Action(Op.END_SESSIONS, target, actual.name, reason=reason)


# What a risk acceptance holds back: the remediation a finding would otherwise get. Expired
# access is not among them: an expiry written in the policy is the policy's own decision.
_ACCEPTABLE: Mapping[FindingType, frozenset[Op]] = {
    FindingType.EXCESS_ENTITLEMENT: frozenset({Op.REVOKE}),
    FindingType.ORPHAN_ACCOUNT: frozenset({Op.SUSPEND_ACCOUNT, Op.DELETE_ACCOUNT, Op.END_SESSIONS}),
    FindingType.OWNERLESS_IDENTITY: frozenset({Op.SUSPEND_ACCOUNT, Op.END_SESSIONS}),
    FindingType.STALE_CREDENTIAL: frozenset({Op.ROTATE_CREDENTIAL}),
}


def _without_accepted(
    actions: list[Action], findings: list[Finding], accepted: AbstractSet[str]
) -> list[Action]:
    if not accepted:
        return actions
    held = {
        (f.target, f.account, f.entitlement, op)
        for f in findings
        if f.id in accepted
        for op in _ACCEPTABLE.get(f.type, ())
    }
    return [a for a in actions if (a.target, a.account, a.entitlement, a.op) not in held]


def _mass_change(actions: list[Action], managed: int, policy: Policy) -> MassChange | None:
    removals = sum(a.op in (Op.SUSPEND_ACCOUNT, Op.DELETE_ACCOUNT) for a in actions)
    limit = policy.rules.mass_change_limit
    if removals > policy.rules.mass_change_floor and removals > limit * max(managed, 1):
        return MassChange(removals, managed, limit)
    return None
