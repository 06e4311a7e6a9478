"""The PostgreSQL session's escalation facts against a real PostgreSQL: one test per kind of
edge, each with the case that must not be a path."""

from __future__ import annotations

import pytest

from lockstep.connectors.postgres import paths
from lockstep.paths.graph import Confidence, Edge, NodeKind, PathRequest
from lockstep.paths.postgres import PostgresFacts
from support.postgres_sessions import OpenSession, admin

pytest_plugins = ("support.postgres_sessions",)

SUPERUSERS = "any superuser"


@pytest.fixture(autouse=True)
def schema(pg):
    """The tests' tables and functions live in a schema of their own, dropped after."""
    admin(pg, "DROP SCHEMA IF EXISTS esc CASCADE", "CREATE SCHEMA esc")
    yield
    admin(pg, "DROP SCHEMA IF EXISTS esc CASCADE")


def facts(open_session: OpenSession, **settings: object) -> PostgresFacts:
    read = open_session(**settings).read_paths(PathRequest())
    assert isinstance(read, PostgresFacts)
    return read


def edges(read: PostgresFacts, rule: str) -> dict[tuple[str, str], Edge]:
    return {(e.source.name, e.destination.name): e for e in read.edges() if e.rule == rule}


def test_membership_is_held_and_confirmed_by_pg_has_role(pg, open_session) -> None:
    admin(
        pg,
        "CREATE ROLE app_admin NOLOGIN",
        "CREATE ROLE payments_api LOGIN",
        "CREATE ROLE bob LOGIN NOINHERIT",
        "GRANT payments_api TO app_admin",
        "GRANT app_admin TO bob",
    )
    found = edges(facts(open_session), "pg.member")
    chain = found["app_admin", "payments_api"]
    assert chain.confidence is Confidence.PROVEN and not chain.obtains
    assert chain.holder is not None and chain.holder.entitlement == "role:payments_api"
    # PostgreSQL 15: NOINHERIT keeps bob from inheriting app_admin, but he may SET ROLE to it.
    assert "SET ROLE" in found["bob", "app_admin"].evidence
    assert "inherits" not in found["bob", "app_admin"].evidence


def test_memberships_are_confirmed_in_chunks_on_the_reading_snapshot(
    pg, open_session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_has_role is asked on further connections sharing the read's snapshot, a chunk of
    members each: the facts are the same as from one chunk."""
    names = [f"chunked_{i}" for i in range(7)]
    admin(pg, "CREATE ROLE chunk_group NOLOGIN", *(f"CREATE ROLE {n} LOGIN" for n in names))
    admin(pg, *(f"GRANT chunk_group TO {n}" for n in names))
    whole = edges(facts(open_session), "pg.member")
    monkeypatch.setattr(paths, "CONFIRM_CHUNK", 2)
    chunked = edges(facts(open_session), "pg.member")
    assert chunked == whole
    assert all(chunked[n, "chunk_group"].confidence is Confidence.PROVEN for n in names)


def test_admin_option_obtains_the_role(pg, open_session) -> None:
    admin(
        pg,
        "CREATE ROLE payments_api LOGIN",
        "CREATE ROLE carol LOGIN",
        "CREATE ROLE dave LOGIN",
        "GRANT payments_api TO carol WITH ADMIN OPTION",
        "GRANT payments_api TO dave",
    )
    found = edges(facts(open_session), "pg.admin_option")
    assert found["carol", "payments_api"].confidence is Confidence.PROVEN
    assert ("dave", "payments_api") not in found


def test_a_superuser_can_become_any_role_and_a_plain_reader_nothing(pg, open_session) -> None:
    admin(
        pg,
        "CREATE ROLE root_bob LOGIN SUPERUSER",
        "CREATE ROLE reader LOGIN",
        "CREATE ROLE payments_api LOGIN",
        "CREATE TABLE esc.orders (id int)",
        "GRANT SELECT ON esc.orders TO reader",
    )
    read = facts(open_session)
    assert ("root_bob", SUPERUSERS) in edges(read, "pg.superuser")
    assert (SUPERUSERS, "payments_api") in edges(read, "pg.superuser_alters")
    assert not [e for e in read.edges() if e.source.name == "reader"]


def test_createrole_before_16_may_alter_any_non_superuser(pg, open_session) -> None:
    admin(
        pg,
        "CREATE ROLE ops LOGIN CREATEROLE",
        "CREATE ROLE payments_api LOGIN",
        "CREATE ROLE root_bob LOGIN SUPERUSER",
    )
    read = facts(open_session)
    assert read.version < 160000  # the suite's server is PostgreSQL 15
    hub = "CREATEROLE (PostgreSQL before 16)"
    assert ("ops", hub) in edges(read, "pg.createrole")
    alters = edges(read, "pg.createrole_alters")
    assert (hub, "payments_api") in alters
    assert (hub, "root_bob") not in alters


def test_server_program_and_file_roles_reach_superuser_and_secret_tables(pg, open_session) -> None:
    admin(
        pg,
        "CREATE ROLE runner LOGIN",
        "CREATE ROLE filer LOGIN",
        "GRANT pg_execute_server_program TO runner",
        "GRANT pg_read_server_files TO filer",
        "CREATE TABLE esc.api_tokens (token text)",
    )
    read = facts(open_session, secret_tables=["esc.api_tokens"])
    assert ("runner", "pg_execute_server_program") in edges(read, "pg.member")
    assert ("pg_execute_server_program", SUPERUSERS) in edges(read, "pg.server_os_user")
    assert ("pg_read_server_files", "table esc.api_tokens") in edges(read, "pg.reads_table_files")


def test_readers_of_a_secret_table_and_not_of_others(pg, open_session) -> None:
    admin(
        pg,
        "CREATE ROLE tokens_owner NOLOGIN",
        "CREATE ROLE auditor LOGIN",
        "CREATE ROLE analyst LOGIN",
        "CREATE TABLE esc.api_tokens (token text)",
        "ALTER TABLE esc.api_tokens OWNER TO tokens_owner",
        "CREATE TABLE esc.orders (id int)",
        "GRANT SELECT ON esc.api_tokens TO auditor",
        "GRANT SELECT ON esc.orders TO analyst",
        "GRANT pg_read_all_data TO analyst",
    )
    read = facts(open_session, secret_tables=["esc.api_tokens", "esc.gone"])
    readers = edges(read, "pg.reads_secret_table")
    store = "table esc.api_tokens"
    assert readers["auditor", store].confidence is Confidence.PROVEN
    assert readers["auditor", store].holder is not None
    assert ("pg_read_all_data", store) in readers
    assert ("analyst", store) not in readers  # only through pg_read_all_data, a membership
    assert ("tokens_owner", store) in edges(read, "pg.owner_reads")
    assert [n.what for n in read.not_assessed()] == ["secret table esc.gone"]


def test_security_definer_functions_of_privileged_owners(pg, open_session) -> None:
    admin(
        pg,
        "CREATE ROLE root_fn LOGIN SUPERUSER",
        "CREATE ROLE plain_fn LOGIN",
        "CREATE ROLE bob LOGIN",
        "CREATE FUNCTION esc.as_root() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
        "ALTER FUNCTION esc.as_root() OWNER TO root_fn",
        "CREATE FUNCTION esc.narrow() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 2'",
        "ALTER FUNCTION esc.narrow() OWNER TO root_fn",
        "REVOKE EXECUTE ON FUNCTION esc.narrow() FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION esc.narrow() TO bob",
        "CREATE FUNCTION esc.mine() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 3'",
        "ALTER FUNCTION esc.mine() OWNER TO plain_fn",
    )
    found = [
        (e.source.kind, e.source.name, e.evidence.split(",")[0])
        for e in facts(open_session).edges()
        if e.rule == "pg.security_definer"
    ]
    assert (NodeKind.ANYONE, "any role that can log in", "may execute esc.as_root()") in found
    assert (NodeKind.ACCOUNT, "bob", "may execute esc.narrow()") in found
    assert not [f for f in found if "mine()" in f[2] or ("narrow()" in f[2] and f[1] != "bob")]


def test_the_owner_of_a_table_others_write_can_act_as_them(pg, open_session) -> None:
    admin(
        pg,
        "CREATE ROLE alice LOGIN",
        "CREATE ROLE app_writer NOLOGIN",
        "CREATE ROLE svc LOGIN",
        "CREATE ROLE viewer LOGIN",
        "GRANT app_writer TO svc",
        "CREATE TABLE esc.events (id int)",
        "ALTER TABLE esc.events OWNER TO alice",
        "GRANT INSERT ON esc.events TO app_writer",
        "GRANT SELECT ON esc.events TO viewer",
    )
    found = edges(facts(open_session), "pg.owner_trigger")
    assert found["alice", "svc"].confidence is Confidence.CONDITIONAL
    assert found["alice", "svc"].conditions
    assert ("alice", "app_writer") in found
    assert ("alice", "viewer") not in found


def test_the_admin_is_lockstep_s_own_and_logins_are_principals(pg, open_session) -> None:
    admin(pg, "CREATE ROLE grp NOLOGIN", "CREATE ROLE svc LOGIN")
    read = facts(open_session)
    principals = read.principals()
    assert {n.name for n in principals.admins} == {read.admin}
    assert "svc" in {n.name for n in principals.logins}
    assert "grp" not in {n.name for n in principals.logins}
    assert read.entitlement_node("role:grp") == read.account_node("grp")
    assert read.entitlement_node("SELECT on table esc.orders") is None


@pytest.mark.parametrize("name", ["nodot", ".table", "schema."])
def test_a_secret_table_must_be_schema_dot_table(open_session, name: str) -> None:
    with pytest.raises(ValueError, match=r"SCHEMA\.TABLE"):
        open_session(secret_tables=[name])
