"""The LDAP connector's optional capabilities against a real OpenLDAP slapd with ppolicy.

Two userPassword values at once (zero-downtime rotation), use read from the directory's own
record of last binds, and a change token. Effects are proven by binding over the network and
by reading the directory behind the connector's back.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime

import ldap3
import pytest

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    ProbeResult,
    Scope,
)
from lockstep.connectors.ldap.connector import LdapConnectorType, LdapSession, LdapSettings
from lockstep.connectors.ldap.passwords import stored_matches
from lockstep.secret import Secret, generate_password
from services import slapd
from services.slapd import (  # noqa: F401 - the fixtures
    LdapTarget,
    LocalSlapd,
    ldap_target_fixture,
    slapd_server_fixture,
)

CONNECTOR = LdapConnectorType()
NO_SCOPE = Scope(declared=frozenset(), excluded=frozenset())


def opened(server: LocalSlapd) -> closing[LdapSession]:
    return closing(CONNECTOR.open(slapd.ldap_target_for(server), NO_SCOPE))


@pytest.fixture
def session(ldap_target: LdapTarget) -> Iterator[LdapSession]:
    with closing(CONNECTOR.open(ldap_target.target, NO_SCOPE)) as opened:
        yield opened


def create(session: LdapSession, account: str = "svc") -> Credential:
    return session.create_account(account, generate_password())


def grant(session: LdapSession, account: str, group: str) -> None:
    session.grant(account, f"group:{group}")


@contextmanager
def admin(server: LocalSlapd, bind_dn: str | None = None) -> Iterator[ldap3.Connection]:
    conn = server.connect(bind_dn)
    try:
        yield conn
    finally:
        conn.unbind()


def account_dn(server: LocalSlapd, account: str) -> str:
    return f"uid={ldap3.utils.dn.escape_rdn(account)},{server.people_dn}"


def stored_passwords(server: LocalSlapd, account: str) -> list[bytes]:
    with admin(server) as conn:
        conn.search(
            account_dn(server, account), "(objectClass=*)", ldap3.BASE, attributes=["userPassword"]
        )
        return list(conn.response[0]["raw_attributes"].get("userPassword", []))


def admin_changes(server: LocalSlapd, change: Callable[[ldap3.Connection], bool]) -> None:
    """A change made behind lockstep's back, as the directory admin."""
    with admin(server) as conn:
        assert change(conn), conn.result


def configure(server: LocalSlapd, dn: str, changes: dict[str, list[tuple[str, list[str]]]]) -> None:
    with admin(server, slapd.CONFIG_ADMIN_DN) as conn:
        assert conn.modify(dn, changes), conn.result


def set_stored_password(server: LocalSlapd, account: str, stored: bytes) -> None:
    replace_it = {"userPassword": [(ldap3.MODIFY_REPLACE, [stored])]}
    admin_changes(server, lambda c: c.modify(account_dn(server, account), replace_it))


def lock(server: LocalSlapd, account: str) -> None:
    lock_forever = {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}
    admin_changes(server, lambda c: c.modify(account_dn(server, account), lock_forever))


def is_locked(server: LocalSlapd, account: str) -> bool:
    with admin(server) as conn:
        conn.search(
            account_dn(server, account),
            "(objectClass=*)",
            ldap3.BASE,
            attributes=["pwdAccountLockedTime"],
        )
        return bool(conn.response[0]["raw_attributes"].get("pwdAccountLockedTime"))


DATABASE = "olcDatabase={1}mdb,cn=config"


# ---------------------------------------------------------------- observed use


def test_an_account_that_never_bound_shows_no_use(session: LdapSession) -> None:
    create(session)
    assert session.observe_usage() == []


def test_a_successful_bind_is_use_of_the_account(session: LdapSession) -> None:
    credential = create(session)
    before = datetime.now(UTC).replace(microsecond=0)
    assert session.probe(credential) is ProbeResult.ACCEPTED
    [use] = session.observe_usage()
    assert use.account == "svc"
    assert use.entitlement is None
    assert use.source == "pwdLastSuccess"
    assert before <= use.last_used <= datetime.now(UTC)


def test_a_failed_bind_is_not_use(session: LdapSession) -> None:
    create(session)
    assert session.probe(Credential("svc", generate_password())) is ProbeResult.REFUSED
    assert session.observe_usage() == []


def test_excluded_accounts_are_never_reported(ldap_target: LdapTarget) -> None:
    with closing(CONNECTOR.open(ldap_target.target, NO_SCOPE)) as setup:
        robot, svc = create(setup, "robot"), create(setup, "svc")
        setup.probe(robot)
        setup.probe(svc)
    scope = Scope(declared=frozenset(), excluded=frozenset({"ROBOT"}))
    with closing(CONNECTOR.open(ldap_target.target, scope)) as session:
        assert [use.account for use in session.observe_usage()] == ["svc"]


def test_the_lastbind_overlays_authtimestamp_is_read_as_well() -> None:
    with slapd.private_server() as server:
        with admin(server, slapd.CONFIG_ADMIN_DN) as conn:
            assert conn.modify(
                "cn=module{0},cn=config", {"olcModuleLoad": [(ldap3.MODIFY_ADD, ["lastbind"])]}
            )
            assert conn.add(
                f"olcOverlay=lastbind,{DATABASE}",
                ["olcOverlayConfig", "olcLastBindConfig"],
                {"olcOverlay": "lastbind"},
            )
            assert conn.modify(DATABASE, {"olcLastBind": [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
        with opened(server) as session:
            session.probe(create(session))
            [use] = session.observe_usage()
            assert (use.account, use.source) == ("svc", "authTimestamp")


def test_a_directory_that_records_no_binds_shows_no_use() -> None:
    with slapd.private_server() as server:
        configure(server, DATABASE, {"olcLastBind": [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
        with opened(server) as session:
            assert session.probe(create(session)) is ProbeResult.ACCEPTED
            assert session.observe_usage() == []


# ---------------------------------------------------------------- change token


def test_the_token_holds_while_nothing_changes_even_as_workloads_bind(
    session: LdapSession,
) -> None:
    credential = create(session)
    grant(session, "svc", "readers")
    token = session.change_token()
    for _ in range(3):
        assert session.probe(credential) is ProbeResult.ACCEPTED
        assert session.change_token() == token
    assert session.observe_usage() != []  # the binds were recorded: writes, but not drift


Change = Callable[[ldap3.Connection], bool]


def _rename(server: LocalSlapd) -> Change:
    return lambda c: c.modify_dn(account_dn(server, "svc"), "uid=renamed")


def _member(operation: str, group: str) -> Callable[[LocalSlapd], Change]:
    def change(server: LocalSlapd) -> Change:
        dn = f"cn={group},{server.groups_dn}"
        return lambda c: c.modify(dn, {"member": [(operation, [account_dn(server, "svc")])]})

    return change


CHANGES_BY_HAND: dict[str, Callable[[LocalSlapd], Change]] = {
    "an account added": lambda s: (
        lambda c: c.add(
            account_dn(s, "new"),
            ["account", "simpleSecurityObject"],
            {"uid": "new", "userPassword": "pw-new-1"},
        )
    ),
    "an account deleted": lambda s: lambda c: c.delete(account_dn(s, "svc")),
    "an account renamed": _rename,
    "an account locked": lambda s: (
        lambda c: c.modify(
            account_dn(s, "svc"), {"pwdAccountLockedTime": [(ldap3.MODIFY_ADD, ["000001010000Z"])]}
        )
    ),
    "a member added": _member(ldap3.MODIFY_ADD, "writers"),
    "a member removed": _member(ldap3.MODIFY_DELETE, "readers"),
    "a group added": lambda s: (
        lambda c: c.add(
            f"cn=new,{s.groups_dn}", ["groupOfNames"], {"member": [account_dn(s, "svc")]}
        )
    ),
    "a group deleted": lambda s: lambda c: c.delete(f"cn=auditors,{s.groups_dn}"),
}


@pytest.mark.parametrize("change", sorted(CHANGES_BY_HAND))
def test_each_kind_of_change_made_by_hand_moves_the_token(
    session: LdapSession, ldap_target: LdapTarget, change: str
) -> None:
    create(session)
    grant(session, "svc", "readers")
    token = session.change_token()
    admin_changes(ldap_target.server, CHANGES_BY_HAND[change](ldap_target.server))
    assert session.change_token() != token


def test_a_password_given_to_an_account_without_one_moves_the_token(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    server = ldap_target.server
    admin_changes(server, lambda c: c.add(account_dn(server, "bare"), ["account"], {"uid": "bare"}))
    token = session.change_token()
    password = {
        "objectClass": [(ldap3.MODIFY_ADD, ["simpleSecurityObject"])],
        "userPassword": [(ldap3.MODIFY_ADD, ["pw-bare-1"])],
    }
    admin_changes(server, lambda c: c.modify(account_dn(server, "bare"), password))
    assert session.change_token() != token


def test_an_unlock_by_hand_moves_the_token(session: LdapSession, ldap_target: LdapTarget) -> None:
    create(session)
    lock(ldap_target.server, "svc")
    token = session.change_token()
    unlock: dict[str, list[tuple[str, list[str]]]] = {
        "pwdAccountLockedTime": [(ldap3.MODIFY_DELETE, [])]
    }
    admin_changes(
        ldap_target.server, lambda c: c.modify(account_dn(ldap_target.server, "svc"), unlock)
    )
    assert session.change_token() != token


def test_changes_outside_accounts_and_groups_leave_the_token_alone(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    create(session)
    token = session.change_token()
    policy = f"cn=default,ou=policies,{ldap_target.server.base_dn}"
    max_failures = {"pwdMaxFailure": [(ldap3.MODIFY_REPLACE, ["5"])]}
    admin_changes(ldap_target.server, lambda c: c.modify(policy, max_failures))
    assert session.change_token() == token


def test_changes_to_excluded_accounts_leave_the_token_alone(ldap_target: LdapTarget) -> None:
    with closing(CONNECTOR.open(ldap_target.target, NO_SCOPE)) as setup:
        create(setup, "robot")
    scope = Scope(declared=frozenset(), excluded=frozenset({"robot"}))
    with closing(CONNECTOR.open(ldap_target.target, scope)) as session:
        token = session.change_token()
        lock(ldap_target.server, "robot")
        assert session.change_token() == token


def test_without_syncprov_the_token_still_follows_every_change() -> None:
    with slapd.private_server(syncprov=False) as server, opened(server) as session:
        credential = create(session)
        token = session.change_token()
        session.probe(credential)
        assert session.change_token() == token
        admin_changes(server, _member(ldap3.MODIFY_ADD, "writers")(server))
        moved = session.change_token()
        assert moved != token
        admin_changes(server, lambda c: c.delete(account_dn(server, "svc")))
        assert session.change_token() != moved


# ---------------------------------------------------------------- two passwords at once


def test_retiring_the_old_password_refuses_it_and_keeps_the_new(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    old = create(session)
    new = session.add_credential("svc", generate_password())
    session.retire_credential("svc", old)
    assert session.probe(old) is ProbeResult.REFUSED
    assert session.probe(new) is ProbeResult.ACCEPTED
    [kept] = stored_passwords(ldap_target.server, "svc")
    assert kept.startswith(b"{SSHA}")  # hashed on arrival, never kept in clear


def test_retiring_a_password_the_account_no_longer_holds_changes_nothing(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    current = create(session)
    session.add_credential("svc", generate_password())
    session.retire_credential("svc", Credential("svc", generate_password()))
    assert len(stored_passwords(ldap_target.server, "svc")) == 2
    assert session.probe(current) is ProbeResult.ACCEPTED


def test_a_suspended_account_gets_no_new_password_and_stays_locked(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    create(session)
    session.suspend_account("svc", generate_password())
    attempted = generate_password()
    with pytest.raises(ActionFailed, match="suspended"):
        session.add_credential("svc", attempted)
    assert session.probe(Credential("svc", attempted)) is ProbeResult.REFUSED
    assert is_locked(ldap_target.server, "svc")


def test_retiring_from_a_locked_account_is_refused_and_it_stays_locked(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    old = create(session)
    session.add_credential("svc", generate_password())
    lock(ldap_target.server, "svc")
    with pytest.raises(ActionFailed, match="suspended"):
        session.retire_credential("svc", old)
    assert is_locked(ldap_target.server, "svc")
    assert len(stored_passwords(ldap_target.server, "svc")) == 2


def test_excluded_accounts_get_no_new_password(ldap_target: LdapTarget) -> None:
    with closing(CONNECTOR.open(ldap_target.target, NO_SCOPE)) as setup:
        robot = create(setup, "robot")
    scope = Scope(declared=frozenset(), excluded=frozenset({"robot"}))
    with closing(CONNECTOR.open(ldap_target.target, scope)) as session:
        with pytest.raises(ActionFailed, match="excluded"):
            session.add_credential("robot", generate_password())
        with pytest.raises(ActionFailed, match="excluded"):
            session.retire_credential("robot", robot)
    assert len(stored_passwords(ldap_target.server, "robot")) == 1


def test_a_password_in_a_scheme_lockstep_cannot_check_stops_the_rotation_unchanged(
    session: LdapSession, ldap_target: LdapTarget
) -> None:
    create(session)
    crypt = b"{CRYPT}$6$saltsalt$" + b"x" * 86
    admin_changes(
        ldap_target.server,
        lambda c: c.modify(
            account_dn(ldap_target.server, "svc"), {"userPassword": [(ldap3.MODIFY_ADD, [crypt])]}
        ),
    )
    before = stored_passwords(ldap_target.server, "svc")
    attempted = generate_password()
    with pytest.raises(ActionFailed, match=r"\{CRYPT\}"):
        session.add_credential("svc", attempted)
    assert stored_passwords(ldap_target.server, "svc") == before
    assert session.probe(Credential("svc", attempted)) is ProbeResult.REFUSED


def test_a_directory_that_hashes_new_passwords_unmatchably_gets_them_taken_back() -> None:
    with slapd.private_server() as server, opened(server) as session:
        old = create(session)  # hashed {SSHA}, the default
        crypt = {"olcPasswordHash": [(ldap3.MODIFY_REPLACE, ["{CRYPT}"])]}
        configure(server, "olcDatabase={-1}frontend,cn=config", crypt)
        before = stored_passwords(server, "svc")
        attempted = generate_password()
        with pytest.raises(ActionFailed, match=r"\{CRYPT\}.*nothing was changed"):
            session.add_credential("svc", attempted)
        assert stored_passwords(server, "svc") == before
        assert session.probe(Credential("svc", attempted)) is ProbeResult.REFUSED
        assert session.probe(old) is ProbeResult.ACCEPTED


def _hashed(scheme: str, algorithm: str, password: Secret, salted: bool) -> bytes:
    salt = os.urandom(8) if salted else b""
    digest = hashlib.new(algorithm, password.reveal().encode() + salt).digest()
    return f"{{{scheme}}}".encode() + base64.b64encode(digest + salt)


SHA_SCHEMES = [
    ("SHA", "sha1", False),
    ("SSHA", "sha1", True),
    ("SHA256", "sha256", False),
    ("SSHA256", "sha256", True),
    ("SHA384", "sha384", False),
    ("SSHA384", "sha384", True),
    ("SHA512", "sha512", False),
    ("SSHA512", "sha512", True),
]


def test_old_passwords_stored_in_any_sha_scheme_are_retired() -> None:
    with slapd.private_server() as server:
        modules = {"olcModuleLoad": [(ldap3.MODIFY_ADD, ["pw-sha2"])]}
        configure(server, "cn=module{0},cn=config", modules)
        with opened(server) as session:
            for scheme, algorithm, salted in SHA_SCHEMES:
                account = f"svc-{scheme.lower()}"
                create(session, account)
                old = Credential(account, generate_password())
                set_stored_password(server, account, _hashed(scheme, algorithm, old.secret, salted))
                assert session.probe(old) is ProbeResult.ACCEPTED, scheme
                new = session.add_credential(account, generate_password())
                session.retire_credential(account, old)
                assert session.probe(old) is ProbeResult.REFUSED, scheme
                assert session.probe(new) is ProbeResult.ACCEPTED, scheme


def test_stored_values_are_matched_by_their_scheme_and_never_guessed() -> None:
    password = Secret("correct horse battery staple")
    assert stored_matches(b"correct horse battery staple", password)  # kept in clear
    assert stored_matches(_hashed("SSHA", "sha1", password, True), password)
    assert stored_matches(_hashed("ssha512", "sha512", password, True), password)
    assert not stored_matches(_hashed("SSHA", "sha1", Secret("another one"), True), password)
    assert stored_matches(b"{CRYPT}$6$abc$def", password) is None
    assert stored_matches(b"{SSHA}not base64!", password) is None
    assert stored_matches(b"{SHA}" + base64.b64encode(b"short"), password) is None


def test_a_non_root_admin_that_may_write_userpassword_rotates_the_same_way() -> None:
    with slapd.private_server() as server:
        admin = f"uid=lockstep,{server.base_dn}"
        password = generate_password()
        acls = [
            f"{{0}}to attrs=userPassword by dn.exact={admin} write by self write "
            "by anonymous auth by * none",
            f"{{1}}to * by dn.exact={admin} write by self read by users read by * none",
        ]
        configure(server, DATABASE, {"olcAccess": [(ldap3.MODIFY_REPLACE, acls)]})
        admin_changes(
            server,
            lambda c: c.add(
                admin, ["account", "simpleSecurityObject"], {"userPassword": password.reveal()}
            ),
        )
        target = slapd.ldap_target_for(server)
        settings = LdapSettings.model_validate(target.settings).model_copy(
            update={"bind_dn": admin, "bind_password": password}
        )
        with opened(server) as setup:
            old = create(setup)
        with closing(CONNECTOR.open(replace(target, settings=settings), NO_SCOPE)) as session:
            new = session.add_credential("svc", generate_password())
            assert session.probe(old) is ProbeResult.ACCEPTED
            session.retire_credential("svc", old)
            assert session.probe(old) is ProbeResult.REFUSED
            assert session.probe(new) is ProbeResult.ACCEPTED
