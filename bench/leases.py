"""PostgreSQL leases issued per second, end to end, and revoke latency.

End to end means what ``lockstep issue`` and ``POST /v1/credentials`` do for each lease: the
journal's intent, the lease record, the role (with VALID UNTIL and the identity's grants),
a real login with the new password over TCP (the proof that it works), the credential kept
encrypted for the later proof of revocation, and the journal's result, on the default SQLite
state store. Revoking is NOLOGIN, ending sessions, DROP ROLE, then a login with the old
password that must be refused.

The baseline, timed in the same run against the same server, is what HashiCorp Vault's
PostgreSQL plugin sends per lease: its creation statements in one transaction, with the
password in clear for the server to hash, and no proof that the credential works. Vault's own
published figure for that plugin, about 245 leases/s, is printed as a second reference.

    /tmp/venv/bin/python bench/leases.py                 # 300 leases, 1 and 4 threads
    /tmp/venv/bin/python bench/leases.py --leases 1000 --threads 1 4 8
    /tmp/venv/bin/python bench/leases.py --sqlite-synchronous normal   # what-if: no fsync
                                                                        # per state commit
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import event

from lockstep import localpg
from lockstep.journal import Journal
from lockstep.leases import Lease, LeaseManager
from lockstep.secrets import generate_password
from lockstep.workspace import Workspace

VAULT_REPORTED_PER_S = 245.0

POLICY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
owners:
  team:
    contacts: [team@example.com]
identities:
  payments-api:
    owner: team
    purpose: Serve the payments API
    access:
      - target: orders-db
        account: payments_api
        entitlements: [role:app_readonly]
"""


def prepare(server: localpg.LocalPostgres) -> None:
    """A database whose privileges a group role holds, as leases are best granted: by
    membership, so that issuing one never rewrites a shared object's ACL."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE orders")
        conn.execute("CREATE ROLE app_readonly NOLOGIN")
        conn.execute("GRANT CONNECT ON DATABASE orders TO app_readonly")
    with psycopg.connect(server.dsn("orders"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
        conn.execute("GRANT SELECT ON public.orders TO app_readonly")


def vault_like(server: localpg.LocalPostgres, count: int) -> float:
    """Leases/s issuing what Vault's plugin issues: one transaction of creation statements."""
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with psycopg.connect(server.dsn("orders")) as conn:
        started = time.perf_counter()
        for i in range(count):
            role = sql.Identifier(f"v-token-bench-{i}")
            with conn.transaction():
                conn.execute(
                    sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}").format(
                        role, sql.Literal(generate_password().reveal()), sql.Literal(expires)
                    )
                )
                conn.execute(sql.SQL("GRANT app_readonly TO {}").format(role))
        elapsed = time.perf_counter() - started
        for i in range(count):
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(f"v-token-bench-{i}")))
        conn.commit()
    return count / elapsed


def issue_all(manager: LeaseManager, count: int, threads: int) -> tuple[float, list[Lease]]:
    """Leases/s issuing ``count`` leases from ``threads`` threads at once."""
    issued: list[Lease] = []
    lock = threading.Lock()
    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def work(n: int) -> None:
        for _ in range(n):
            lease, _ = manager.issue("payments-api", "orders-db")
            with lock:
                issued.append(lease)

    workers = [threading.Thread(target=work, args=(n,)) for n in share]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if len(issued) != count:
        raise SystemExit(f"only {len(issued)} of {count} leases were issued")
    return count / elapsed, issued


def revoke_latencies(manager: LeaseManager, leases: list[Lease]) -> list[float]:
    latencies = []
    for lease in leases:
        started = time.perf_counter()
        ended = manager.revoke(lease.id)
        latencies.append(time.perf_counter() - started)
        if not ended.verified:
            raise SystemExit(f"lease {lease.id} not proven revoked: {ended.detail}")
    return latencies


def timed(step: Callable[[], object], count: int) -> float:
    """Mean seconds per call of ``step``."""
    started = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - started) / count


def parts(manager: LeaseManager, journal: Journal, server: localpg.LocalPostgres) -> None:
    """Where one lease's time goes, each part timed alone."""
    lease, credential = manager.issue("payments-api", "orders-db")

    def login() -> None:
        psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            dbname="orders",
            user=credential.username,
            password=credential.secret.reveal(),
        ).close()

    def append() -> None:
        journal.append("bench", {"fingerprint": lease.fingerprint})

    print(f"  one login with the new password (the proof): {timed(login, 50) * 1000:6.2f} ms")
    print(
        f"  one state store commit (a journal append):   {timed(append, 50) * 1000:6.2f} ms; "
        "a lease takes 4 to issue, 3 to revoke"
    )
    manager.revoke(lease.id)


def _synchronous_normal(dbapi_conn: Any, _record: object) -> None:
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=300, help="leases per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--scram-iterations",
        type=int,
        default=None,
        help="the target's lease_scram_iterations (default 4096, as PostgreSQL's own)",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["full", "normal"],
        default="full",
        help="what-if: SQLite's fsync policy for the state store (lockstep uses its default)",
    )
    args = parser.parse_args()

    server = localpg.start()
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-bench-leases-"))
    try:
        prepare(server)
        policy = POLICY
        if args.scram_iterations is not None:
            setting = f"    lease_scram_iterations: {args.scram_iterations}\n"
            policy = policy.replace("owners:\n", setting + "owners:\n")
        (workdir / "lockstep.yaml").write_text(policy)
        os.environ["ORDERS_DB_DSN"] = server.dsn("orders")
        os.environ.pop("LOCKSTEP_STATE", None)
        with Workspace.open(workdir / "lockstep.yaml") as ws:
            if args.sqlite_synchronous == "normal":
                event.listen(ws.store.engine, "connect", _synchronous_normal)
                ws.store.engine.dispose()
            manager = LeaseManager.for_workspace(ws)
            try:
                run(args, manager, ws.journal, server)
            finally:
                manager.close()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(
    args: argparse.Namespace,
    manager: LeaseManager,
    journal: Journal,
    server: localpg.LocalPostgres,
) -> None:
    issue_all(manager, 20, 1)  # warm up: connections, imports, caches
    print(
        f"PostgreSQL leases, {args.leases} per run, {os.cpu_count()} CPUs, "
        f"SQLite synchronous={args.sqlite_synchronous.upper()}, SCRAM iterations "
        f"{args.scram_iterations or 4096}"
    )
    for threads in args.threads:
        # The baseline right before each run: the machine may be busier at one time than
        # at another, and the ratio should compare like with like.
        baseline = vault_like(server, args.leases)
        rate, issued = issue_all(manager, args.leases, threads)
        latencies = revoke_latencies(manager, issued)
        print(f"  baseline, Vault-like SQL, no proof:  {baseline:7.1f} leases/s")
        print(
            f"  lockstep issue, {threads} thread(s):      {rate:7.1f} leases/s, "
            f"x{rate / baseline:.2f} the baseline, "
            f"x{rate / VAULT_REPORTED_PER_S:.2f} Vault's reported {VAULT_REPORTED_PER_S:.0f}/s"
        )
        print(
            f"  lockstep revoke, proven refused:     p50 "
            f"{percentile(latencies, 0.50) * 1000:.1f} ms, p99 "
            f"{percentile(latencies, 0.99) * 1000:.1f} ms"
        )
    parts(manager, journal, server)


if __name__ == "__main__":
    main()
