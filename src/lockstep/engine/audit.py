"""The whole-state check behind ``lockstep verify``: live state against the policy, and every
credential lockstep took away tried again; journaled as one verification.

``verify`` and ``plan`` agree: the state is in sync when the plan of the same read has nothing
left for apply to do (no action, no target unread) and every probe is as expected. A
difference the rules only report (``excess_entitlements: report``), or whose risk is
accepted, is listed as a finding and fails nothing; ``strict`` fails on any finding that is
not accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from lockstep.connectors.base import Credential, ProbeResult, Session
from lockstep.credentials.vault import Vault
from lockstep.engine.delivered import sink_checks
from lockstep.engine.observe import Observer
from lockstep.engine.probes import ProbeTask
from lockstep.engine.probes import probe_all as probe_all_tasks
from lockstep.engine.reconcile import lease_statuses, observe
from lockstep.engine.verify import REAL_TIME, Inconclusive, Timer, propagation_window
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
    *,
    probe_all: bool = False,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Verification:
    """Read every target again (one read each), plan against it, compare it with
    ``desired`` and probe the credentials that need it (``probe_checks``, and each sink's),
    side by side; the verdict and every failed check are journaled. ``progress`` hears how
    many probes of each round are done out of how many."""
    seen = observe(ws, observer, desired)
    checks = reconcile_checks(state_checks(ws.policy, desired, seen.observed), seen.plan)
    # Not a difference the rules may only report: a planted account is drift until gone.
    checks += impostor_checks(seen.observed, lease_statuses(ws, seen.observed))
    windows = {
        n: propagation_window(ws.policy.targets[n], c) for n, c in observer.connectors.items()
    }
    checks += probe_checks(
        observer.sessions,
        ws.vault,
        desired,
        seen.observed,
        windows,
        probe_all=probe_all,
        progress=progress,
    )
    checks += unfinished_checks(ws.vault)
    checks += sink_checks(seen.sinks, observer.sessions, windows, progress=progress)
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
    *,
    probe_all: bool = False,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[Check]:
    """Every credential someone may hold is tried, as many at a time as each target takes:
    each one lockstep retired must be refused; the current one must be accepted where the
    account should work and refused where it should not. A credential nobody was handed
    needs no login to prove anything the read has not: the current one of an account that
    should work and was never rotated (where it went to a sink, ``sink_checks`` proves what
    the sink holds), and the current one (a suspension password) of an account that should
    not work and reads back suspended or absent. ``probe_all`` tries those too."""
    tasks: list[ProbeTask] = []
    labels: list[tuple[str, str, str, ProbeResult]] = []
    for name, obs in sorted(observed.items()):
        session = sessions.get(name)
        if not isinstance(obs, Snapshot) or session is None:
            continue
        wants = desired.for_target(name)
        held = vault.held(name)  # one query per target
        for account in sorted(set(_not_leases(obs.accounts)) | set(wants)):
            current, retired = held.get(account, (None, []))
            if current is None:
                continue
            want = wants.get(account)
            read = obs.accounts.get(account)
            should_work = want is not None and want.active and read is not None
            tries = [(c, ProbeResult.REFUSED) for c in retired]
            if should_work:
                needed = probe_all or bool(retired)
            else:
                needed = probe_all or (read is not None and read.enabled)
            if needed:
                expect = ProbeResult.ACCEPTED if should_work else ProbeResult.REFUSED
                tries.insert(0, (current, expect))
            for stored, expect in tries:
                cred = Credential(stored.username, stored.secret)
                tasks.append(ProbeTask(session, cred, expect, windows.get(name, 0.0)))
                labels.append((name, account, f"credential {stored.fingerprint}", expect))
    answers = probe_all_tasks(tasks, timer, lambda done: progress(done, len(tasks)))
    checks = []
    for (name, account, label, expect), answer in zip(labels, answers, strict=True):
        got = f"unknown ({answer})" if isinstance(answer, Inconclusive) else str(answer)
        checks.append(
            Check(name, account, None, f"{label} {expect}", f"{label} {got}", got == expect)
        )
    return checks
