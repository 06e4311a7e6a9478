"""The service's details, against a real PostgreSQL: /healthz says since when the policy on
disk does not load; ``run --dry-run`` reads and plans but never applies; every API error,
FastAPI's own included, has one shape; the service's log lines (alembic's too) are JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockstep.demo import localpg
from support.cli_project import admin, create_orders_db, project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var
from support.service_harness import Service, eventually

POLICY = Policy(
    targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"))},
    owners={"team": Owner(["a@example.com"])},
    identities={
        "reporting": Identity(
            owner="team",
            purpose="Reports",
            access=[Access("orders-db", "reporting", ["SELECT on table public.orders"])],
        )
    },
)


@pytest.fixture
def service(pg: localpg.LocalPostgres, tmp_path: Path):
    create_orders_db(pg)
    POLICY.write(tmp_path)
    env = project_env(ORDERS_DB_DSN=pg.dsn("orders"))
    started: list[Service] = []

    def start(*args: str) -> Service:
        svc = Service(tmp_path, env, "--interval", "1s", *args)
        started.append(svc)
        return svc.wait_ready()

    yield start
    for svc in started:
        svc.stop()
        svc.close()


def roles(pg: localpg.LocalPostgres) -> set[str]:
    with admin(pg) as conn:
        return {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}


def test_healthz_says_since_when_the_policy_does_not_load(service, tmp_path: Path) -> None:
    svc = service()
    assert svc.health()["policy"] == "valid"
    (tmp_path / "lockstep.yaml").write_text("version: 1\ntargets: [\n")
    invalid = eventually(
        lambda: (h := svc.health())["policy"].startswith("invalid since ") and h, "invalid"
    )
    assert invalid["policy_errors"] and "malformed YAML" in invalid["policy_errors"][0]
    since = invalid["policy"]
    assert eventually(lambda: svc.health()["policy"] == since, "the same since")
    POLICY.write(tmp_path)
    eventually(lambda: svc.health()["policy"] == "valid", "valid again")


def test_dry_run_reports_what_is_due_and_applies_nothing(service, pg) -> None:
    svc = service("--dry-run")
    assert svc.health()["mode"] == "dry-run"
    eventually(lambda: svc.events("dry run: actions due, not applied"), "a planned pass")
    planned = svc.events("dry run: actions due, not applied")[0]
    assert planned["target"] == "orders-db" and "create_account" in planned["ops"]
    assert "reporting" not in roles(pg)


def test_every_api_error_has_one_shape(service) -> None:
    svc = service()
    for response in (
        svc.get("/v1/no-such-route"),
        svc.http.post("/healthz"),
        svc.get("/v1/findings?status=bogus"),
        svc.http.post("/v1/reconcile?target=nope"),
        svc.http.post("/v1/credentials", content=b"{not json"),
    ):
        assert response.status_code >= 400, response.text
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str), body


def test_every_log_line_is_json(service) -> None:
    svc = service()
    eventually(lambda: svc.passes("orders-db") >= 1, "a pass")
    lines = [line for line in svc.text().splitlines() if line.strip()]
    assert any("alembic" in line for line in lines)
    for line in lines:
        json.loads(line)
