"""The PostgreSQL connector's cheap paths, on a private server holding a large catalog.

- change_token() on 20k login roles and 200k grants (memberships plus table privileges),
  against the floor of any exact answer: counting the rows of the same catalogs.
- issue_lease() and revoke_lease(), each lease a LOGIN role in two group roles (leases
  should hold roles, not table privileges: see docs/postgres.md), against a bare
  ``CREATE ROLE`` / ``DROP ROLE`` round trip on the same connection; issue is timed at
  the default 4096 SCRAM iterations and at 16 (setting ``lease_scram_iterations``), and the
  client-side CPU it costs (mostly PBKDF2) is shown apart.

    /tmp/venv/bin/python bench/postgres_capabilities.py
    /tmp/venv/bin/python bench/postgres_capabilities.py --memberships 2 --leases 500
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from lockstep.connectors.base import Scope
from lockstep.connectors.postgres.connector import PostgresConnectorType, PostgresSession
from lockstep.connectors.postgres.settings import PostgresSettings
from lockstep.connectors.postgres.usage import CATALOG_SUMMARY
from lockstep.demo import localpg
from lockstep.model import LEASE_PREFIX, Target
from lockstep.secret import Secret, generate_password

GROUPS = 50
TABLES = 2000
ROLES = 20_000
GRANTS = 200_000
LEASE_ENTITLEMENTS = frozenset({"role:grp_1", "role:grp_2"})
COUNT_ROWS = """
SELECT (SELECT count(*) FROM pg_roles), (SELECT count(*) FROM pg_shdescription),
       (SELECT count(*) FROM pg_auth_members),
       (SELECT count(*) FROM pg_class WHERE relacl IS NOT NULL),
       (SELECT count(*) FROM pg_namespace), (SELECT count(*) FROM pg_database)
"""


def populate(conn: psycopg.Connection[object], memberships: int) -> tuple[int, int]:
    """ROLES login roles, each in ``memberships`` of GROUPS groups; the rest of GRANTS as
    SELECT on TABLES tables, spread evenly over the roles."""
    per_table = (GRANTS - ROLES * memberships) // TABLES
    loops = (
        "FOR i IN 1..{groups} LOOP EXECUTE format('CREATE ROLE grp_%s NOLOGIN', i); END LOOP",
        "FOR i IN 1..{roles} LOOP EXECUTE format('CREATE ROLE app_%s LOGIN', i); END LOOP",
        "FOR i IN 1..{roles} LOOP FOR j IN 1..{memberships} LOOP"
        " EXECUTE format('GRANT grp_%s TO app_%s', (i + j) % {groups} + 1, i);"
        " END LOOP; END LOOP",
        "FOR i IN 1..{tables} LOOP EXECUTE format('CREATE TABLE t_%s (id int)', i); END LOOP",
        "FOR i IN 1..{tables} LOOP FOR j IN 1..{per_table} LOOP"
        " EXECUTE format('GRANT SELECT ON t_%s TO app_%s', i, (i * 7 + j) % {roles} + 1);"
        " END LOOP; END LOOP",
    )
    sizes = {
        "groups": GROUPS,
        "roles": ROLES,
        "tables": TABLES,
        "memberships": memberships,
        "per_table": per_table,
    }
    with conn.transaction():
        for loop in loops:
            conn.execute("DO $$BEGIN " + loop.format(**sizes) + "; END$$")
    conn.execute("VACUUM ANALYZE")
    return ROLES * memberships, TABLES * per_table


def timed(action: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def backend_cpu_s(conn: psycopg.Connection[object]) -> float:
    """CPU seconds the server process behind ``conn`` has used (the server is local): unlike
    wall time, it does not grow when other jobs compete for the cores."""
    stat = Path(f"/proc/{conn.info.backend_pid}/stat").read_text()
    utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def server_cpu_ms(
    conn: psycopg.Connection[object], action: Callable[[], object], runs: int
) -> float:
    before = backend_cpu_s(conn)
    for _ in range(runs):
        action()
    return (backend_cpu_s(conn) - before) / runs * 1e3


def report(label: str, samples: list[float], baseline: list[float]) -> None:
    median, base = statistics.median(samples), statistics.median(baseline)
    deciles = statistics.quantiles(samples, n=10)
    print(
        f"  {label:<42} p10 {deciles[0] * 1e3:7.3f}  median {median * 1e3:7.3f}"
        f"  p90 {deciles[-1] * 1e3:7.3f} ms  ({median / base:5.1f}x baseline)"
    )


def open_session(server: localpg.LocalPostgres, **settings: object) -> PostgresSession:
    target = Target(
        "bench",
        "postgres",
        None,
        frozenset(),
        False,
        PostgresSettings.model_validate({"dsn": Secret(server.dsn()), **settings}),
    )
    return PostgresConnectorType().open(target, Scope(frozenset(), frozenset()))


def bench_token(server: localpg.LocalPostgres, conn: psycopg.Connection[object]) -> None:
    session = open_session(server)
    rows = conn.execute(COUNT_ROWS).fetchone()
    print(f"change_token (catalog rows: roles, comments, members, ACLs, ...: {rows})")
    session.change_token()

    def count_rows() -> object:
        return conn.execute(COUNT_ROWS).fetchone()

    def summary() -> object:
        # The token's own query, on the bench's connection, whose server process is known.
        return conn.execute(CATALOG_SUMMARY, {"lease_prefix": LEASE_PREFIX}).fetchone()

    baseline = timed(count_rows, 100)
    report("count(*) of the same catalogs (baseline)", baseline, baseline)
    report("change_token()", timed(session.change_token, 100), baseline)
    floor, token = server_cpu_ms(conn, count_rows, 200), server_cpu_ms(conn, summary, 200)
    print(
        f"  server CPU per call: change_token {token:.2f} ms, count(*) {floor:.2f} ms"
        f" ({token / floor:.1f}x)"
    )
    session.close()


def issue_many(session: PostgresSession, prefix: str, n: int) -> list[float]:
    expires_at = datetime.now(UTC) + timedelta(hours=1)
    secrets = [generate_password() for _ in range(n)]
    samples = []
    for i, secret in enumerate(secrets):
        start = time.perf_counter()
        session.issue_lease(f"{prefix}{i}", "app", LEASE_ENTITLEMENTS, secret, expires_at)
        samples.append(time.perf_counter() - start)
    return samples


def revoke_all(session: PostgresSession, prefix: str) -> list[float]:
    samples = []
    for lease in session.list_leases(prefix):
        start = time.perf_counter()
        session.revoke_lease(lease.name)
        samples.append(time.perf_counter() - start)
    return samples


def roles_round_trip(conn: psycopg.Connection[object], statement: str, n: int) -> list[float]:
    samples = []
    for i in range(n):
        query = sql.SQL(statement).format(sql.Identifier(f"bare_{i}"))
        start = time.perf_counter()
        conn.execute(query)
        samples.append(time.perf_counter() - start)
    return samples


def bench_leases(server: localpg.LocalPostgres, conn: psycopg.Connection[object], n: int) -> None:
    print(f"leases ({n} each, entitlements {sorted(LEASE_ENTITLEMENTS)})")
    baseline = roles_round_trip(conn, "CREATE ROLE {}", n)
    report("CREATE ROLE round trip (baseline)", baseline, baseline)
    for iterations in (4096, 16):
        session = open_session(server, lease_scram_iterations=iterations)
        cpu = time.process_time()
        issued = issue_many(session, f"{LEASE_PREFIX}{iterations}_", n)
        cpu_ms = (time.process_time() - cpu) / n * 1e3
        report(f"issue_lease, {iterations} SCRAM iterations", issued, baseline)
        print(
            f"  {'':<42} client CPU {cpu_ms:.3f} ms/lease;"
            f" {n / sum(issued):,.0f} leases/s on one connection"
        )
        session.close()
    drop_baseline = roles_round_trip(conn, "DROP ROLE {}", n)
    report("DROP ROLE round trip (baseline)", drop_baseline, drop_baseline)
    session = open_session(server)
    report("revoke_lease", revoke_all(session, LEASE_PREFIX + "16_"), drop_baseline)
    session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memberships", type=int, default=5, help="group roles per login role")
    parser.add_argument("--leases", type=int, default=1000, help="leases issued per setting")
    args = parser.parse_args()
    server = localpg.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            start = time.perf_counter()
            members, table_grants = populate(conn, args.memberships)
            print(
                f"catalog: {ROLES} login roles, {members} memberships, {table_grants} table "
                f"grants on {TABLES} tables ({time.perf_counter() - start:.1f} s to build)"
            )
            bench_token(server, conn)
            bench_leases(server, conn, args.leases)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
