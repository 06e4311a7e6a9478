"""What each finding type means: severity, OWASP NHI Top 10 (2025) and NIST CSF 2.0.

NIST CSF 2.0: access findings map to PR.AA-05 (access permissions managed, least
privilege), credential findings to PR.AA-01 (identities and credentials managed), and what
is about monitoring to DE.CM-09.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from lockstep.model import Finding, FindingType, Severity
from lockstep.paths.risks import escalation_nhi

# A finding's lifecycle (``store.findings`` keeps it across runs).
OPEN = "open"
REMEDIATED = "remediated"
VERIFIED = "verified"
ACCEPTED = "accepted"
RESOLVED = "resolved"
STATUSES = (OPEN, REMEDIATED, VERIFIED, ACCEPTED, RESOLVED)
HELD = (OPEN, REMEDIATED, ACCEPTED)  # the finding is still true as far as lockstep knows
MAX_ACCEPTANCE = timedelta(days=365)  # the longest a risk acceptance may run


@dataclass(frozen=True, slots=True)
class FindingKind:
    severity: Severity
    owasp_nhi: tuple[str, ...]
    nist_csf: tuple[str, ...]
    summary: str


OWASP_NHI_2025: Mapping[str, str] = {
    "NHI1": "Improper Offboarding",
    "NHI2": "Secret Leakage",
    "NHI3": "Vulnerable Third-Party NHI",
    "NHI4": "Insecure Authentication",
    "NHI5": "Overprivileged NHI",
    "NHI6": "Insecure Cloud Deployment Configurations",
    "NHI7": "Long-Lived Secrets",
    "NHI8": "Environment Isolation",
    "NHI9": "NHI Reuse",
    "NHI10": "Human Use of NHI",
}

_ACCESS = ("PR.AA-05",)
_CREDENTIAL = ("PR.AA-01",)
_MONITORING = ("DE.CM-09",)

KINDS: Mapping[FindingType, FindingKind] = {
    FindingType.ORPHAN_ACCOUNT: FindingKind(
        Severity.HIGH, ("NHI1",), _ACCESS, "account in the target that no identity declares"
    ),
    FindingType.EXCESS_ENTITLEMENT: FindingKind(
        Severity.HIGH, ("NHI5",), _ACCESS, "entitlement held that the policy does not grant"
    ),
    FindingType.MISSING_ENTITLEMENT: FindingKind(
        Severity.LOW, (), _ACCESS, "entitlement the policy grants that the target lacks"
    ),
    FindingType.EXPIRED_ACCESS: FindingKind(
        Severity.HIGH, ("NHI1", "NHI7"), _ACCESS, "access past its expiry still in place"
    ),
    FindingType.OWNERLESS_IDENTITY: FindingKind(
        Severity.MEDIUM, ("NHI1",), _ACCESS, "identity whose owner has departed"
    ),
    FindingType.STALE_CREDENTIAL: FindingKind(
        Severity.MEDIUM, ("NHI7",), _CREDENTIAL, "credential older than its rotation period"
    ),
    FindingType.DORMANT_IDENTITY: FindingKind(
        Severity.LOW, ("NHI1",), _ACCESS, "identity not used for longer than allowed"
    ),
    FindingType.UNVERIFIED_REVOCATION: FindingKind(
        Severity.CRITICAL, ("NHI1",), (*_ACCESS, *_MONITORING), "removed access not proven gone"
    ),
    FindingType.ENVIRONMENT_CROSSING: FindingKind(
        Severity.HIGH, ("NHI8",), _ACCESS, "identity holding access in another environment"
    ),
    FindingType.SHARED_ACCOUNT: FindingKind(
        Severity.MEDIUM, ("NHI9",), _CREDENTIAL, "one account used by several identities"
    ),
    FindingType.TARGET_UNREACHABLE: FindingKind(
        Severity.HIGH, (), _MONITORING, "target could not be read: its state is unknown"
    ),
    FindingType.UNDELIVERED_CREDENTIAL: FindingKind(
        Severity.HIGH,
        ("NHI7",),
        _CREDENTIAL,
        "a sink does not hold the credential the target accepts",
    ),
    FindingType.LEASE_IMPOSTOR: FindingKind(
        Severity.HIGH,
        ("NHI1", "NHI5"),
        (*_ACCESS, *_MONITORING),
        "account under lockstep's lease prefix that lockstep never issued",
    ),
    FindingType.INSECURE_TRANSPORT: FindingKind(
        Severity.MEDIUM,
        ("NHI4",),
        ("PR.AA-03",),
        "admin connection in clear text to a host other than loopback",
    ),
    FindingType.SOD_VIOLATION: FindingKind(
        Severity.HIGH, ("NHI5",), _ACCESS, "identity holding entitlements a sod rule separates"
    ),
    FindingType.GRANT_FAILED: FindingKind(
        Severity.MEDIUM, (), _ACCESS, "approved access that could not be enforced"
    ),
    FindingType.PRIVILEGED_ORPHAN: FindingKind(
        Severity.CRITICAL,
        ("NHI1", "NHI5"),
        _ACCESS,
        "privileged account no identity declares: reported, never acted on",
    ),
    FindingType.UNKNOWN_OBJECT: FindingKind(
        Severity.MEDIUM, (), _ACCESS, "entitlement naming an object the target does not have"
    ),
    FindingType.ESCALATION_PATH: FindingKind(
        Severity.HIGH,
        ("NHI5",),
        _ACCESS,
        "someone can obtain an identity's credential or privileges through the targets' own "
        "permissions",
    ),
}


def owasp_nhi(finding: Finding) -> tuple[str, ...]:
    """The OWASP NHI risks of one finding: its type's, except that an escalation path is
    NHI10 from a person's account, NHI2 through a readable sink or secret store."""
    if finding.type is FindingType.ESCALATION_PATH:
        return escalation_nhi(finding)
    return KINDS[finding.type].owasp_nhi
