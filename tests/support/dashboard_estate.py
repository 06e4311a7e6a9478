"""A running `lockstep run` with its dashboard over a real PostgreSQL, for the dashboard's
tests: one managed identity, an orphan login role whose name is HTML and script (a hostile
name from a target), a live lease, the operator's token, and personal tokens for an owner's
contacts (alice, amir), a security approver (sam) and an outsider (bob). Requests in prod
need two stages: an owner's contact, then the security group."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from lockstep.demo import localpg
from support.cli_project import ORDERS_TABLE, Lockstep, create_orders_db, project_env
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var
from support.service_harness import Service, eventually

OPERATOR_TOKEN = "operator-token-for-the-dashboard-tests-0123456789"
HOSTILE = '"><img src=/x onerror=alert(1)><script>alert(2)</script>'
PERSON = "alice@example.com"
APPROVER = "amir@example.com"
SECURITY = "sam@example.com"
OUTSIDER = "bob@example.com"
PAY = "INSERT on table public.payments"
GOVERNANCE = {
    "groups": {"security": [SECURITY]},
    "approvals": {
        "prod": [
            {"approvers": ["owner"], "required": 1},
            {"approvers": ["group:security"], "required": 1},
        ]
    },
    "max_duration": {"prod": "7d"},
}
# payments-api reads the orders by policy: approving payments too is refused.
SOD = {"sod": [{"name": "read-or-approve", "entitlements": [
    "orders-db/SELECT on table public.orders", "orders-db/role:approver"]}]}  # fmt: skip
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class DashboardEstate:
    workdir: Path
    pg: localpg.LocalPostgres
    env: dict[str, str]
    service: Service | None = None
    lease_id: str = ""
    person_token: str = ""
    outsider_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # by person
    secrets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.service is not None
        return f"http://127.0.0.1:{self.service.port}"

    def cli(self, *args: str) -> str:
        proc = Lockstep(self.workdir, self.env)(*args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, follow_redirects=False)

    @contextmanager
    def signed_in(self, token: str = OPERATOR_TOKEN) -> Iterator[httpx.Client]:
        with self.client() as client:
            csrf = csrf_of(client.get("/signin").text)
            answer = client.post("/signin", data={"token": token, "csrf": csrf, "next": "/"})
            assert answer.status_code == 303, answer.text
            yield client

    def api(self, person: str, method: str, path: str, **body: object) -> httpx.Response:
        """A call to the service's API as ``person``, with their personal token."""
        with self.client() as client:
            headers = {"Authorization": f"Bearer {self.tokens[person]}"}
            return client.request(method, path, json=body or None, headers=headers)

    def file_request(self, *entitlements: str, duration: str = "1h") -> str:
        """A pending request of alice's for payments-api on orders-db; its id."""
        filed = self.api(
            PERSON, "POST", "/v1/requests", identity="payments-api", target="orders-db",
            entitlements=list(entitlements), reason="incident 42", **{"for": duration},
        )  # fmt: skip
        assert filed.status_code == 201, filed.text
        return str(filed.json()["id"])

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF field in the page"
    return found.group(1)


@contextmanager
def estate_on(
    pg: localpg.LocalPostgres,
    workdir: Path,
    people: dict[str, object] | None = None,
    port: int = 0,
    rules: dict[str, object] | None = None,
) -> Iterator[DashboardEstate]:
    """A started estate (``start_estate``'s ``people``, ``port`` and ``rules``), alone on the
    suite's server while it runs: the cluster is reset before it starts and after it stops."""
    from conftest import _reset_cluster

    _reset_cluster(pg)
    running = start_estate(workdir, pg, people, port, rules)
    try:
        yield running
    finally:
        running.stop()
        _reset_cluster(pg)


def start_estate(
    workdir: Path,
    pg: localpg.LocalPostgres,
    people: dict[str, object] | None = None,
    port: int = 0,
    rules: dict[str, object] | None = None,
    **more_env: str,
) -> DashboardEstate:
    """``people``: the policy's ``governance.people`` (an OIDC issuer, its client); ``port``:
    where the service listens (a redirect URI names it before it starts); ``rules``: more of
    the policy's rules; ``more_env``: more of the service's environment."""
    create_orders_db(
        pg,
        on_server=[f'CREATE ROLE "{HOSTILE.replace(chr(34), chr(34) * 2)}" LOGIN'],
        in_orders=(ORDERS_TABLE, "CREATE TABLE public.payments (id int PRIMARY KEY)"),
    )
    Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"), environment="prod")},
        owners={
            "payments-team": Owner([PERSON, APPROVER]),
            "search-team": Owner([OUTSIDER]),
        },
        identities={
            "payments-api": Identity(
                owner="payments-team",
                purpose="Serve the payments API",
                environment="prod",
                access=[Access("orders-db", "payments_api", ["SELECT on table public.orders"])],
                credentials=Credentials(sink=f"file:{workdir / 'secrets' / 'payments-api.json'}"),
            ),
            "search-indexer": Identity(
                owner="search-team",
                purpose="Index the orders for search",
                environment="prod",
                access=[Access("orders-db", "search_indexer", ["SELECT on table public.orders"])],
            ),
        },
        rules={**SOD, **(rules or {})},
        governance={**GOVERNANCE, **({"people": people} if people else {})},
    ).write(workdir)
    env = project_env(ORDERS_DB_DSN=pg.dsn("orders"), LOCKSTEP_API_TOKEN=OPERATOR_TOKEN, **more_env)
    estate = DashboardEstate(workdir, pg, env)
    estate.service = Service(workdir, env, "--interval", "1s", port=port).wait_ready()
    eventually(lambda: has_role(pg, "payments_api"), "payments_api to be created")
    issued = estate.cli("issue", "payments-api", "--target", "orders-db", "--ttl", "30m", "--json")
    estate.lease_id = re.search(r'"lease_id": "([0-9a-f]+)"', issued).group(1)  # type: ignore[union-attr]
    estate.secrets.append(re.search(r'"password": "([^"]+)"', issued).group(1))  # type: ignore[union-attr]
    for person in (PERSON, APPROVER, SECURITY, OUTSIDER):
        estate.tokens[person] = estate.cli("token", "create", person, "--ttl", "1d").strip()
    estate.person_token = estate.tokens[PERSON]
    estate.outsider_token = estate.tokens[OUTSIDER]
    estate.secrets += [OPERATOR_TOKEN, *estate.tokens.values()]
    with estate.signed_in() as client:
        eventually(
            lambda: (
                "orphan" in client.get("/inventory?status=orphan").text
                and "payments_api" in client.get("/inventory").text
                and estate.lease_id in client.get("/leases").text
            ),
            "the dashboard to show the estate",
        )
    return estate


def has_role(pg: localpg.LocalPostgres, name: str) -> bool:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    return found is not None
