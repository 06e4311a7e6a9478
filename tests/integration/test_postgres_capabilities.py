"""The PostgreSQL connector's optional capabilities against a real server.

A change token over the catalogs and use seen in pg_stat_activity (leases are in
test_postgres_leases.py). Effects are proven as PostgreSQL decides them: logging in over TCP
with scram-sha-256, catalogs read back, sessions kept or ended.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from lockstep.connectors.base import (
    TargetUnreachable,
)
from lockstep.connectors.postgres.connector import PostgresSession
from lockstep.demo import localpg
from lockstep.model import LEASE_PREFIX
from lockstep.secret import Secret, generate_password
from support.postgres_sessions import (
    OpenSession,
    admin,
    login,
)

pytest_plugins = ("support.postgres_sessions",)

LEASE = LEASE_PREFIX + "3f9a"


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
