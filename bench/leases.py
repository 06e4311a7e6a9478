"""PostgreSQL leases issued per second, end to end, issue latency and revoke latency.

End to end means what ``lockstep issue`` and ``POST /v1/credentials`` do for each lease, on
the default SQLite state store (fsync on every commit): the journal's intent and the lease
record, committed before the target is touched; the role, with VALID UNTIL and the
identity's grants; the proof (every lease of a batch read back, and a real login over TCP
with the batch's first credential); the credential kept encrypted for the later proof of
revocation, and the journal's result. Requests arrive from ``--clients`` threads at once, as
concurrent API requests do; leases requested together are issued in batches.

Two targets on one server: ``default`` with PostgreSQL's own 4096 SCRAM iterations, and
``fast`` with ``lease_scram_iterations: 1024`` (docs/postgres.md says when that is sound).
PBKDF2 dominates a lease's cost twice over: lockstep computes the verifier, and CREATE ROLE
runs the same PBKDF2 on the server to check it against an empty password.

Revocation is timed one lease at a time (latency), then for every lease whose id starts
with one hex digit (``revoke_where(prefix=...)``, several at a time), each credential proven
refused by a login attempt.

Baselines, timed in the same run against the same server:

- target alone: lockstep's own SQL for the same leases (verifiers computed here, batches of
  64 on two connections) with no state, no journal and no proof: what the target can take,
  so that ``ratio`` is the share of it lockstep delivers with its bookkeeping and proofs.
- Vault-like: what HashiCorp Vault's PostgreSQL plugin sends per lease, its creation
  statements in one transaction, with the password in clear for the server to hash, on one
  connection; Vault's own published figure for the plugin, about 245 leases/s, is printed
  beside it.

    /tmp/venv/bin/python bench/leases.py                  # 3000 leases per run, ~1 minute
    /tmp/venv/bin/python bench/leases.py --leases 6000 --clients 1 64 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from lockstep.connectors.postgres import leases as postgres_leases
from lockstep.demo import localpg
from lockstep.engine.workspace import Workspace
from lockstep.leases.manager import Lease, LeaseManager
from lockstep.secret import generate_password

VAULT_REPORTED_PER_S = 245.0
TARGETS = {"default": 4096, "fast": 1024}

POLICY = """\
version: 1
targets:
  default:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
  fast:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
    lease_scram_iterations: 1024
owners:
  team:
    contacts: [team@example.com]
identities:
  payments-api:
    owner: team
    purpose: Serve the payments API
    access:
      - target: default
        account: payments_api
        entitlements: [role:app_readonly]
      - target: fast
        account: payments_api
        entitlements: [role:app_readonly]
    credentials:
      max_live_leases: 100000  # the benchmark holds thousands of leases at once
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


def target_alone(server: localpg.LocalPostgres, count: int, iterations: int, run: str) -> float:
    """Leases/s the target takes for lockstep's SQL alone: batches of 64, two connections."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    names = [f"bench_{run}_{i}" for i in range(count)]

    def batch(chunk: list[str]) -> None:
        grant = sql.SQL("GRANT app_readonly TO {}")
        statements = [
            postgres_leases.issue_statements(
                name,
                postgres_leases.scram_verifier(generate_password(), iterations),
                expires,
                [grant.format(sql.Identifier(name))],
            )
            for name in chunk
        ]
        with psycopg.connect(server.dsn("orders"), autocommit=True) as conn:
            conn.execute(sql.SQL("; ").join(statements), prepare=False)

    chunks = [names[i : i + 64] for i in range(0, count, 64)]
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(batch, chunks))
    elapsed = time.perf_counter() - started
    drop(server, names)
    return count / elapsed


def vault_like(server: localpg.LocalPostgres, count: int, run: str) -> float:
    """Leases/s issuing what Vault's plugin issues: one transaction of creation statements."""
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    names = [f"v-token-{run}-{i}" for i in range(count)]
    with psycopg.connect(server.dsn("orders")) as conn:
        started = time.perf_counter()
        for name in names:
            role = sql.Identifier(name)
            with conn.transaction():
                conn.execute(
                    sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}").format(
                        role, sql.Literal(generate_password().reveal()), sql.Literal(expires)
                    )
                )
                conn.execute(sql.SQL("GRANT app_readonly TO {}").format(role))
        elapsed = time.perf_counter() - started
    drop(server, names)
    return count / elapsed


def drop(server: localpg.LocalPostgres, names: list[str]) -> None:
    with psycopg.connect(server.dsn("orders"), autocommit=True) as conn:
        for start in range(0, len(names), 500):
            roles = sql.SQL(", ").join(sql.Identifier(n) for n in names[start : start + 500])
            conn.execute(sql.SQL("DROP ROLE {}").format(roles))


def issue_all(
    manager: LeaseManager, target: str, count: int, clients: int
) -> tuple[float, list[Lease], list[float]]:
    """Leases/s issuing ``count`` leases from ``clients`` threads at once, and each
    request's latency."""
    issued: list[Lease] = []
    latencies: list[float] = []
    lock = threading.Lock()
    share = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]

    def work(n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            lease, _ = manager.issue("payments-api", target)
            took = time.perf_counter() - started
            with lock:
                issued.append(lease)
                latencies.append(took)

    workers = [threading.Thread(target=work, args=(n,)) for n in share]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if len(issued) != count:
        raise SystemExit(f"only {len(issued)} of {count} leases were issued")
    return count / elapsed, issued, latencies


def revoke_latencies(manager: LeaseManager, leases: list[Lease]) -> list[float]:
    latencies = []
    for lease in leases:
        started = time.perf_counter()
        ended = manager.revoke(lease.id)
        latencies.append(time.perf_counter() - started)
        if not ended.verified:
            raise SystemExit(f"lease {lease.id} not proven revoked: {ended.detail}")
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(values: list[float]) -> str:
    p50, p99 = (percentile(values, share) * 1000 for share in (0.5, 0.99))
    return f"p50 {p50:5.1f} ms, p99 {p99:5.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=3000, help="leases per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--revokes", type=int, default=200, help="leases revoked and timed")
    args = parser.parse_args()

    server = localpg.start()
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-bench-leases-"))
    try:
        prepare(server)
        (workdir / "lockstep.yaml").write_text(POLICY)
        os.environ["ORDERS_DB_DSN"] = server.dsn("orders")
        os.environ.pop("LOCKSTEP_STATE", None)
        with Workspace.open(workdir / "lockstep.yaml") as ws:
            manager = LeaseManager.for_workspace(ws)
            try:
                run(args, manager, server)
            finally:
                manager.close()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, manager: LeaseManager, server: localpg.LocalPostgres) -> None:
    for target in TARGETS:
        issue_all(manager, target, 20, 1)  # warm up: connections, imports, caches
    print(f"PostgreSQL leases, {args.leases} per run, {os.cpu_count()} CPUs")
    header = (
        f"{'target':<8} {'iterations':>10} {'clients':>7} {'issued/s':>9} "
        f"{'target alone/s':>14} {'ratio':>6} {'vault-like/s':>12}  issue latency"
    )
    print(header)
    revoked: list[Lease] = []
    for target, iterations in TARGETS.items():
        for clients in args.clients:
            run_id = f"{target}_{clients}"
            # Baselines right before each run: the machine may be busier at one time than
            # at another, and the ratio should compare like with like.
            alone = target_alone(server, args.leases, iterations, run_id)
            vault = vault_like(server, min(args.leases, 1000), run_id)
            count = args.leases if clients > 1 else min(args.leases, 500)
            rate, issued, latencies = issue_all(manager, target, count, clients)
            print(
                f"{target:<8} {iterations:>10} {clients:>7} {rate:>9.0f} {alone:>14.0f} "
                f"{rate / alone:>6.2f} {vault:>12.0f}  {ms(latencies)}"
            )
            revoked.extend(issued[: args.revokes - len(revoked)])
    print(f"Vault's published figure for its PostgreSQL plugin: {VAULT_REPORTED_PER_S:.0f}/s")
    latencies = revoke_latencies(manager, revoked)
    print(f"revoke, credential proven refused ({len(revoked)} leases): {ms(latencies)}")
    # One hex digit of the random lease ids selects about a sixteenth of what is left.
    started = time.perf_counter()
    ended = manager.revoke_where(prefix="0")
    elapsed = time.perf_counter() - started
    if not all(e.verified for e in ended):
        raise SystemExit("a lease revoked by prefix was not proven refused")
    print(
        f"revoke by prefix, each proven refused: {len(ended)} leases in {elapsed:.1f} s, "
        f"{len(ended) / elapsed:.0f}/s"
    )


if __name__ == "__main__":
    main()
