"""Which OWASP NHI risk an escalation path is, from what its finding records. Pure."""

from __future__ import annotations

from lockstep.model import Finding

# Written into the detail of a finding whose paths read a sink or a secret store.
THROUGH_SECRETS = "through a sink or secret store"


def escalation_nhi(finding: Finding) -> tuple[str, ...]:
    """A person's account reaching an NHI's credential (NHI10), a readable sink or secret
    store (NHI2), else an overprivileged NHI (NHI5)."""
    if (finding.entitlement or "").startswith("from person "):
        return ("NHI10",)
    if THROUGH_SECRETS in finding.detail:
        return ("NHI2",)
    return ("NHI5",)
