"""The optional capabilities, each tested once for every connector that offers it.

Which connector offers what is itself checked, so that a capability gained or lost shows up
here. Accounts are made through the CLI, as a user makes them; the capability is then
exercised through lockstep's own session and proven by probing as a workload would.
Behaviour peculiar to one connector (AWS's two-key limit, LDAP's hashing on arrival, Redis's
rule record) stays in that connector's own capability tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from lockstep.connectors.base import (
    ActionFailed,
    AppliesBatches,
    Credential,
    HoldsTwoCredentials,
    IssuesLeaseBatches,
    IssuesLeases,
    ObservesUsage,
    ProbeResult,
    ProbesInParallel,
    Session,
    WatchesChanges,
)
from lockstep.engine.verify import probe_until
from lockstep.secret import generate_password

if TYPE_CHECKING:
    from conformance.targets import ConformanceTarget, Project

pytest_plugins = ("conformance.targets",)

# Every connector applies and reads back in batches, and takes probes side by side.
BATCHES = (AppliesBatches, ProbesInParallel)
OFFERED: dict[str, set[type]] = {
    # A role has one password: rotation is in place (docs/postgres.md).
    "postgres": {WatchesChanges, ObservesUsage, IssuesLeases, IssuesLeaseBatches, *BATCHES},
    "ldap": {WatchesChanges, ObservesUsage, HoldsTwoCredentials, *BATCHES},
    "redis": {WatchesChanges, ObservesUsage, HoldsTwoCredentials, IssuesLeases, *BATCHES},
    # IAM has no cheap change token.
    "aws": {ObservesUsage, HoldsTwoCredentials, IssuesLeases, *BATCHES},
}
HOLDING_TWO = [name for name, offered in OFFERED.items() if HoldsTwoCredentials in offered]


def test_each_connector_offers_the_capabilities_it_declares_permissions_for(
    conformance_target: ConformanceTarget,
) -> None:
    from conformance.targets import CAPABILITIES

    with conformance_target.session() as session:
        offered = {c for c in CAPABILITIES if isinstance(session, c)}
    assert offered == OFFERED[conformance_target.type]
    # ... and says what each one needs of lockstep's admin.
    assert set(conformance_target.connector.capability_permissions) == offered


def window(conformance_target: ConformanceTarget) -> float:
    return conformance_target.connector.propagation_window(conformance_target.target().settings)


def two_credentials(session: Session) -> HoldsTwoCredentials:
    assert isinstance(session, HoldsTwoCredentials)
    return session


def applied(project: Project, account: str, *entitlements: str) -> Credential:
    """The account made through the CLI; the credential delivered to its sink."""
    project.write({account: list(entitlements)})
    project.apply()
    return project.credential()


@pytest.mark.parametrize("conformance_target", HOLDING_TWO, indirect=True)
def test_an_added_credential_works_beside_the_old_one_until_the_old_is_retired(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account = conformance_target.account
    old = applied(project, account, conformance_target.entitlements[0])
    window_s = window(conformance_target)
    with conformance_target.session() as session:
        new = two_credentials(session).add_credential(account, generate_password())
        assert new.secret != old.secret
        # Delivered but not yet picked up: the workload may still use either.
        assert session.probe(old) is ProbeResult.ACCEPTED
        assert probe_until(session, new, ProbeResult.ACCEPTED, window_s) is ProbeResult.ACCEPTED

        two_credentials(session).retire_credential(account, old)
        assert probe_until(session, old, ProbeResult.REFUSED, window_s) is ProbeResult.REFUSED
        assert session.probe(new) is ProbeResult.ACCEPTED
        read = session.read_account(account)
    assert read is not None and read.enabled
    assert read.entitlements == {conformance_target.entitlements[0]}


@pytest.mark.parametrize("conformance_target", HOLDING_TWO, indirect=True)
def test_without_a_secret_a_fresh_credential_is_made(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account = conformance_target.account
    old = applied(project, account)
    window_s = window(conformance_target)
    with conformance_target.session() as session:
        new = two_credentials(session).add_credential(account, None)
        assert new.secret != old.secret
        assert probe_until(session, new, ProbeResult.ACCEPTED, window_s) is ProbeResult.ACCEPTED
    project.assert_no_secret_leaked(old, new)


@pytest.mark.parametrize("conformance_target", HOLDING_TWO, indirect=True)
def test_the_only_credential_is_never_retired(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account = conformance_target.account
    only = applied(project, account)
    with conformance_target.session() as session:
        with pytest.raises(ActionFailed):
            two_credentials(session).retire_credential(account, only)
        assert session.probe(only) is ProbeResult.ACCEPTED


@pytest.mark.parametrize("conformance_target", HOLDING_TWO, indirect=True)
def test_a_credential_of_another_account_is_not_retired(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account, other = conformance_target.account, f"{conformance_target.account}2"
    project.write({account: [], other: []})
    project.apply()
    others = project.credential("svc1")  # the second identity written
    with conformance_target.session() as session:
        two_credentials(session).add_credential(account, None)
        with pytest.raises(ActionFailed):
            two_credentials(session).retire_credential(account, others)
        assert session.probe(others) is ProbeResult.ACCEPTED


@pytest.mark.parametrize("conformance_target", HOLDING_TWO, indirect=True)
def test_adding_to_a_missing_account_fails_and_creates_nothing(
    conformance_target: ConformanceTarget,
) -> None:
    with conformance_target.session() as session:
        with pytest.raises(ActionFailed):
            two_credentials(session).add_credential(conformance_target.account, None)
        assert session.read_account(conformance_target.account) is None
