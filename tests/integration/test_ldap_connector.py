"""The LDAP connector against a real OpenLDAP slapd with the ppolicy overlay.

Every claim is checked twice where it matters: through the connector (read back, probe) and
behind its back with the directory admin, so that the connector cannot vouch for itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import ldap3
import pytest

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    GrammarError,
    ProbeResult,
    Scope,
    TargetUnreachable,
)
from lockstep.connectors.ldap.connector import LdapConnectorType, LdapSession, LdapSettings
from lockstep.demo.localpg import free_port
from lockstep.model import Target
from lockstep.secret import generate_password
from services import slapd
from services.slapd import (  # noqa: F401 - the fixtures
    LdapTarget,
    ldap_target_fixture,
    slapd_server_fixture,
)

CONNECTOR = LdapConnectorType()
NO_SCOPE = Scope(declared=frozenset(), excluded=frozenset())
HOSTILE_NAMES = [
    "a,b",
    "x=y",
    "+plus",
    "#hash",
    "back\\slash",
    'quote"s',
    "semi;colon",
    "*(wild)",
    "*",
    " leading space",
    "trailing ",
    "ünïcødé-サービス",
    "new\nline",
    "<angle>",
]


@pytest.fixture
def session(ldap_target: LdapTarget) -> Iterator[LdapSession]:
    opened = CONNECTOR.open(ldap_target.target, NO_SCOPE)
    yield opened
    opened.close()


def create(session: LdapSession, account: str) -> Credential:
    return session.create_account(account, generate_password())


def target_with(ldap: LdapTarget, **changes: object) -> Target:
    """The fixture's target with some of its settings changed, validated as the loader
    validates them."""
    settings = LdapSettings.model_validate(ldap.target.settings).model_dump()
    return replace(ldap.target, settings=LdapSettings.model_validate(settings | changes))


def entry(ldap: LdapTarget, account: str) -> dict[str, list[str]] | None:
    """The account's entry as the admin sees it, operational attributes included."""
    conn = ldap.server.connect()
    dn = f"uid={ldap3.utils.dn.escape_rdn(account)},{ldap.server.people_dn}"
    conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["*", "+"])
    found = [e for e in conn.response or [] if e["type"] == "searchResEntry"]
    conn.unbind()
    return dict(found[0]["attributes"]) if found else None


def members(ldap: LdapTarget, cn: str) -> list[str]:
    conn = ldap.server.connect()
    conn.search(
        ldap.group_dn(cn), "(objectClass=*)", search_scope=ldap3.BASE, attributes=["member"]
    )
    values = list(conn.response[0]["attributes"]["member"])
    conn.unbind()
    return values


# ---------------------------------------------------------------- offline grammar


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, "x" * 256])
def test_check_account_accepts_what_escaping_can_carry(name: str) -> None:
    CONNECTOR.check_account(name)


@pytest.mark.parametrize("name", ["", " ", "   ", "nul\x00byte", "x" * 257])
def test_check_account_rejects_empty_blank_nul_and_too_long(name: str) -> None:
    with pytest.raises(GrammarError):
        CONNECTOR.check_account(name)


# ---------------------------------------------------------------- reading


def test_an_empty_directory_reads_empty(session: LdapSession) -> None:
    snapshot = session.read()
    assert snapshot.target == "directory"
    assert snapshot.accounts == {}  # the groups' seed member is not an account


def test_entries_not_named_by_uid_are_not_accounts(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    conn = ldap_target.server.connect()
    dn = f"cn=Jane Doe,{ldap_target.server.people_dn}"
    attributes = {"cn": "Jane Doe", "sn": "Doe", "uid": "jane"}
    assert conn.add(dn, ["inetOrgPerson"], attributes)
    conn.unbind()
    assert session.read().accounts == {}


def test_an_account_without_a_password_is_not_enabled(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    conn = ldap_target.server.connect()
    assert conn.add(f"uid=nopass,{ldap_target.server.people_dn}", ["account"], {"uid": "nopass"})
    conn.unbind()
    account = session.read().accounts["nopass"]
    assert not account.enabled
    assert account.sessions == -1


def test_read_pages_through_more_entries_than_one_page(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    conn = ldap_target.server.connect()
    names = [f"bulk{i:04d}" for i in range(1001)]  # three pages of 500
    for name in names:
        conn.add(f"uid={name},{ldap_target.server.people_dn}", ["account"], {"uid": name})
        assert conn.result["result"] == 0
    conn.unbind()
    assert sorted(session.read().accounts) == names


def test_a_missing_subtree_is_unreachable_not_empty(ldap_target: LdapTarget) -> None:
    target = target_with(ldap_target, groups_dn="ou=gone,dc=example,dc=test")
    session = CONNECTOR.open(target, NO_SCOPE)
    with pytest.raises(TargetUnreachable, match="noSuchObject"):
        session.read()
    session.close()


def test_a_read_cut_short_by_a_size_limit_is_unreachable(ldap_target: LdapTarget) -> None:
    server = ldap_target.server
    robot_password = generate_password()
    conn = server.connect()
    robot_entry = {"uid": "lockstep", "userPassword": robot_password.reveal()}
    assert conn.add(
        f"uid=lockstep,{server.people_dn}", ["account", "simpleSecurityObject"], robot_entry
    )
    for i in range(501):  # slapd's default size limit is 500, paged or not
        conn.add(f"uid=bulk{i},{server.people_dn}", ["account"], {"uid": f"bulk{i}"})
    conn.unbind()
    # Bound as an ordinary entry rather than the rootDN, which no limit applies to.
    robot = target_with(
        ldap_target, bind_dn=f"uid=lockstep,{server.people_dn}", bind_password=robot_password
    )
    scope = Scope(declared=frozenset(), excluded=frozenset({"lockstep"}))
    session = CONNECTOR.open(robot, scope)
    with pytest.raises(TargetUnreachable, match=r"sizeLimitExceeded.*olcLimits"):
        session.read()
    session.close()


def test_members_are_matched_the_way_ldap_compares_dns(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    create(session, "svc")
    conn = ldap_target.server.connect()
    # Another tool wrote the member value in its own spelling: still the same entry.
    spelled = "UID=SVC, OU=People,DC=Example,dc=TEST"
    assert conn.modify(ldap_target.group_dn("readers"), {"member": [(ldap3.MODIFY_ADD, [spelled])]})
    conn.unbind()
    assert session.read().accounts["svc"].entitlements == {"group:readers"}


def test_excluded_accounts_are_never_read_nor_touched(ldap_target: LdapTarget) -> None:
    with_all = CONNECTOR.open(ldap_target.target, NO_SCOPE)
    create(with_all, "keep")
    robot = create(with_all, "robot")
    with_all.close()
    # Excluded as the directory compares uids: case and outer spaces do not matter.
    scope = Scope(declared=frozenset(), excluded=frozenset({" ROBOT "}))
    session = CONNECTOR.open(ldap_target.target, scope)
    try:
        assert set(session.read().accounts) == {"keep"}
        assert session.read_account("robot") is None
        with pytest.raises(ActionFailed, match="excluded"):
            session.delete_account("robot")
        with pytest.raises(ActionFailed, match="excluded"):
            session.rotate_credential("robot", generate_password())
        assert session.probe(robot) is ProbeResult.ACCEPTED
    finally:
        session.close()
    assert entry(ldap_target, "robot") is not None


# ---------------------------------------------------------------- accounts and credentials


def test_create_then_the_credential_is_accepted(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    credential = create(session, "payments-api")
    assert credential.username == "payments-api"
    assert session.probe(credential) is ProbeResult.ACCEPTED
    wrong = Credential("payments-api", generate_password())
    assert session.probe(wrong) is ProbeResult.REFUSED
    account = session.read_account("payments-api")
    assert account is not None
    assert account.enabled
    assert account.entitlements == frozenset()
    stored = entry(ldap_target, "payments-api")
    assert stored is not None
    assert set(stored["objectClass"]) == {"account", "simpleSecurityObject"}
    assert stored["description"] == ["managed by lockstep"]
    # ppolicy hashed the cleartext on the way in.
    assert stored["userPassword"][0].startswith("{SSHA}")


def test_creating_an_existing_account_fails(session: LdapSession) -> None:
    create(session, "svc")
    with pytest.raises(ActionFailed, match="entryAlreadyExists"):
        create(session, "svc")


def test_suspend_refuses_old_and_new_passwords_and_deletes_nothing(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    old = create(session, "svc")
    session.grant("svc", "group:readers")
    unheld = generate_password()
    assert session.suspend_account("svc", unheld) == Credential("svc", unheld)
    assert session.probe(old) is ProbeResult.REFUSED
    assert session.probe(Credential("svc", unheld)) is ProbeResult.REFUSED
    account = session.read_account("svc")
    assert account is not None
    assert not account.enabled
    assert account.entitlements == {"group:readers"}
    stored = entry(ldap_target, "svc")
    assert stored is not None
    assert stored["pwdAccountLockedTime"] == ["000001010000Z"]


def test_suspending_twice_stays_locked(session: LdapSession, ldap_target: LdapTarget) -> None:
    # ppolicy unlocks an entry whose password changes: a naive second suspension unlocks it.
    create(session, "svc")
    session.suspend_account("svc", generate_password())
    second = generate_password()
    session.suspend_account("svc", second)
    assert session.probe(Credential("svc", second)) is ProbeResult.REFUSED
    stored = entry(ldap_target, "svc")
    assert stored is not None
    assert stored["pwdAccountLockedTime"] == ["000001010000Z"]


def test_restore_hands_back_a_working_credential(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    old = create(session, "svc")
    session.suspend_account("svc", generate_password())
    restored = session.restore_account("svc", generate_password())
    assert restored is not None
    assert session.probe(restored) is ProbeResult.ACCEPTED
    assert session.probe(old) is ProbeResult.REFUSED
    account = session.read_account("svc")
    assert account is not None
    assert account.enabled
    stored = entry(ldap_target, "svc")
    assert stored is not None
    assert "pwdAccountLockedTime" not in stored or stored["pwdAccountLockedTime"] == []


def test_rotate_refuses_the_old_password_and_accepts_the_new(session: LdapSession) -> None:
    old = create(session, "svc")
    new = session.rotate_credential("svc", generate_password())
    assert new is not None
    assert new.username == "svc"
    assert session.probe(old) is ProbeResult.REFUSED
    assert session.probe(new) is ProbeResult.ACCEPTED


def test_rotate_will_not_quietly_restore_a_suspended_account(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    create(session, "svc")
    unheld = generate_password()
    session.suspend_account("svc", unheld)
    attempted = generate_password()
    with pytest.raises(ActionFailed, match="suspended"):
        session.rotate_credential("svc", attempted)
    assert session.probe(Credential("svc", attempted)) is ProbeResult.REFUSED
    stored = entry(ldap_target, "svc")
    assert stored is not None
    assert stored["pwdAccountLockedTime"] == ["000001010000Z"]


def test_end_sessions_is_an_honest_no_op(session: LdapSession) -> None:
    credential = create(session, "svc")
    session.end_sessions("svc")
    assert session.probe(credential) is ProbeResult.ACCEPTED


def test_delete_removes_the_entry_and_every_membership(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    old = create(session, "svc")
    session.grant("svc", "group:readers")
    session.grant("svc", "group:auditors")
    conn = ldap_target.server.connect()
    seed = [(ldap3.MODIFY_DELETE, [ldap_target.server.admin_dn])]
    assert conn.modify(ldap_target.group_dn("auditors"), {"member": seed})  # svc is the last one
    conn.unbind()
    session.delete_account("svc")
    assert session.read_account("svc") is None
    assert entry(ldap_target, "svc") is None
    dn = f"uid=svc,{ldap_target.server.people_dn}"
    for cn in slapd.SEEDED_GROUPS:
        assert dn not in [m.lower() for m in members(ldap_target, cn)]
    assert session.probe(old) is ProbeResult.REFUSED


# ---------------------------------------------------------------- groups


def test_grant_and_revoke_group_membership(session: LdapSession, ldap_target: LdapTarget) -> None:
    create(session, "svc")
    session.grant("svc", "group:readers")
    session.grant("svc", "group:writers")
    session.grant("svc", "group:writers")  # already a member: the state holds
    assert session.read().accounts["svc"].entitlements == {"group:readers", "group:writers"}
    session.revoke("svc", "group:readers")
    account = session.read_account("svc")
    assert account is not None
    assert account.entitlements == {"group:writers"}
    assert members(ldap_target, "readers") == [ldap_target.server.admin_dn]


def test_revoking_the_last_member_leaves_the_group_holding_itself(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    create(session, "svc")
    session.grant("svc", "group:auditors")
    conn = ldap_target.server.connect()
    seed = [(ldap3.MODIFY_DELETE, [ldap_target.server.admin_dn])]
    assert conn.modify(ldap_target.group_dn("auditors"), {"member": seed})
    conn.unbind()
    session.revoke("svc", "group:auditors")
    assert members(ldap_target, "auditors") == [ldap_target.group_dn("auditors")]
    assert session.read().accounts["svc"].entitlements == frozenset()
    session.grant("svc", "group:auditors")
    assert session.read().accounts["svc"].entitlements == {"group:auditors"}


def test_grant_to_a_missing_group_fails_naming_it(session: LdapSession) -> None:
    create(session, "svc")
    with pytest.raises(ActionFailed, match="cn=nonexistent,ou=groups"):
        session.grant("svc", "group:nonexistent")


def test_grant_to_a_missing_account_adds_no_member(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    with pytest.raises(ActionFailed, match="does not exist"):
        session.grant("ghost", "group:readers")
    assert members(ldap_target, "readers") == [ldap_target.server.admin_dn]


# ---------------------------------------------------------------- hostile names


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_round_trip_and_touch_nothing_else(
    session: LdapSession, ldap_target: LdapTarget, name: str
) -> None:
    bystander = create(session, "bystander")
    session.grant("bystander", "group:readers")
    assert session.read_account(name) is None  # "*" matches nothing that exists

    credential = create(session, name)
    session.grant(name, "group:readers")
    session.grant(name, "group:writers")
    snapshot = session.read()
    assert set(snapshot.accounts) == {"bystander", name}
    assert snapshot.accounts[name].entitlements == {"group:readers", "group:writers"}
    assert snapshot.accounts["bystander"].entitlements == {"group:readers"}
    assert session.probe(credential) is ProbeResult.ACCEPTED

    session.revoke(name, "group:readers")
    session.suspend_account(name, generate_password())
    assert session.probe(credential) is ProbeResult.REFUSED
    session.delete_account(name)

    assert session.read_account(name) is None
    assert entry(ldap_target, name) is None
    survivor = session.read_account("bystander")
    assert survivor is not None
    assert survivor.enabled
    assert survivor.entitlements == {"group:readers"}
    assert session.probe(bystander) is ProbeResult.ACCEPTED


@pytest.mark.parametrize("cn", ["a,b", "*", "x=y+z", " padded ", "日本"])
def test_hostile_group_names_are_escaped(
    session: LdapSession, ldap_target: LdapTarget, cn: str
) -> None:
    conn = ldap_target.server.connect()
    seed = {"cn": cn, "member": [ldap_target.server.admin_dn]}
    assert conn.add(ldap_target.group_dn(cn), ["groupOfNames"], seed)
    conn.unbind()
    create(session, "svc")
    session.grant("svc", f"group:{cn}")
    assert session.read().accounts["svc"].entitlements == {f"group:{cn}"}
    assert members(ldap_target, "readers") == [ldap_target.server.admin_dn]
    session.revoke("svc", f"group:{cn}")
    assert session.read().accounts["svc"].entitlements == frozenset()


# ---------------------------------------------------------------- failures


def test_a_closed_port_is_unreachable_naming_the_directory(ldap_target: LdapTarget) -> None:
    url = f"ldap://127.0.0.1:{free_port()}"
    with pytest.raises(TargetUnreachable, match="cannot connect") as caught:
        CONNECTOR.open(target_with(ldap_target, url=url), NO_SCOPE)
    assert f"directory: {url}:" in str(caught.value)


def test_wrong_admin_credentials_are_unreachable_and_say_why(ldap_target: LdapTarget) -> None:
    wrong = target_with(ldap_target, bind_password=generate_password())
    with pytest.raises(TargetUnreachable, match="invalidCredentials"):
        CONNECTOR.open(wrong, NO_SCOPE)


def test_a_lost_connection_is_unreachable_never_refused() -> None:
    with slapd.private_server() as server:
        session = CONNECTOR.open(slapd.ldap_target_for(server), NO_SCOPE)
        credential = create(session, "svc")
        server.stop()
    with pytest.raises(TargetUnreachable):
        session.read()
    with pytest.raises(TargetUnreachable):
        session.rotate_credential("svc", generate_password())
    with pytest.raises(TargetUnreachable):
        session.probe(credential)
    session.close()


def test_a_bind_the_directory_will_not_judge_is_unreachable_never_refused() -> None:
    with slapd.private_server() as server:
        session = CONNECTOR.open(slapd.ldap_target_for(server), NO_SCOPE)
        credential = create(session, "svc")
        config = server.connect(slapd.CONFIG_ADMIN_DN)
        # From now on simple binds need TLS: right and wrong passwords get the same answer.
        assert config.modify(
            "cn=config", {"olcSecurity": [(ldap3.MODIFY_ADD, ["simple_bind=128"])]}
        )
        config.unbind()
        for attempt in (credential, Credential("svc", generate_password())):
            with pytest.raises(TargetUnreachable, match="confidentialityRequired"):
                session.probe(attempt)
        session.close()


def test_suspension_holds_where_no_password_policy_enforces_the_lock() -> None:
    with slapd.private_server(default_policy=False) as server:
        session = CONNECTOR.open(slapd.ldap_target_for(server), NO_SCOPE)
        old = create(session, "svc")
        unheld = generate_password()
        session.suspend_account("svc", unheld)
        assert session.probe(old) is ProbeResult.REFUSED
        account = session.read_account("svc")
        assert account is not None
        assert not account.enabled
        # The lock is ignored here: only the password nobody holds keeps the account shut.
        assert session.probe(Credential("svc", unheld)) is ProbeResult.ACCEPTED
        session.close()
