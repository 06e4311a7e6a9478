"""A project with governance, run as a real `lockstep run` over a real PostgreSQL: people with
personal tokens, the CLI's request commands against the service, and what the database and
the journal say afterwards."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from lockstep.demo import localpg
from support.cli_project import Lockstep, admin, project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var
from support.service_harness import Service, journal

ORDERS_READ = "SELECT on table public.orders"
PAYMENTS_WRITE = "INSERT on table public.payments"
GOVERNANCE: dict[str, Any] = {
    "groups": {"security": ["sam@example.com"]},
    "approvals": {
        "prod": [
            {"approvers": ["owner"], "required": 1},
            {"approvers": ["group:security"], "required": 1},
        ]
    },
    "max_duration": {"prod": "7d"},
}
SETUP = (
    "CREATE TABLE public.orders (id int PRIMARY KEY)",
    "CREATE TABLE public.payments (id int PRIMARY KEY)",
)


def governed_policy(**rules: Any) -> Policy:
    """payments-api reads orders on orders-db (prod, passed every 10 minutes: anything
    sooner is an event's doing)."""
    return Policy(
        targets={
            "orders-db": Target.postgres(Var("ORDERS_DB_DSN"), environment="prod", interval="10m")
        },
        owners={"payments-team": Owner(["alice@example.com", "amir@example.com"])},
        identities={
            "payments-api": Identity(
                owner="payments-team",
                purpose="Serve the payments API",
                environment="prod",
                access=[Access("orders-db", "payments_api", [ORDERS_READ])],
            )
        },
        rules=rules,
        governance=GOVERNANCE,
    )


class GovernedProject:
    def __init__(self, workdir: Path, pg: localpg.LocalPostgres, state: str | None = None) -> None:
        self.workdir = workdir
        self.pg = pg
        self.env = project_env(ORDERS_DB_DSN=pg.dsn("orders"))
        if state is not None:
            self.env["LOCKSTEP_STATE"] = state
        self.services: list[Service] = []
        self.tokens: dict[str, str] = {}
        self.cli = Lockstep(workdir, self.env)

    @property
    def state(self) -> Path:
        return self.workdir / ".lockstep" / "state.db"

    def start(self, *args: str) -> Service:
        service = Service(self.workdir, self.env, *args, name=f"svc{len(self.services)}")
        self.services.append(service)
        return service.wait_ready()

    def token(self, person: str) -> str:
        if person not in self.tokens:
            made = self.cli("token", "create", person, "--ttl", "1h")
            assert made.returncode == 0, made.stderr
            self.tokens[person] = made.stdout.strip()
        return self.tokens[person]

    def as_person(
        self, person: str, *args: str, service: Service | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The CLI run by ``person``, against ``service`` (the last one started by default)."""
        token = self.token(person)
        url = f"http://127.0.0.1:{(service or self.services[-1]).port}"
        runner = Lockstep(self.workdir, {**self.env, "LOCKSTEP_URL": url, "LOCKSTEP_TOKEN": token})
        proc = runner(*args)
        self.cli.outputs += runner.outputs
        return proc

    def request(
        self, *entitlements: str, duration: str = "1h", person: str = "alice@example.com"
    ) -> str:
        args = ["request", "payments-api", "--target", "orders-db", "--for", duration]
        for ent in entitlements:
            args += ["--entitlement", ent]
        filed = self.as_person(person, *args, "--reason", "incident 42", "--json")
        assert filed.returncode == 0, filed.stderr
        request_id: str = json.loads(filed.stdout)["id"]
        return request_id

    def approve_both_stages(self, request_id: str) -> None:
        for person in ("amir@example.com", "sam@example.com"):
            done = self.as_person(person, "approve", request_id)
            assert done.returncode == 0, done.stderr

    def grant(self, request_id: str) -> dict[str, Any]:
        shown = self.as_person("sam@example.com", "requests", "--json")
        assert shown.returncode == 0, shown.stderr
        found: dict[str, Any] = next(
            r for r in json.loads(shown.stdout)["requests"] if r["id"] == request_id
        )
        return found

    def status(self, request_id: str) -> str:
        return str(self.grant(request_id)["status"])

    def journal(self, kind: str) -> list[dict[str, Any]]:
        return journal(self.state, kind) if self.state.exists() else []


def table_privileges(pg: localpg.LocalPostgres, role: str) -> set[str]:
    with admin(pg) as conn:
        rows = conn.execute(
            "SELECT privilege_type || ' on ' || table_name"
            " FROM information_schema.role_table_grants WHERE grantee = %s",
            (role,),
        ).fetchall()
    return {r for (r,) in rows}
