"""A real PostgreSQL estate for the evidence tests, as a pytest plugin (module-scoped, since
building it takes an apply): managed, suspended and orphan accounts (one named with quotes,
a semicolon and HTML), an excluded one, a lease, and a target that cannot be read; the
policy kept in git, with an identity retired in a later commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import _reset_cluster
from lockstep.demo import localpg
from support.cli_project import Lockstep, create_orders_db, project_env
from support.estate_names import HOSTILE

POLICY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
    environment: prod
    manage:
      exclude: [dba_alice]
  cache-db:
    type: postgres
    dsn: ${DOWN_DSN}
owners:
  payments-team:
    contacts: [alice@example.com]
  gone-team:
    contacts: [bob@example.com]
    status: departed
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    environment: prod
    access:
      - target: orders-db
        account: payments_api
        entitlements:
          - SELECT on table public.orders
          - CONNECT on database orders
  legacy-batch:
    owner: gone-team
    purpose: Nightly batch, owner gone
    access:
      - target: orders-db
        account: legacy_batch
        entitlements: [SELECT on table public.orders]
  cache-reader:
    owner: payments-team
    purpose: Read the cache database
    access:
      - target: cache-db
        account: cache_reader
        entitlements: [CONNECT on database cache]
OLD_SVC
rules:
  orphan_accounts: report
"""

OLD_SVC = """\
  old-svc:
    owner: payments-team
    purpose: Retired service
    access:
      - target: orders-db
        account: old_svc
        entitlements: [SELECT on table public.orders]
"""


def git(workdir: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Pat Auditor", "-c", "user.email=pat@example.com", *args],
        cwd=workdir,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def estate(pg_server: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory):
    """An estate after one apply: managed, suspended, orphan (one named with quotes, a
    semicolon and HTML), excluded, a lease, and a target that cannot be read; the policy in
    git, with an identity retired in a later commit."""
    _reset_cluster(pg_server)
    create_orders_db(
        pg_server,
        on_server=[
            "CREATE ROLE legacy_batch LOGIN PASSWORD 'batch-pw-1234567'",
            "CREATE ROLE stray_svc LOGIN PASSWORD 'stray-pw-1234567'",
            "CREATE ROLE dba_alice LOGIN PASSWORD 'alice-pw-1234567'",
            f'CREATE ROLE "{HOSTILE.replace(chr(34), chr(34) * 2)}" LOGIN',
        ],
    )
    workdir = tmp_path_factory.mktemp("estate")
    policy = workdir / "lockstep.yaml"
    policy.write_text(POLICY.replace("OLD_SVC", OLD_SVC))
    git(workdir, "init", "-q")
    git(workdir, "add", "lockstep.yaml")
    git(workdir, "commit", "-q", "-m", "Declare the payments estate")
    env = project_env(
        ORDERS_DB_DSN=pg_server.dsn("orders"),
        DOWN_DSN=f"postgresql://nobody@127.0.0.1:{localpg.free_port()}/cache?connect_timeout=2",
    )
    cli = Lockstep(workdir, env)
    cli("apply", "--yes")  # exits 1: cache-db cannot be read
    policy.write_text(POLICY.replace("OLD_SVC", ""))
    git(workdir, "commit", "-q", "-am", "Retire old-svc")
    issued = cli.json("issue", "payments-api", "--target", "orders-db", "--ttl", "10m")
    yield cli, workdir, issued
    _reset_cluster(pg_server)
