"""Batches on a real slapd: one modify per group, read back in one search; a change the
directory refuses fails alone; hostile names stay names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockstep.connectors.base import ActionFailed, Change, Credential, ProbeResult, Scope
from lockstep.connectors.ldap.connector import LdapConnectorType, LdapSession
from lockstep.model import Op
from lockstep.secret import generate_password
from services.slapd import (  # noqa: F401 - the fixtures
    LdapTarget,
    ldap_target_fixture,
    slapd_server_fixture,
)

CONNECTOR = LdapConnectorType()


@pytest.fixture
def session(ldap_target: LdapTarget) -> Iterator[LdapSession]:
    opened = CONNECTOR.open(ldap_target.target, Scope(frozenset(), frozenset()))
    yield opened
    opened.close()


def _create(session: LdapSession, *names: str) -> dict[str, Credential]:
    made = session.apply_batch(
        [Change(Op.CREATE_ACCOUNT, n, None, generate_password()) for n in names]
    )
    assert all(isinstance(m, Credential) for m in made), made
    return {n: m for n, m in zip(names, made, strict=True) if isinstance(m, Credential)}


def test_grants_of_one_group_go_in_one_modify_and_a_bad_one_fails_alone(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    names = ("svc0", "svc1", "a,b*(x)")
    _create(session, *names)
    outcomes = session.apply_batch(
        [
            *(Change(Op.GRANT, n, "group:readers") for n in names),
            Change(Op.GRANT, "svc0", "group:no-such-group"),
            Change(Op.GRANT, "ghost", "group:readers"),  # no such account
            Change(Op.GRANT, "svc1", "group:writers"),
        ]
    )
    assert outcomes[:3] == [None, None, None] and outcomes[5] is None
    assert isinstance(outcomes[3], ActionFailed) and "does not exist" in str(outcomes[3])
    assert isinstance(outcomes[4], ActionFailed) and "ghost" in str(outcomes[4])
    read = session.read_accounts([*names, "ghost"])
    assert read["ghost"] is None
    assert read["svc0"] is not None and read["svc0"].entitlements == {"group:readers"}
    assert read["svc1"] is not None
    assert read["svc1"].entitlements == {"group:readers", "group:writers"}
    assert read["a,b*(x)"] is not None and read["a,b*(x)"].entitlements == {"group:readers"}


def test_revokes_of_one_group_go_together_even_when_one_was_its_last_member(
    session: LdapSession,
) -> None:
    names = ("svc0", "svc1")
    _create(session, *names)
    session.apply_batch([Change(Op.GRANT, n, "group:auditors") for n in names])
    outcomes = session.apply_batch(
        [Change(Op.REVOKE, n, "group:auditors") for n in (*names, "never-a-member")]
    )
    assert outcomes == [None, None, None]
    read = session.read_accounts(names)
    assert all(a is not None and a.entitlements == frozenset() for a in read.values())


def test_a_batch_of_suspensions_refuses_old_and_new_passwords(session: LdapSession) -> None:
    made = _create(session, "svc0", "svc1")
    suspension = {n: generate_password() for n in made}
    outcomes = session.apply_batch(
        [Change(Op.SUSPEND_ACCOUNT, n, None, s) for n, s in suspension.items()]
        + [Change(Op.SUSPEND_ACCOUNT, "ghost", None, generate_password())]
    )
    assert all(isinstance(o, Credential) for o in outcomes[:2])
    assert isinstance(outcomes[2], ActionFailed)
    for name, credential in made.items():
        assert session.probe(credential) is ProbeResult.REFUSED
        assert session.probe(Credential(name, suspension[name])) is ProbeResult.REFUSED
    read = session.read_accounts(list(made))
    assert all(a is not None and not a.enabled for a in read.values())
