"""The whole-state check behind ``lockstep verify``: live state against the policy, and every
credential lockstep took away tried again; journaled as one verification.

``verify`` and ``plan`` agree: the state is in sync when the plan of the same read has nothing
left for apply to do (no action, no target unread) and every probe is as expected. A
difference the rules only report (``excess_entitlements: report``), or whose risk is
accepted, is listed as a finding and fails nothing; ``strict`` fails on any finding that is
not accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from lockstep.connectors.base import Credential, ProbeResult, Session
from lockstep.credentials.vault import Vault
from lockstep.engine.delivered import sink_checks
from lockstep.engine.observe import Observer
from lockstep.engine.progress import SILENT, Progress
from lockstep.engine.reconcile import lease_statuses, observe
from lockstep.engine.verify import REAL_TIME, Inconclusive, Timer, probe_until, propagation_window
from lockstep.engine.workspace import Workspace
from lockstep.model import (
    LEASE_PREFIX,
    Check,
    Desired,
    Observation,
    Plan,
    Policy,
    RuleAction,
    Snapshot,
)
from lockstep.store.findings import FindingRecord

ACCEPTED = "accepted"


@dataclass(frozen=True)
class Verification:
    checks: list[Check]
    plan: Plan  # of the same read: what apply would still do, and the findings
    findings: list[FindingRecord]  # the ledger's records of the plan's findings
    strict: bool = False

    @property
    def open_findings(self) -> list[FindingRecord]:
        return [r for r in self.findings if r.status != ACCEPTED]

    @property
    def in_sync(self) -> bool:
        settled = all(c.ok for c in self.checks) and not self.plan.actions
        settled = settled and not self.plan.unreachable
        return settled and not (self.strict and self.open_findings)


def verify_state(
    ws: Workspace,
    observer: Observer,
    desired: Desired,
    strict: bool = False,
    progress: Progress = SILENT,
) -> Verification:
    """Read every target again, plan against it, compare it with ``desired`` and probe the
    credentials; the verdict and every failed check are journaled."""
    seen = observe(ws, observer, desired)
    checks = reconcile_checks(state_checks(ws.policy, desired, seen.observed), seen.plan)
    # Not a difference the rules may only report: a planted account is drift until gone.
    checks += impostor_checks(seen.observed, lease_statuses(ws, seen.observed))
    windows = {
        n: propagation_window(ws.policy.targets[n], c) for n, c in observer.connectors.items()
    }
    checks += probe_checks(
        observer.sessions, ws.vault, desired, seen.observed, windows, progress=progress
    )
    checks += unfinished_checks(ws.vault)
    checks += sink_checks(seen.sinks, observer.sessions, windows)
    ids = {f.id for f in seen.plan.findings}
    verification = Verification(
        checks, seen.plan, [r for r in seen.findings if r.id in ids], strict
    )
    ws.journal.append(
        "verification",
        {
            "in_sync": verification.in_sync,
            "strict": strict,
            "checks": len(checks),
            "pending_actions": len(seen.plan.actions),
            "open_findings": len(verification.open_findings),
            "failed": [
                {
                    "target": c.target,
                    "account": c.account,
                    "entitlement": c.entitlement,
                    "expected": c.expected,
                    "actual": c.actual,
                }
                for c in checks
                if not c.ok
            ],
        },
    )
    return verification


def reconcile_checks(checks: Sequence[Check], plan: Plan) -> list[Check]:
    """The state checks as the plan judges them: a difference no action of the plan
    addresses is one the rules only report (or a risk accepted), not drift; an action no
    failed check explains (a rotation that is due) gets a failed check of its own. A target
    that could not be read stays failed."""
    actions = plan.actions
    pending = {(a.target, a.account, a.entitlement) for a in actions}
    accounts = {(a.target, a.account) for a in actions if a.entitlement is None}
    judged = []
    explained: set[tuple[str, str, str | None]] = set()
    for c in checks:
        key = (c.target, c.account, c.entitlement)
        if c.ok or c.target in plan.unreachable:
            judged.append(c)
        elif key in pending or (c.target, c.account) in accounts:
            judged.append(c)
            explained.add(key)
        else:
            judged.append(replace(c, actual=f"{c.actual} (reported, not acted on)", ok=True))
    for a in actions:
        key = (a.target, a.account, a.entitlement)
        if key not in explained:
            what = f"{a.op} planned: {a.reason}"
            judged.append(Check(a.target, a.account, a.entitlement, "nothing to do", what, False))
    return judged


def unfinished_checks(vault: Vault) -> list[Check]:
    """A credential change a crash interrupted is not in sync until a pass settles it."""
    return [
        Check(
            p.target,
            p.account,
            None,
            "no unfinished credential change",
            f"{p.op} unfinished since {p.created_at:%Y-%m-%dT%H:%M:%SZ} (apply settles it)",
            False,
        )
        for p in vault.pending()
    ]


def impostor_checks(
    observed: Mapping[str, Observation], leases: Mapping[tuple[str, str], str]
) -> list[Check]:
    """``leases``: the lease record's status of each prefixed account that has one (see
    ``make_plan``); a prefixed account without a record fails until it is gone, suspended
    or not."""
    checks = []
    for name, obs in sorted(observed.items()):
        if not isinstance(obs, Snapshot):
            continue
        for account in sorted(set(obs.accounts) - set(_not_leases(obs.accounts))):
            if (name, account) not in leases:
                state = "enabled" if obs.accounts[account].enabled else "suspended"
                checks.append(
                    Check(name, account, None, "absent", f"lease impostor {state}", False)
                )
    return checks


def state_checks(
    policy: Policy, desired: Desired, observed: Mapping[str, Observation]
) -> list[Check]:
    checks: list[Check] = []
    for name in sorted(policy.targets):
        obs = observed.get(name)
        if not isinstance(obs, Snapshot):
            error = obs.error if obs is not None else "not read"
            checks.append(Check(name, "*", None, "readable", f"unreachable: {error}", False))
            continue
        wants = desired.for_target(name)
        for account, want in sorted(wants.items()):
            actual = obs.accounts.get(account)
            expected = "enabled" if want.active else "suspended"
            if actual is None:
                checks.append(
                    Check(name, account, None, expected, "absent", expected == "suspended")
                )
                continue
            state = "enabled" if actual.enabled else "suspended"
            checks.append(Check(name, account, None, expected, state, expected == state))
            checks.extend(
                _entitlement_checks(
                    name, account, want.entitlements, actual.entitlements, want.active
                )
            )
        for account in sorted(set(_not_leases(obs.accounts)) - set(wants)):
            checks.append(_orphan_check(name, account, obs, policy.rules.orphan_accounts))
    return checks


def _not_leases(accounts: Iterable[str]) -> Iterator[str]:
    """Lease accounts are the lease manager's to prove (``lockstep leases``, the reaper)."""
    return (a for a in accounts if not a.startswith(LEASE_PREFIX))


def _entitlement_checks(
    target: str, account: str, wanted: frozenset[str], held: frozenset[str], active: bool
) -> Iterable[Check]:
    for ent in sorted(wanted | held):
        actual = "granted" if ent in held else "absent"
        # A suspended account keeps what it was granted, so that fixing the policy restores it;
        # only what the policy does not grant is drift there.
        expected = "granted" if ent in wanted else "absent"
        if not active and ent in wanted:
            expected = actual
        yield Check(target, account, ent, expected, actual, expected == actual)


def _orphan_check(target: str, account: str, obs: Snapshot, rule: RuleAction) -> Check:
    """An orphan is drift unless the rule says suspend and it is suspended with no session
    left: then the target is exactly as the policy says it should be."""
    actual = obs.accounts[account]
    if actual.privileged:
        # Never acted on, whatever the rule: left as found is as the policy says.
        return Check(target, account, None, "privileged orphan left alone", "left alone", True)
    idle = actual.sessions <= 0
    state = "suspended" if not actual.enabled and idle else "enabled"
    expected = {RuleAction.SUSPEND: "suspended", RuleAction.DELETE: "absent"}.get(
        rule, "declared by an identity"
    )
    return Check(target, account, None, f"orphan {expected}", f"orphan {state}", expected == state)


def probe_checks(
    sessions: Mapping[str, Session],
    vault: Vault,
    desired: Desired,
    observed: Mapping[str, Observation],
    windows: Mapping[str, float],
    timer: Timer = REAL_TIME,
    progress: Progress = SILENT,
) -> list[Check]:
    """Every credential lockstep retired must still be refused; the current credential of an
    account that should work must still work, and of one that should not, must not."""
    checks = []
    held = vault.issued_times().keys()  # one read, instead of two per account without any
    work = []
    for name, obs in sorted(observed.items()):
        session = sessions.get(name)
        if not isinstance(obs, Snapshot) or session is None:
            continue
        wants = desired.for_target(name)
        accounts = sorted(set(_not_leases(obs.accounts)) | set(wants))
        work += [(name, session, a, wants.get(a), a in obs.accounts) for a in accounts]
    work = [w for w in work if (w[0], w[2]) in held]
    progress.start(len(work))
    for name, session, account, want, present in work:
        should_work = want is not None and want.active and present
        current = vault.current(name, account)
        tries = [(c, ProbeResult.REFUSED) for c in vault.retired(name, account)]
        if current is not None:
            expect = ProbeResult.ACCEPTED if should_work else ProbeResult.REFUSED
            tries.insert(0, (current, expect))
        for stored, expect in tries:
            cred = Credential(stored.username, stored.secret)
            label = f"credential {stored.fingerprint}"
            try:
                got = str(probe_until(session, cred, expect, windows.get(name, 0.0), timer))
            except Inconclusive as exc:
                got = f"unknown ({exc})"
            checks.append(
                Check(name, account, None, f"{label} {expect}", f"{label} {got}", got == expect)
            )
        progress.advance(f"probed {name}/{account}")
    return checks
