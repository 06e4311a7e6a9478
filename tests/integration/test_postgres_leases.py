"""The PostgreSQL connector's leases against a real server: one LOGIN role per lease,
expiring natively with VALID UNTIL, made in batches, read back, renewed and revoked, proven
by logging in over TCP with scram-sha-256 and by the sessions kept or ended.
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
