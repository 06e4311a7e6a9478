"""What lockstep can assess of a control, each check a pure function of the report's facts.

A check passes only with evidence (journal entries); it fails when the facts show the
control is not met beyond what the findings say; and it is ``unknown`` when lockstep lacks
what it would need to tell, which it then names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lockstep.evidence.inventory import identity_kind, identity_sponsor
from lockstep.evidence.journal_summary import JournalSummary, Ref
from lockstep.model import OwnerStatus, Policy

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"


@dataclass(frozen=True)
class Facts:
    policy: Policy
    journal: JournalSummary
    passes: Mapping[str, datetime]  # when each target was last read in full
    unreachable: frozenset[str]  # targets whose last read failed, or never read
    issued: Mapping[tuple[str, str], datetime]  # lockstep-issued current credentials
    used: Mapping[tuple[str, str], datetime]
    figures: Mapping[str, Any]  # by id; see report.FIGURES
    reviews: list[Any] | None = None  # governance: None until it exists


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    detail: str
    evidence: list[Ref] = field(default_factory=list)
    figures: tuple[str, ...] = ()  # ids of the report figures this check rests on


def _result(
    name: str, evidence: list[Ref], passed: str, missing: str, figures: tuple[str, ...] = ()
) -> CheckResult:
    if evidence:
        return CheckResult(name, PASS, passed, evidence, figures)
    return CheckResult(name, UNKNOWN, missing, [], figures)


def inventory(f: Facts) -> CheckResult:
    unread = sorted(set(f.policy.targets) - set(f.passes))
    if unread:
        return CheckResult(
            "inventory", UNKNOWN, f"never read in full: {', '.join(unread)} (run lockstep plan)"
        )
    return _result(
        "inventory",
        f.journal.refs("verification_in_sync", "change_verified"),
        f"every account of the {len(f.policy.targets)} target(s) read and matched to the policy",
        "no verification in the journal yet: run lockstep verify or lockstep run",
        ("targets_read", "nhi_accounts"),
    )


def ownership(f: Facts) -> CheckResult:
    share = f.figures["owner_active_share"]
    if share is not None and share < 1:
        return CheckResult(
            "ownership",
            FAIL,
            f"{f.figures['identities_without_active_owner']} identit(ies) without an active owner",
            figures=("owner_active_share",),
        )
    return _result(
        "ownership",
        f.journal.refs("policy_in_force", "verification_in_sync"),
        "every identity has an owner whose status is active",
        "no pass or verification in the journal yet",
        ("owner_active_share",),
    )


def least_privilege(f: Facts) -> CheckResult:
    unproven = [r for k, r in f.journal.unproven.items() if k[2] not in ("None", "lease")]
    if unproven:
        return CheckResult(
            "least_privilege",
            FAIL,
            f"{len(unproven)} revocation(s) never proven",
            unproven[-20:],
            ("revocations_verified", "revocations_attempted"),
        )
    return _result(
        "least_privilege",
        f.journal.refs("verification_in_sync", "removal_verified"),
        "held entitlements match the policy; every revocation proven",
        "no verification or verified revocation in the journal yet",
        ("revocations_verified", "revocations_attempted", "excess_entitlements"),
    )


def offboarding(f: Facts) -> CheckResult:
    if f.journal.unproven:
        refs = list(f.journal.unproven.values())
        return CheckResult(
            "offboarding",
            FAIL,
            f"{len(refs)} removal(s) attempted and never proven",
            refs[-20:],
            ("revocations_verified", "revocations_attempted"),
        )
    return _result(
        "offboarding",
        f.journal.refs("removal_verified", "verification_in_sync"),
        "every removal proven: target read back, old credential refused, sessions gone",
        "no verified removal or verification in the journal yet",
        ("revocations_verified", "revocations_attempted", "remediation_p50_s"),
    )


def rotation(f: Facts) -> CheckResult:
    if not f.issued:
        return CheckResult("rotation", UNKNOWN, "no credential issued by lockstep yet")
    return _result(
        "rotation",
        f.journal.refs("rotation_verified", "probe"),
        "credentials issued by lockstep, each proven working and the previous refused",
        "no verified credential issue in the journal",
        ("credential_age_p50_d", "credential_age_p95_d", "credential_age_max_d"),
    )


def expiry(f: Facts) -> CheckResult:
    bounded = any(a.expires for i in f.policy.identities.values() for a in i.access)
    if not bounded and not f.journal.count("lease_issued"):
        return CheckResult("expiry", UNKNOWN, "no time-bound access (expires:, leases) to assess")
    return _result(
        "expiry",
        f.journal.refs("expiry_enforced", "lease_ended", "verification_in_sync"),
        "time-bound access removed at expiry, and proven removed",
        "no expiry enforced or verification in the journal yet",
        ("leases_ended",),
    )


def monitoring(f: Facts) -> CheckResult:
    return _result(
        "monitoring",
        f.journal.refs("service_started", "verification"),
        "targets read continuously by lockstep run, and verified by lockstep verify",
        "neither lockstep run nor lockstep verify in the journal",
        ("remediation_p50_s", "remediation_p99_s", "targets_read"),
    )


def usage(f: Facts) -> CheckResult:
    if f.policy.rules.dormant_after_s is None:
        return CheckResult(
            "usage", UNKNOWN, "unused access is not looked for: set rules.dormant_after"
        )
    if not f.used:
        return CheckResult("usage", UNKNOWN, "no target reported the use of any account yet")
    return _result(
        "usage",
        f.journal.refs("verification", "policy_in_force"),
        f"use observed for {len(f.used)} account(s); dormant access is a finding",
        "no pass or verification in the journal yet",
        ("accounts_with_observed_use",),
    )


def audit_trail(f: Facts) -> CheckResult:
    if not f.journal.chain.ok:
        return CheckResult(
            "audit_trail", FAIL, f"the journal does not verify: {f.journal.chain.reason}"
        )
    return _result(
        "audit_trail",
        f.journal.refs("verified", "verification"),
        f"every action journaled before and after, {f.journal.chain.entries} entries chained",
        "the journal holds no action yet",
        ("journal_entries",),
    )


def environment(f: Facts) -> CheckResult:
    if not any(t.environment for t in f.policy.targets.values()):
        return CheckResult(
            "environment", UNKNOWN, "no target says its environment: set environment:"
        )
    return _result(
        "environment",
        f.journal.refs("verification_in_sync", "policy_in_force"),
        "each identity's environment compared with its targets'",
        "no pass or verification in the journal yet",
    )


def sharing(f: Facts) -> CheckResult:
    return _result(
        "sharing",
        f.journal.refs("verification_in_sync", "policy_in_force"),
        "accounts declared by more than one identity are findings",
        "no pass or verification in the journal yet",
    )


def policy_enforced(f: Facts) -> CheckResult:
    return _result(
        "policy_enforced",
        f.journal.refs("policy_in_force", "change_verified", "verification_in_sync"),
        "the policy in git is what lockstep enforced and verified",
        "no plan, pass or verification in the journal yet",
        ("findings_open",),
    )


def probes(f: Facts) -> CheckResult:
    return _result(
        "probes",
        f.journal.refs("probe"),
        "credentials tried by real logins: issued ones accepted, removed ones refused",
        "no credential probe in the journal yet",
    )


def reviews(f: Facts) -> CheckResult:
    figures = ("reviewed_on_time_share",)
    if not f.reviews:
        if not f.policy.rules.review_every_s:
            return CheckResult(
                "reviews",
                UNKNOWN,
                "access is not reviewed periodically: set rules.review_every",
                figures=figures,
            )
        return CheckResult("reviews", UNKNOWN, "no access review has come due yet", figures=figures)
    overdue = [r for r in f.reviews if r.status == "overdue"]
    share = f.figures.get("reviewed_on_time_share")
    if overdue or (share is not None and share < 1):
        on_time = "none" if share is None else f"{share:.0%}"
        return CheckResult(
            "reviews",
            FAIL,
            f"{len(overdue)} review(s) overdue; {on_time} of the reviews due decided on time",
            f.journal.refs("review_decided"),
            figures,
        )
    if share is None:
        return CheckResult("reviews", UNKNOWN, "no review decided or due yet", figures=figures)
    return _result(
        "reviews",
        f.journal.refs("review_decided", "review_verified"),
        "every review decided by a person by its due time; every revoke proven in the target",
        "no review decision in the journal yet",
        figures,
    )


def agents(f: Facts) -> CheckResult:
    found = [i for i in f.policy.identities.values() if identity_kind(i) == "agent"]
    if not found:
        return CheckResult("agents", UNKNOWN, "no identity of kind agent in the policy")
    contacts = {
        c for o in f.policy.owners.values() if o.status is OwnerStatus.ACTIVE for c in o.contacts
    }
    orphaned = [i.name for i in found if identity_sponsor(i) not in contacts]
    if orphaned:
        return CheckResult(
            "agents",
            FAIL,
            f"agents without an active sponsor: {', '.join(sorted(orphaned))}",
            figures=("sponsor_active_share",),
        )
    return _result(
        "agents",
        f.journal.refs("lease_issued", "verification_in_sync"),
        f"{len(found)} agent(s), each with an active sponsor",
        "no lease or verification in the journal yet",
        ("sponsor_active_share",),
    )


def workload_binding(f: Facts) -> CheckResult:
    bound = [i for i in f.policy.identities.values() if i.workload is not None]
    if not bound:
        return CheckResult(
            "workload_binding",
            UNKNOWN,
            "no identity is bound to a workload (workload: issuer, subject, audience)",
        )
    return _result(
        "workload_binding",
        f.journal.refs("workload_lease"),
        f"{len(bound)} identit(ies) bound to a workload whose signed token is verified",
        "no lease issued to a workload in the journal yet",
    )


CHECK_FUNCTIONS: Mapping[str, Callable[[Facts], CheckResult]] = {
    "agents": agents,
    "audit_trail": audit_trail,
    "environment": environment,
    "expiry": expiry,
    "inventory": inventory,
    "least_privilege": least_privilege,
    "monitoring": monitoring,
    "offboarding": offboarding,
    "ownership": ownership,
    "policy_enforced": policy_enforced,
    "probes": probes,
    "reviews": reviews,
    "rotation": rotation,
    "sharing": sharing,
    "usage": usage,
    "workload_binding": workload_binding,
}
