"""``lockstep demo``: the whole loop, narrated, against a real private PostgreSQL.

Nothing here is simulated: a server is started on 127.0.0.1, drift is made with plain SQL as
an out-of-band admin would, and every verdict printed comes from the same code paths as
``plan``, ``apply``, ``verify`` and ``audit verify``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import psycopg
from rich.console import Console
from rich.panel import Panel

from lockstep.cli import render
from lockstep.connectors.base import Credential, ProbeResult
from lockstep.demo import localpg
from lockstep.engine.audit import verify_state
from lockstep.engine.reconcile import Pass, reconcile
from lockstep.engine.workspace import Workspace
from lockstep.model import Plan
from lockstep.secret import Secret

DSN_VAR = "LOCKSTEP_DEMO_DSN"

POLICY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${LOCKSTEP_DEMO_DSN}
    environment: prod
owners:
  payments-team:
    contacts: [alice@example.com]
    status: active
  reporting-team:
    contacts: [bob@example.com]
    status: {reporting_status}
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    environment: prod
    access:
      - target: orders-db
        account: payments_api
        entitlements:
          - role:app_readonly
          - SELECT on table public.orders
          - USAGE on schema billing
          - CONNECT on database orders
    credentials:
      sink: file:{secrets_dir}/payments-api.json
  reporting-job:
    owner: reporting-team
    purpose: Nightly revenue report
    environment: prod
    access:
      - target: orders-db
        account: reporting_job
        entitlements:
          - SELECT on table public.orders
    credentials:
      sink: file:{secrets_dir}/reporting-job.json
rules:
  orphan_accounts: suspend
  excess_entitlements: revoke
  ownerless_identities: suspend
"""


def run_demo(console: Console, keep: bool = False, workdir: Path | None = None) -> None:
    work = workdir or Path(tempfile.mkdtemp(prefix="lockstep-demo-"))
    console.print(Panel.fit("Lockstep demo: governance and enforcement in lockstep", style="bold"))
    _step(console, "Starting a private PostgreSQL on 127.0.0.1 (passwords checked over TCP)")
    server = localpg.start(work / "pg")
    try:
        console.print(f"  PostgreSQL listening on 127.0.0.1:{server.port}")
        _seed(server)
        os.environ[DSN_VAR] = server.dsn("orders")
        policy_file = work / "lockstep.yaml"
        secrets_dir = work / "secrets"
        _write_policy(policy_file, secrets_dir, "active")
        console.print(f"  Policy written to {policy_file}")
        _narrate(console, server, policy_file, secrets_dir)
    finally:
        if keep:
            console.print(f"\nServer left running on port {server.port}; files in {work}")
        else:
            server.stop()


def _step(console: Console, text: str) -> None:
    console.print(f"\n[bold cyan]==> {text}[/]")


def _write_policy(path: Path, secrets_dir: Path, reporting_status: str) -> None:
    path.write_text(
        POLICY.replace("{secrets_dir}", str(secrets_dir)).replace(
            "{reporting_status}", reporting_status
        )
    )


def _admin(server: localpg.LocalPostgres, database: str = "orders") -> psycopg.Connection:
    return psycopg.connect(server.dsn(database), autocommit=True)


def _seed(server: localpg.LocalPostgres) -> None:
    with _admin(server, "postgres") as conn:
        conn.execute("CREATE DATABASE orders")
        conn.execute("CREATE ROLE app_readonly NOLOGIN")
    with _admin(server) as conn:
        conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY, total numeric)")
        conn.execute("CREATE SCHEMA billing")
        conn.execute("INSERT INTO public.orders VALUES (1, 42.00)")


def _pass(console: Console, policy_file: Path, apply: bool) -> None:
    def gate(seen: Pass) -> Plan | None:
        plan = seen.plan
        render.print_plan(console, plan, findings="all")
        return plan if apply else None

    with Workspace.open(policy_file) as ws, ws.observer() as (observer, desired):
        done = reconcile(ws, observer, desired, gate, lambda r: None)
        if done.results:
            render.print_results(console, done.results)


def _verify(console: Console, policy_file: Path) -> None:
    with Workspace.open(policy_file) as ws, ws.observer() as (observer, desired):
        verification = verify_state(ws, observer, desired)
    render.print_verification(console, verification)


def _narrate(
    console: Console, server: localpg.LocalPostgres, policy_file: Path, secrets_dir: Path
) -> None:
    _step(console, "lockstep plan: the database has none of the declared service accounts yet")
    _pass(console, policy_file, apply=False)

    _step(console, "lockstep apply: create, grant, deliver credentials, verify every action")
    _pass(console, policy_file, apply=True)
    delivered = json.loads((secrets_dir / "reporting-job.json").read_text())
    console.print(
        f"  Credential for reporting_job delivered to {secrets_dir / 'reporting-job.json'} "
        "(mode 0600; the password is never printed)"
    )

    _step(console, "Drift made out of band: a DBA grants DELETE and adds a login nobody declared")
    with _admin(server) as conn:
        conn.execute("GRANT DELETE ON public.orders TO payments_api")
        conn.execute("CREATE ROLE legacy_batch LOGIN")
    console.print(
        "  GRANT DELETE ON public.orders TO payments_api;  CREATE ROLE legacy_batch LOGIN;"
    )

    _step(
        console, "lockstep apply: the excess grant is revoked, the orphan suspended, all verified"
    )
    _pass(console, policy_file, apply=True)

    _step(console, "The reporting team leaves the company: its owner is marked departed")
    _write_policy(policy_file, secrets_dir, "departed")
    _pass(console, policy_file, apply=True)

    _step(console, "Proof: reporting_job's delivered password is refused over TCP")
    old = Credential(delivered["username"], Secret(delivered["password"]))
    console.print(f"  login as reporting_job with its old password: [bold]{_try(server, old)}[/]")

    _step(console, "lockstep verify: live state against the policy, old credentials re-probed")
    _verify(console, policy_file)

    _step(console, "lockstep audit verify: the journal's hash chain")
    with Workspace.open(policy_file) as ws:
        report = ws.journal.verify()
    verdict = "[green]intact[/]" if report.ok else f"[red]broken at {report.first_bad}[/]"
    console.print(f"  {report.entries} journal entries, chain {verdict}")
    console.print("\n[bold green]Demo complete.[/]")


def _try(server: localpg.LocalPostgres, credential: Credential) -> str:
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            dbname="orders",
            user=credential.username,
            password=credential.secret.reveal(),
            connect_timeout=5,
        ):
            return str(ProbeResult.ACCEPTED)
    except psycopg.OperationalError:
        return str(ProbeResult.REFUSED)
