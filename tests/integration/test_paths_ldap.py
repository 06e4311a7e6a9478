"""The LDAP session's escalation facts against a real slapd whose olcAccess rules the tests
set through cn=config: each kind of edge, first-match order, and the cases that are no path.
The server is this module's own, since the tests rewrite its access rules."""

from __future__ import annotations

from collections.abc import Iterator

import ldap3
import pytest

from lockstep.connectors.base import Scope
from lockstep.connectors.ldap.connector import LdapConnectorType
from lockstep.paths.graph import Confidence, Edge, NodeKind, PathRequest
from lockstep.paths.ldap import ANONYMOUS, BOUND, LdapFacts
from services.slapd import (
    CONFIG_ADMIN_DN,
    LocalSlapd,
    ldap_target_for,
    private_server,
    reset_directory,
)

CT = LdapConnectorType()
DATABASE = "olcDatabase={1}mdb,cn=config"
CONFIG = "olcDatabase={0}config,cn=config"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalSlapd]:
    with private_server() as started:
        yield started


def add(server: LocalSlapd, dn: str, classes: list[str], **attributes: object) -> None:
    conn = server.connect()
    try:
        assert conn.add(dn, classes, attributes), conn.result
    finally:
        conn.unbind()


def configure(server: LocalSlapd, dn: str, rules: list[str]) -> None:
    conn = server.connect(CONFIG_ADMIN_DN)
    try:
        assert conn.modify(dn, {"olcAccess": [(ldap3.MODIFY_REPLACE, rules)]}), conn.result
    finally:
        conn.unbind()


@pytest.fixture
def directory(server: LocalSlapd) -> Iterator[LocalSlapd]:
    reset_directory(server)
    people, groups = server.people_dn, server.groups_dn
    for uid in ("svc", "helpdesk", "joiner", "reader", "auditor"):
        add(server, f"uid={uid},{people}", ["account", "simpleSecurityObject"],
            uid=uid, userPassword=f"pw-{uid}-initial")  # fmt: skip
    add(server, f"cn=keyholders,{groups}", ["groupOfNames"], member=[f"uid=auditor,{people}"])
    yield server
    # Unreadable again; never emptied: slapd 2.5 dies when rules are added back after that.
    configure(server, CONFIG, ["{0}to * by * none"])
    configure(server, DATABASE, [
        "{0}to attrs=userPassword by self write by anonymous auth by * none",
        "{1}to * by self read by users read by * none",
    ])  # fmt: skip
    reset_directory(server)


def readable_config(server: LocalSlapd) -> None:
    configure(server, CONFIG, [f'{{0}}to * by dn.exact="{server.admin_dn}" read by * none'])


def facts(server: LocalSlapd) -> LdapFacts:
    session = CT.open(ldap_target_for(server), Scope(frozenset(), frozenset()))
    try:
        read = session.read_paths(PathRequest())
    finally:
        session.close()
    assert isinstance(read, LdapFacts)
    return read


def edges(read: LdapFacts, rule: str) -> dict[tuple[str, str], Edge]:
    return {(e.source.name, e.destination.name): e for e in read.edges() if e.rule == rule}


def test_without_cn_config_the_rules_are_not_assessed(directory) -> None:
    read = facts(directory)
    assert [n.what for n in read.not_assessed()] == ["olcAccess rules"]
    assert "cn=config" in read.not_assessed()[0].reason
    assert not edges(read, "ldap.write_password")
    assert ("auditor", "group:keyholders") in edges(read, "ldap.member")


def test_who_may_set_or_read_a_password_in_first_match_order(directory) -> None:
    readable_config(directory)
    people, groups = directory.people_dn, directory.groups_dn
    configure(directory, DATABASE, [
        f"{{0}}to dn.exact=uid=reader,{people} attrs=userPassword by self write by * none",
        f'{{1}}to attrs=userPassword by self write by dn.exact="uid=helpdesk,{people}" write'
        f' by group.exact="cn=keyholders,{groups}" read by anonymous auth by * none',
        f'{{2}}to dn.one="{groups}" attrs=member by dn.exact="uid=joiner,{people}" selfwrite'
        " by users read by * none",
        "{3}to * by self read by users read by * none",
    ])  # fmt: skip
    read = facts(directory)
    assert not read.not_assessed()
    writes = edges(read, "ldap.write_password")
    assert writes["helpdesk", "svc"].confidence is Confidence.INFERRED
    assert "{1}to attrs=userPassword" in writes["helpdesk", "svc"].evidence
    assert ("helpdesk", "reader") not in writes  # rule {0} matched reader's entry first
    assert ("svc", "svc") not in writes  # its own password is no escalation
    hashes = edges(read, "ldap.read_password_hash")
    assert ("group:keyholders", "svc") in hashes
    assert ("auditor", "group:keyholders") in edges(read, "ldap.member")
    assert not [e for e in read.edges() if e.source.name in (ANONYMOUS, "reader")]
    joins = edges(read, "ldap.write_member")
    assert "selfwrite" in joins["joiner", "group:keyholders"].evidence
    assert ("reader", "group:keyholders") not in joins


def test_rules_open_to_any_bound_entry_come_from_one_node(directory) -> None:
    readable_config(directory)
    configure(directory, DATABASE, ["{0}to attrs=userPassword by users write", "{1}to * by * read"])
    read = facts(directory)
    sources = {
        (e.source.kind, e.source.name) for e in read.edges() if e.rule == "ldap.write_password"
    }
    assert sources == {(NodeKind.ANYONE, BOUND)}


def test_the_root_dn_is_above_the_rules_and_the_bind_is_the_admin(directory) -> None:
    readable_config(directory)
    read = facts(directory)
    admin = directory.admin_dn.lower()
    assert (admin, "svc") in edges(read, "ldap.root_dn")
    assert {n.name for n in read.principals().admins} == {admin}
    assert read.entitlement_node("group:keyholders") is not None
