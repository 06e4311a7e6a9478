"""The PostgreSQL connector against a real server: every change is read back from the
catalogs and every credential is tried over TCP with scram-sha-256, as a workload would."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    ProbeResult,
    TargetUnreachable,
)
from lockstep.connectors.postgres.catalog import MARKER
from lockstep.connectors.postgres.connector import PostgresSession, PostgresSettings
from lockstep.demo import localpg
from lockstep.secret import Secret, generate_password
from support.postgres_sessions import (
    CONNECTOR,
    OpenSession,
    admin,
    assert_clean,
    assert_session_ended,
    login,
    role_exists,
)

pytest_plugins = ("support.postgres_sessions",)


HOSTILE_NAMES = [
    'a"b',
    "x; DROP ROLE y",
    "Robert'); --",
    "søren-ü",
    "é" * 31 + "x",  # 63 bytes in UTF-8, PostgreSQL's limit
]
HOSTILE_GROUP = 'grp"; DROP ROLE y; --'


def create(session: PostgresSession, account: str) -> Secret:
    secret = generate_password()
    session.create_account(account, secret)
    return secret


# ------------------------------------------------------------------ reading


def test_read_of_an_empty_cluster_has_no_accounts(open_session: OpenSession) -> None:
    snapshot = open_session().read()
    assert snapshot.target == "orders-db"
    assert snapshot.accounts == {}


def test_read_never_lists_the_admin_excluded_or_reserved_roles(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE ROLE app LOGIN", "CREATE ROLE dba_alice LOGIN")
    session = open_session(declared=("dba_alice",), excluded=("dba_alice",))
    assert set(session.read().accounts) == {"app"}
    settings = PostgresSettings.model_validate({"dsn": pg.dsn()})
    assert CONNECTOR.default_excluded(settings) == {pg.superuser}


def test_groups_are_entitlements_but_declared_or_marked_nologin_roles_are_accounts(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(
        pg,
        "CREATE ROLE app_readonly NOLOGIN",
        "CREATE ROLE parked NOLOGIN",
        "CREATE ROLE was_suspended NOLOGIN",
        sql.SQL("COMMENT ON ROLE was_suspended IS {}").format(sql.Literal(MARKER)),
    )
    accounts = open_session(declared=("parked",)).read().accounts
    assert set(accounts) == {"parked", "was_suspended"}
    assert not accounts["parked"].enabled
    assert not accounts["was_suspended"].enabled


def test_read_reports_sessions_and_expiry(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    secret = create(session, "app")
    admin(
        pg,
        "CREATE ROLE forever LOGIN VALID UNTIL 'infinity'",
        "CREATE ROLE lapsed LOGIN VALID UNTIL '2001-01-01 00:00+00'",
        "CREATE ROLE later LOGIN VALID UNTIL '2999-01-01 00:00+00'",
    )
    with login(pg, "app", secret), login(pg, "app", secret):
        accounts = session.read().accounts
    assert accounts["app"].sessions == 2
    assert accounts["app"].valid_until is None and accounts["app"].enabled
    assert accounts["forever"].valid_until is None and accounts["forever"].enabled
    assert accounts["lapsed"].valid_until is not None and not accounts["lapsed"].enabled
    later = accounts["later"].valid_until
    assert later is not None and later.year == 2999 and accounts["later"].enabled


def test_owned_objects_are_not_reported_as_grants(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    create(session, "app")
    admin(pg, "CREATE TABLE public.orders (id int)", "ALTER TABLE public.orders OWNER TO app")
    account = session.read_account("app")
    assert account is not None and account.entitlements == frozenset()


def test_read_account_of_a_missing_role_is_none(open_session: OpenSession) -> None:
    assert open_session().read_account("nobody") is None


# ------------------------------------------------------------------ create, grant, revoke


def test_create_then_probe_is_accepted_and_a_wrong_secret_refused(
    open_session: OpenSession,
) -> None:
    session = open_session()
    secret = generate_password()
    credential = session.create_account("payments_api", secret)
    assert credential == Credential(username="payments_api", secret=secret)
    assert session.probe(credential) is ProbeResult.ACCEPTED
    wrong = Credential("payments_api", generate_password())
    assert session.probe(wrong) is ProbeResult.REFUSED
    assert session.probe(Credential("nobody", secret)) is ProbeResult.REFUSED
    account = session.read().accounts["payments_api"]
    assert account.enabled and account.entitlements == frozenset()


GRANTS = [
    ("role:app_readonly", "role:app_readonly"),
    *[
        (f"{p.lower()} ON TABLE Public.Orders", f"{p} on table public.orders")
        for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
    ],
    ('Select on table billing."Order Lines"', 'SELECT on table billing."Order Lines"'),
    ("SELECT on table billing.v_orders", "SELECT on table billing.v_orders"),
    ("usage on schema BILLING", "USAGE on schema billing"),
    ("Create on Schema billing", "CREATE on schema billing"),
    ("connect on database postgres", "CONNECT on database postgres"),
    ("create on database postgres", "CREATE on database postgres"),
    ("temp on database postgres", "TEMPORARY on database postgres"),
    ('CONNECT on database "Søren DB"', 'CONNECT on database "Søren DB"'),
]


@pytest.mark.parametrize(("written", "canonical"), GRANTS)
def test_grant_reads_back_canonical_and_revoke_removes_it(
    pg: localpg.LocalPostgres, open_session: OpenSession, written: str, canonical: str
) -> None:
    admin(
        pg,
        "CREATE ROLE app_readonly NOLOGIN",
        "CREATE TABLE public.orders (id int)",
        "CREATE SCHEMA billing",
        'CREATE TABLE billing."Order Lines" (id int)',
        "CREATE VIEW billing.v_orders AS SELECT 1 AS one",
    )
    if "Søren DB" in canonical:  # only where needed: creating a database is slow
        admin(pg, 'CREATE DATABASE "Søren DB"')
    session = open_session()
    create(session, "app")
    entitlement = CONNECTOR.parse_entitlement(written)
    assert entitlement == canonical

    session.grant("app", entitlement)
    account = session.read_account("app")
    assert account is not None and account.entitlements == {canonical}
    assert session.read().accounts["app"].entitlements == {canonical}

    session.revoke("app", entitlement)
    account = session.read_account("app")
    assert account is not None and account.entitlements == frozenset()


def test_a_granted_privilege_really_works(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE TABLE public.orders (id int)")
    session = open_session()
    secret = create(session, "app")
    with login(pg, "app", secret) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM public.orders")
    session.grant("app", "SELECT on table public.orders")
    with login(pg, "app", secret) as conn:
        assert conn.execute("SELECT count(*) FROM public.orders").fetchone() == (0,)


def test_failed_grants_raise_action_failed(open_session: OpenSession) -> None:
    session = open_session()
    create(session, "app")
    with pytest.raises(ActionFailed, match="does not exist"):
        session.grant("app", "SELECT on table public.missing")
    with pytest.raises(ActionFailed, match="accepted forms"):
        session.grant("app", "ALL on table public.orders")


# ------------------------------------------------------------------ suspend, restore, rotate


def test_suspend_ends_sessions_and_refuses_old_and_new_secret(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    secret = create(session, "app")
    workload = login(pg, "app", secret)
    assert workload.execute("SELECT 1").fetchone() == (1,)

    suspension = generate_password()
    assert session.suspend_account("app", suspension) == Credential("app", suspension)

    assert_session_ended(workload)
    assert session.probe(Credential("app", secret)) is ProbeResult.REFUSED
    assert session.probe(Credential("app", suspension)) is ProbeResult.REFUSED
    # Undeclared, it stays in scope through lockstep's marker, so it can be restored.
    account = session.read().accounts["app"]
    assert not account.enabled and account.sessions == 0


def test_restore_with_a_new_secret_is_accepted(open_session: OpenSession) -> None:
    session = open_session()
    create(session, "app")
    session.suspend_account("app", generate_password())
    restored = generate_password()
    credential = session.restore_account("app", restored)
    assert credential == Credential("app", restored)
    assert session.probe(credential) is ProbeResult.ACCEPTED
    account = session.read_account("app")
    assert account is not None and account.enabled


def test_restore_lifts_an_expired_valid_until(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    expired = create(session, "app")
    admin(pg, "ALTER ROLE app VALID UNTIL '2001-01-01 00:00+00'")
    assert session.probe(Credential("app", expired)) is ProbeResult.REFUSED
    credential = session.restore_account("app", generate_password())
    assert credential is not None and session.probe(credential) is ProbeResult.ACCEPTED
    account = session.read_account("app")
    assert account is not None and account.enabled and account.valid_until is None


def test_rotate_refuses_the_old_secret_and_accepts_the_new(open_session: OpenSession) -> None:
    session = open_session()
    old = create(session, "app")
    new = generate_password()
    assert session.rotate_credential("app", new) == Credential("app", new)
    assert session.probe(Credential("app", old)) is ProbeResult.REFUSED
    assert session.probe(Credential("app", new)) is ProbeResult.ACCEPTED


def test_end_sessions_leaves_the_account_usable(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    secret = create(session, "app")
    workload = login(pg, "app", secret)
    session.end_sessions("app")
    assert_session_ended(workload)
    assert session.probe(Credential("app", secret)) is ProbeResult.ACCEPTED


# ------------------------------------------------------------------ delete


def test_delete_ends_sessions_and_drops_only_the_role(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE ROLE app_readonly NOLOGIN", "CREATE TABLE public.orders (id int)")
    session = open_session()
    secret = create(session, "app")
    session.grant("app", "role:app_readonly")
    session.grant("app", "SELECT on table public.orders")
    workload = login(pg, "app", secret)

    session.delete_account("app")

    assert_session_ended(workload)
    assert session.read_account("app") is None
    assert session.probe(Credential("app", secret)) is ProbeResult.REFUSED
    assert role_exists(pg, "app_readonly")


def test_delete_of_an_owner_fails_and_changes_nothing(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE ROLE app_readonly NOLOGIN")
    session = open_session()
    secret = create(session, "app")
    session.grant("app", "role:app_readonly")
    admin(pg, "CREATE TABLE public.orders (id int)", "ALTER TABLE public.orders OWNER TO app")

    with pytest.raises(ActionFailed, match=r"owns 1 object\(s\) \(table public\.orders\)"):
        session.delete_account("app")

    account = session.read_account("app")
    assert account is not None and account.entitlements == {"role:app_readonly"}
    assert session.probe(Credential("app", secret)) is ProbeResult.ACCEPTED


def test_delete_rolls_back_when_drop_role_fails(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE TABLE public.orders (id int)", "CREATE DATABASE elsewhere")
    session = open_session()
    create(session, "app")
    session.grant("app", "SELECT on table public.orders")
    # A privilege in another database is invisible from here, and blocks DROP ROLE.
    with psycopg.connect(pg.dsn("elsewhere"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("GRANT SELECT ON t TO app")

    with pytest.raises(ActionFailed, match="cannot be dropped"):
        session.delete_account("app")

    account = session.read_account("app")
    assert account is not None and account.entitlements == {"SELECT on table public.orders"}


def test_actions_on_a_missing_role_fail(open_session: OpenSession) -> None:
    session = open_session()
    with pytest.raises(ActionFailed, match="does not exist"):
        session.delete_account("nobody")
    with pytest.raises(ActionFailed, match="does not exist"):
        session.end_sessions("nobody")
    with pytest.raises(ActionFailed, match="does not exist"):
        session.rotate_credential("nobody", generate_password())


def test_excluded_admin_and_reserved_roles_are_never_touched(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE ROLE dba_alice LOGIN")
    session = open_session(excluded=("dba_alice",))
    for account in ("dba_alice", pg.superuser, "pg_monitor"):
        with pytest.raises(ActionFailed, match="excluded"):
            session.suspend_account(account, generate_password())
    assert session.read_account("dba_alice") is not None
    assert session.read_account("dba_alice").enabled  # type: ignore[union-attr]


# ------------------------------------------------------------------ hostile names


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_round_trip_and_harm_nothing(
    pg: localpg.LocalPostgres, open_session: OpenSession, name: str
) -> None:
    CONNECTOR.check_account(name)
    admin(
        pg,
        "CREATE ROLE y NOLOGIN",
        "CREATE ROLE bystander LOGIN",
        "CREATE TABLE public.orders (id int)",
        sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(HOSTILE_GROUP)),
        "CREATE SCHEMA billing",
        sql.SQL("CREATE TABLE billing.{} (id int)").format(sql.Identifier(name)),
    )
    group = f"role:{HOSTILE_GROUP}"
    table = CONNECTOR.parse_entitlement('SELECT on table billing."' + name.replace('"', '""') + '"')
    session = open_session()
    secret = create(session, name)
    for entitlement in (group, table, "role:y", "SELECT on table public.orders"):
        session.grant(name, entitlement)

    account = session.read().accounts[name]
    assert account.entitlements == {group, table, "role:y", "SELECT on table public.orders"}
    assert session.probe(Credential(name, secret)) is ProbeResult.ACCEPTED

    session.revoke(name, table)
    session.suspend_account(name, generate_password())
    assert session.probe(Credential(name, secret)) is ProbeResult.REFUSED
    session.delete_account(name)

    assert session.read_account(name) is None
    assert set(session.read().accounts) == {"bystander"}
    assert all(role_exists(pg, r) for r in ("y", "bystander", HOSTILE_GROUP))
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM public.orders")
        conn.execute(sql.SQL("SELECT count(*) FROM billing.{}").format(sql.Identifier(name)))


# ------------------------------------------------------------------ reachability


def test_a_closed_port_is_unreachable(open_session: OpenSession) -> None:
    port = localpg.free_port()
    with pytest.raises(TargetUnreachable, match="cannot connect"):
        open_session(dsn=f"postgresql://lockstep_admin@127.0.0.1:{port}/postgres")


def test_a_wrong_admin_password_is_unreachable_and_says_why(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    wrong = generate_password().reveal()
    with pytest.raises(TargetUnreachable, match="password authentication failed"):
        open_session(dsn=f"postgresql://{pg.superuser}:{wrong}@127.0.0.1:{pg.port}/postgres")


def test_a_lost_connection_is_unreachable(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    admin(
        pg,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'lockstep'",
    )
    with pytest.raises(TargetUnreachable):
        session.create_account("app", generate_password())
    with pytest.raises(TargetUnreachable):
        session.read()


def test_a_probe_to_a_closed_port_is_unreachable_not_refused(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    secret = create(open_session(), "app")
    session = open_session(probe_port=localpg.free_port())
    with pytest.raises(TargetUnreachable) as caught:
        session.probe(Credential("app", secret))
    assert_clean(caught.value, secret.reveal())


def test_probes_need_tcp_when_the_dsn_uses_a_unix_socket(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    socket_dsn = f"host={pg.socket_dir} port={pg.port} user={pg.superuser} dbname=postgres"
    secret = create(open_session(), "app")
    with pytest.raises(TargetUnreachable, match="probes need TCP"):
        open_session(dsn=socket_dsn).probe(Credential("app", generate_password()))
    over_tcp = open_session(dsn=socket_dsn, probe_host="127.0.0.1", probe_port=pg.port)
    assert over_tcp.probe(Credential("app", secret)) is ProbeResult.ACCEPTED
    assert over_tcp.probe(Credential("app", generate_password())) is ProbeResult.REFUSED


def test_a_working_password_refused_after_authentication_is_still_accepted(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    # The password authenticated; only the database or the connection limit said no: the
    # credential itself works, so a removal must not be taken as proven.
    admin(pg, "CREATE DATABASE locked", "REVOKE CONNECT ON DATABASE locked FROM PUBLIC")
    session = open_session(dsn=pg.dsn("locked"))
    secret = create(session, "app")
    assert session.probe(Credential("app", secret)) is ProbeResult.ACCEPTED
    admin(pg, "ALTER ROLE app CONNECTION LIMIT 0")
    assert open_session().probe(Credential("app", secret)) is ProbeResult.ACCEPTED
