"""The PostgreSQL connector's optional capabilities against a real server.

A change token over the catalogs, use seen in pg_stat_activity, and one LOGIN role per lease
expiring natively with VALID UNTIL. Effects are proven as PostgreSQL decides them: logging
in over TCP with scram-sha-256, catalogs read back, sessions kept or ended.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from pydantic import ValidationError

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    LeaseAccount,
    LeaseOrder,
    ProbeResult,
    TargetUnreachable,
)
from lockstep.connectors.postgres.connector import PostgresSession
from lockstep.connectors.postgres.leases import LEASE_MARKER
from lockstep.demo import localpg
from lockstep.model import LEASE_PREFIX
from lockstep.secret import Secret, generate_password
from support.postgres_sessions import (
    CONNECTOR,
    OpenSession,
    admin,
    assert_clean,
    assert_session_ended,
    login,
    query,
    role_exists,
)

pytest_plugins = ("support.postgres_sessions",)

LEASE = LEASE_PREFIX + "3f9a"
IN_AN_HOUR = timedelta(hours=1)


def create(session: PostgresSession, account: str) -> Secret:
    secret = generate_password()
    session.create_account(account, secret)
    return secret


def non_superuser_admin(pg: localpg.LocalPostgres) -> str:
    """A DSN for an admin that can create roles but is no superuser."""
    password = generate_password()
    admin(
        pg,
        sql.SQL("CREATE ROLE ops_admin LOGIN CREATEROLE PASSWORD {}").format(
            sql.Literal(password.reveal())
        ),
    )
    return f"postgresql://ops_admin:{password.reveal()}@127.0.0.1:{pg.port}/postgres"


# ------------------------------------------------------------------ change token

BASELINE = (
    "CREATE ROLE app_readonly NOLOGIN",
    "CREATE ROLE app LOGIN",
    "CREATE TABLE public.orders (id int)",
    "CREATE SCHEMA billing",
    "GRANT SELECT ON public.orders TO app",
    "GRANT app_readonly TO app",
)

OUT_OF_BAND_CHANGES = {
    "create role": "CREATE ROLE intruder LOGIN",
    "drop role": "DROP ROLE app_readonly",
    "rename role": "ALTER ROLE app RENAME TO app2",
    "nologin": "ALTER ROLE app NOLOGIN",
    "valid until": "ALTER ROLE app VALID UNTIL '2031-01-01 00:00+00'",
    "comment on role": "COMMENT ON ROLE app IS 'hand-made'",
    "grant on table": "GRANT INSERT ON public.orders TO app",
    "revoke on table": "REVOKE SELECT ON public.orders FROM app",
    "grant on schema": "GRANT USAGE ON SCHEMA billing TO app",
    "grant on database": "GRANT CREATE ON DATABASE postgres TO app",
    "grant role": "GRANT app_readonly TO app_readonly_too",
    "revoke role": "REVOKE app_readonly FROM app",
    "rename granted table": "ALTER TABLE public.orders RENAME TO orders_old",
    "new owner of granted table": "ALTER TABLE public.orders OWNER TO app",
}


@pytest.mark.parametrize("change", OUT_OF_BAND_CHANGES.values(), ids=OUT_OF_BAND_CHANGES.keys())
def test_every_out_of_band_change_a_read_would_see_changes_the_token(
    pg: localpg.LocalPostgres, open_session: OpenSession, change: str
) -> None:
    admin(pg, *BASELINE, "CREATE ROLE app_readonly_too LOGIN")
    session = open_session()
    before = session.change_token()
    admin(pg, change)
    assert session.change_token() != before


def test_the_token_is_stable_while_nothing_changes(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *BASELINE)
    session = open_session()
    assert session.change_token() == session.change_token()
    assert open_session().change_token() == session.change_token()


def test_unrelated_writes_leave_the_token_unchanged(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *BASELINE)
    session = open_session()
    before = session.change_token()
    admin(
        pg,
        "INSERT INTO public.orders SELECT generate_series(1, 1000)",
        "UPDATE public.orders SET id = id + 1",
        "DELETE FROM public.orders WHERE id < 10",
        "VACUUM ANALYZE public.orders",
        "TRUNCATE public.orders",
        "CREATE TABLE public.scratch (id int)",  # no grant on it: nothing a read reports
        "ALTER ROLE app PASSWORD 'not-reported-by-a-read'",
    )
    assert session.change_token() == before


def test_lease_churn_leaves_the_token_unchanged(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    # Leases come and go by the thousand and are the reaper's business, not the plan's.
    admin(pg, *BASELINE)
    session = open_session()
    before = session.change_token()
    credential = session.issue_lease(
        LEASE,
        "app",
        frozenset({"role:app_readonly"}),
        generate_password(),
        datetime.now(UTC) + timedelta(seconds=1),
    )
    assert session.change_token() == before
    with login(pg, LEASE, credential.secret):
        time.sleep(1.1)  # past its expiry
        assert session.change_token() == before
    session.revoke_lease(LEASE)
    assert session.change_token() == before


def test_the_token_changes_when_an_expiry_passes(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    # A read reports the account disabled from then on, though no catalog row changed.
    soon = datetime.now(UTC) + timedelta(seconds=1)
    admin(pg, sql.SQL("CREATE ROLE app LOGIN VALID UNTIL {}").format(sql.Literal(soon.isoformat())))
    session = open_session()
    before = session.change_token()
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    assert session.change_token() != before


def test_an_admin_without_superuser_gets_a_token_too(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *BASELINE)
    session = open_session(dsn=non_superuser_admin(pg))
    before = session.change_token()
    admin(pg, "GRANT UPDATE ON public.orders TO app")
    assert session.change_token() != before


def test_a_lost_connection_makes_the_token_unreachable(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    admin(
        pg,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'lockstep'",
    )
    with pytest.raises(TargetUnreachable, match="change token"):
        session.change_token()


# ------------------------------------------------------------------ usage


def test_an_idle_session_was_last_used_when_its_last_statement_ended(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    secret = create(session, "app")
    with login(pg, "app", secret) as workload:
        workload.execute("SELECT 1")
        row = workload.execute("SELECT clock_timestamp()").fetchone()
        seen = session.observe_usage()
    assert row is not None
    idle_since = row[0]
    assert [(u.account, u.entitlement, u.source) for u in seen] == [
        ("app", None, "pg_stat_activity")
    ]
    assert idle_since <= seen[0].last_used < datetime.now(UTC)


def test_a_session_inside_a_transaction_is_in_use_now(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    secret = create(session, "app")
    with login(pg, "app", secret) as workload:
        workload.execute("BEGIN")
        workload.execute("SELECT 1")
        time.sleep(0.05)
        sampled = datetime.now(UTC)
        (seen,) = session.observe_usage()
        workload.execute("COMMIT")
    assert seen.account == "app" and seen.last_used >= sampled


def test_only_in_scope_accounts_with_sessions_are_reported(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session(excluded=("dba_alice",))
    app, dba = create(session, "app"), generate_password()
    create(session, "never_logged_in")
    admin(
        pg,
        sql.SQL("CREATE ROLE dba_alice LOGIN PASSWORD {}").format(sql.Literal(dba.reveal())),
    )
    with login(pg, "app", app), login(pg, "dba_alice", dba):
        seen = session.observe_usage()
    assert [u.account for u in seen] == ["app"]


def test_lockstep_probes_are_not_use(pg: localpg.LocalPostgres, open_session: OpenSession) -> None:
    session = open_session()
    secret = create(session, "app")
    with login(pg, "app", secret, application_name="lockstep-probe"):
        assert session.observe_usage() == []


def test_usage_hidden_from_the_admin_is_unknown_not_absent(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session(dsn=non_superuser_admin(pg), excluded=(pg.superuser,))
    secret = create(session, "app")
    with login(pg, "app", secret):
        with pytest.raises(TargetUnreachable, match="pg_read_all_stats"):
            session.observe_usage()
        admin(pg, "GRANT pg_read_all_stats TO ops_admin")
        assert [u.account for u in session.observe_usage()] == ["app"]


# ------------------------------------------------------------------ leases

LEASED = (
    "CREATE ROLE app_readonly NOLOGIN",
    "CREATE TABLE public.orders (id int)",
    "CREATE SCHEMA billing",
)
ENTITLEMENTS = frozenset(
    {
        "role:app_readonly",
        "SELECT on table public.orders",
        "USAGE on schema billing",
        "CONNECT on database postgres",
    }
)


def issue(
    session: PostgresSession,
    name: str = LEASE,
    entitlements: frozenset[str] = ENTITLEMENTS,
    expires_at: datetime | None = None,
) -> Credential:
    return session.issue_lease(
        name,
        "payments_api",
        entitlements,
        generate_password(),
        expires_at or datetime.now(UTC) + IN_AN_HOUR,
    )


def test_a_lease_is_a_login_holding_the_entitlements_until_its_expiry(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *LEASED)
    session = open_session()
    expires_at = datetime.now(UTC) + IN_AN_HOUR
    credential = issue(session, expires_at=expires_at)

    assert credential.username == LEASE
    assert session.probe(credential) is ProbeResult.ACCEPTED
    account = session.read_account(LEASE)
    assert account is not None and account.enabled
    assert account.entitlements == ENTITLEMENTS
    assert account.valid_until == expires_at
    comment = query(pg, "SELECT shobj_description(%s::regrole, 'pg_authid')", LEASE)
    assert comment == [(LEASE_MARKER,)]
    with login(pg, LEASE, credential.secret) as workload:
        assert workload.execute("SELECT count(*) FROM public.orders").fetchone() == (0,)


def test_an_expired_lease_is_refused_at_login_without_any_lockstep_action(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    session = open_session()
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    credential = issue(session, entitlements=frozenset(), expires_at=expires_at)
    assert session.probe(credential) is ProbeResult.ACCEPTED
    session.close()  # lockstep is gone from here on

    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.2)

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(pg, LEASE, credential.secret)
    assert open_session().probe(credential) is ProbeResult.REFUSED


def test_a_failed_grant_leaves_no_half_made_lease(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *LEASED)
    session = open_session()
    secret = generate_password()
    with pytest.raises(ActionFailed, match="missing") as caught:
        session.issue_lease(
            LEASE,
            "payments_api",
            ENTITLEMENTS | {"SELECT on table public.missing"},
            secret,
            datetime.now(UTC) + IN_AN_HOUR,
        )
    assert_clean(caught.value, secret.reveal())
    assert not role_exists(pg, LEASE)
    members = "SELECT count(*) FROM pg_auth_members WHERE roleid = 'app_readonly'::regrole"
    assert query(pg, members) == [(0,)]
    assert session.list_leases(LEASE_PREFIX) == []


def test_issuing_a_lease_that_exists_fails_and_keeps_the_first(
    open_session: OpenSession,
) -> None:
    session = open_session()
    first = issue(session, entitlements=frozenset())
    with pytest.raises(ActionFailed, match="already exists"):
        issue(session, entitlements=frozenset())
    assert session.probe(first) is ProbeResult.ACCEPTED


def order(
    name: str,
    entitlements: frozenset[str] = ENTITLEMENTS,
    expires_at: datetime | None = None,
) -> LeaseOrder:
    expires = expires_at or datetime.now(UTC).replace(microsecond=0) + IN_AN_HOUR
    return LeaseOrder(name, "payments_api", entitlements, generate_password(), expires)


def test_a_batch_of_leases_is_made_at_once_and_reads_back_as_ordered(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *LEASED)
    session = open_session()
    orders = [order(f"{LEASE}{i}") for i in range(20)]
    credentials = session.issue_leases(orders)
    assert [c.username for c in credentials] == [o.account for o in orders]
    assert session.lease_problems(orders) == {}
    for credential in credentials[::7]:
        assert session.probe(credential) is ProbeResult.ACCEPTED
    assert session.issue_leases([]) == []


def test_a_batch_with_one_bad_order_makes_none_of_its_leases(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *LEASED)
    session = open_session()
    bad = order(f"{LEASE}bad", ENTITLEMENTS | {"SELECT on table public.missing"})
    orders = [order(f"{LEASE}1"), bad, order(f"{LEASE}2")]
    with pytest.raises(ActionFailed, match="missing") as caught:
        session.issue_leases(orders)
    for each in orders:
        assert_clean(caught.value, each.secret.reveal())
    assert session.list_leases(LEASE_PREFIX) == []


def test_read_back_names_what_is_wrong_with_each_lease(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *LEASED)
    session = open_session()
    fine, nologin, moved, lacking, missing = (
        order(f"{LEASE}{word}") for word in ("fine", "nologin", "moved", "lacking", "missing")
    )
    session.issue_leases([fine, nologin, moved, lacking])
    admin(
        pg,
        sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(nologin.account)),
        sql.SQL("ALTER ROLE {} VALID UNTIL '2031-01-01 00:00+00'").format(
            sql.Identifier(moved.account)
        ),
        sql.SQL("REVOKE app_readonly FROM {}").format(sql.Identifier(lacking.account)),
        sql.SQL("REVOKE USAGE ON SCHEMA billing FROM {}").format(sql.Identifier(lacking.account)),
    )
    problems = session.lease_problems([fine, nologin, moved, lacking, missing])
    assert problems == {
        nologin.account: "the role cannot log in",
        moved.account: (
            f"the role has expiry 2031-01-01T00:00:00+00:00, not {moved.expires_at.isoformat()}"
        ),
        lacking.account: "not in effect: USAGE on schema billing, role:app_readonly",
        missing.account: "the role is missing",
    }


def test_read_back_counts_privileges_held_through_membership_and_quotes_hostile_names(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(
        pg,
        'CREATE SCHEMA "we;ird"',
        'CREATE TABLE "we;ird"."ta""ble; DROP ROLE y" (id int)',
        "CREATE ROLE y NOLOGIN",
        'GRANT USAGE ON SCHEMA "we;ird" TO y',
    )
    session = open_session()
    hostile = frozenset(
        {'SELECT on table "we;ird"."ta""ble; DROP ROLE y"', 'USAGE on schema "we;ird"', "role:y"}
    )
    lease = order(f"{LEASE}q", hostile)
    session.issue_leases([lease])
    assert session.lease_problems([lease]) == {}
    admin(
        pg,
        sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}").format(
            sql.Identifier("we;ird"), sql.Identifier(lease.account)
        ),
    )
    # Still in effect: y, which the lease is a member of, holds it too.
    assert session.lease_problems([lease]) == {}
    assert role_exists(pg, "y")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("payments_api", "lease accounts are named"),
        (LEASE_PREFIX, "lease accounts are named"),
        (LEASE_PREFIX + "x" * 60, "PostgreSQL keeps at most 63"),
        ("pg_" + LEASE_PREFIX, "lease accounts are named"),
    ],
)
def test_lease_names_must_carry_the_prefix_and_fit(
    pg: localpg.LocalPostgres, open_session: OpenSession, name: str, message: str
) -> None:
    session = open_session()
    with pytest.raises(ActionFailed, match=message):
        issue(session, name=name, entitlements=frozenset())
    for attempt in (
        lambda: session.renew_lease(name, datetime.now(UTC) + IN_AN_HOUR),
        lambda: session.revoke_lease(name),
    ):
        with pytest.raises(ActionFailed, match=message):
            attempt()
    assert session.list_leases(LEASE_PREFIX) == []


def test_an_excluded_lease_name_is_never_touched(open_session: OpenSession) -> None:
    session = open_session(excluded=(LEASE,))
    with pytest.raises(ActionFailed, match="excluded"):
        issue(session, entitlements=frozenset())


def test_bad_lease_inputs_fail_clearly_without_the_secret(open_session: OpenSession) -> None:
    session = open_session()
    naive = datetime(2030, 1, 1, 12, 0)
    with pytest.raises(ActionFailed, match="no time zone"):
        issue(session, entitlements=frozenset(), expires_at=naive)
    for weak in (Secret("short-but-s3cret"), Secret("ü" * 32)):
        with pytest.raises(ActionFailed, match="at least 24 printable ASCII") as caught:
            session.issue_lease(
                LEASE, "payments_api", frozenset(), weak, datetime.now(UTC) + IN_AN_HOUR
            )
        assert_clean(caught.value, weak.reveal())
    with pytest.raises(ActionFailed, match="accepted forms"):
        issue(session, entitlements=frozenset({"ALL on table public.orders"}))
    assert session.list_leases(LEASE_PREFIX) == []


def test_lease_verifiers_are_scram_with_the_configured_iterations(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    default = issue(open_session(), name=LEASE + "_a", entitlements=frozenset())
    fast = issue(
        open_session(lease_scram_iterations=16), name=LEASE + "_b", entitlements=frozenset()
    )
    stored = dict(
        query(pg, "SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE 'lockstep%%'")
    )
    assert stored[LEASE + "_a"].startswith("SCRAM-SHA-256$4096:")
    assert stored[LEASE + "_b"].startswith("SCRAM-SHA-256$16:")
    for credential in (default, fast):
        assert open_session().probe(credential) is ProbeResult.ACCEPTED
        assert credential.secret.reveal() not in stored[credential.username]


def test_the_iteration_setting_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="lease_scram_iterations"):
        CONNECTOR.settings_model().model_validate({"dsn": "host=db", "lease_scram_iterations": 0})


def test_renew_moves_the_expiry(open_session: OpenSession) -> None:
    session = open_session()
    credential = issue(session, entitlements=frozenset())
    later = datetime.now(UTC) + 2 * IN_AN_HOUR
    session.renew_lease(LEASE, later)
    account = session.read_account(LEASE)
    assert account is not None and account.valid_until == later
    assert session.probe(credential) is ProbeResult.ACCEPTED


def test_an_expired_lease_cannot_be_renewed_back_to_life(open_session: OpenSession) -> None:
    session = open_session()
    credential = issue(
        session, entitlements=frozenset(), expires_at=datetime(2001, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(ActionFailed, match="expired and cannot be renewed"):
        session.renew_lease(LEASE, datetime.now(UTC) + IN_AN_HOUR)
    assert session.probe(credential) is ProbeResult.REFUSED


def test_renewing_a_missing_lease_fails(open_session: OpenSession) -> None:
    with pytest.raises(ActionFailed, match="does not exist"):
        open_session().renew_lease(LEASE, datetime.now(UTC) + IN_AN_HOUR)


def test_revoke_ends_sessions_and_drops_only_the_lease(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, *LEASED)
    session = open_session()
    credential = issue(session)
    workload = login(pg, LEASE, credential.secret)

    session.revoke_lease(LEASE)

    assert_session_ended(workload)
    assert not role_exists(pg, LEASE)
    assert session.probe(credential) is ProbeResult.REFUSED
    assert role_exists(pg, "app_readonly")
    assert query(pg, "SELECT count(*) FROM public.orders") == [(0,)]


def test_revoking_a_lease_already_gone_succeeds(open_session: OpenSession) -> None:
    session = open_session()
    issue(session, entitlements=frozenset())
    session.revoke_lease(LEASE)
    session.revoke_lease(LEASE)


def test_a_lease_that_owns_objects_is_cut_off_but_not_dropped(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE SCHEMA billing")
    session = open_session()
    credential = issue(session, entitlements=frozenset({"CREATE on schema billing"}))
    workload = login(pg, LEASE, credential.secret)
    workload.execute("CREATE TABLE billing.made_by_lease (id int)")

    with pytest.raises(ActionFailed, match=r"owns 1 object\(s\) \(table billing\.made_by_lease\)"):
        session.revoke_lease(LEASE)

    assert_session_ended(workload)
    assert session.probe(credential) is ProbeResult.REFUSED
    assert query(pg, "SELECT count(*) FROM billing.made_by_lease") == [(0,)]


def test_a_privilege_in_another_database_blocks_the_drop_but_not_the_cut_off(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE DATABASE elsewhere")
    session = open_session()
    credential = issue(session, entitlements=frozenset())
    with psycopg.connect(pg.dsn("elsewhere"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute(sql.SQL("GRANT SELECT ON t TO {}").format(sql.Identifier(LEASE)))

    with pytest.raises(ActionFailed, match="cannot be dropped"):
        session.revoke_lease(LEASE)

    assert role_exists(pg, LEASE)
    assert session.probe(credential) is ProbeResult.REFUSED


def test_list_leases_finds_every_lease_by_prefix_with_its_expiry(
    pg: localpg.LocalPostgres, open_session: OpenSession
) -> None:
    admin(pg, "CREATE ROLE payments_api LOGIN", f"CREATE ROLE {LEASE}_excluded LOGIN")
    session = open_session(excluded=(LEASE + "_excluded",))
    soon = datetime.now(UTC) + IN_AN_HOUR
    issue(session, name=LEASE + "_a", entitlements=frozenset(), expires_at=soon)
    issue(session, name=LEASE + "_b", entitlements=frozenset(), expires_at=soon + IN_AN_HOUR)
    admin(pg, f"CREATE ROLE {LEASE}_c LOGIN")  # no record of it anywhere: still found

    assert session.list_leases(LEASE_PREFIX) == [
        LeaseAccount(LEASE + "_a", soon),
        LeaseAccount(LEASE + "_b", soon + IN_AN_HOUR),
        LeaseAccount(LEASE + "_c", None),
    ]
    assert session.list_leases(LEASE + "_b") == [LeaseAccount(LEASE + "_b", soon + IN_AN_HOUR)]
    for too_wide in ("", "lockstep", "payments"):
        with pytest.raises(ActionFailed, match="must start with"):
            session.list_leases(too_wide)


HOSTILE_LEASES = [
    LEASE_PREFIX + 'a"b',
    LEASE_PREFIX + "x'; DROP ROLE y; --",
    LEASE_PREFIX + "$$; DROP ROLE y; $$",
    LEASE_PREFIX + "søren-ü",
]


@pytest.mark.parametrize("name", HOSTILE_LEASES)
def test_hostile_lease_names_round_trip_and_harm_nothing(
    pg: localpg.LocalPostgres, open_session: OpenSession, name: str
) -> None:
    admin(pg, "CREATE ROLE y NOLOGIN", "CREATE TABLE public.orders (id int)")
    session = open_session()
    credential = issue(
        session, name=name, entitlements=frozenset({"role:y", "SELECT on table public.orders"})
    )
    assert session.probe(credential) is ProbeResult.ACCEPTED
    later = datetime.now(UTC) + 2 * IN_AN_HOUR
    session.renew_lease(name, later)
    assert session.list_leases(LEASE_PREFIX) == [LeaseAccount(name, later)]
    session.revoke_lease(name)
    assert session.probe(credential) is ProbeResult.REFUSED
    assert session.list_leases(LEASE_PREFIX) == []
    assert role_exists(pg, "y")
