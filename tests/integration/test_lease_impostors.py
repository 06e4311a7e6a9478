"""Lockstep owns its lease prefix: an account bearing it that lockstep never issued (no lease
record) is a high-severity `lease_impostor` finding and a planned suspension, proven
refused, never a deletion; `verify` is not in sync until it is gone. A reaper that cannot end
a lease account says so: a finding, a metric and a `/healthz` detail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from lockstep.demo import localpg
from support import cli_project
from support.cli_project import admin, create_orders_db, project_env, refused
from support.policies import Access, Identity, Owner, Policy, Target, Var
from support.service_harness import Service, eventually

pytest_plugins = ("services.redis_server",)

BACKDOOR = "lockstep_lease_backdoor"
BACKDOOR_PW = "backdoor-pw-4242"


def _policy(target: Target) -> Policy:
    return Policy(
        targets={"t": target},
        owners={"team": Owner(["alice@example.com"], status="active")},
        identities={
            "app": Identity(owner="team", purpose="tests", access=[Access("t", "app_user", [])])
        },
    )


@pytest.fixture
def pg_cli(pg: localpg.LocalPostgres, tmp_path: Path) -> cli_project.Lockstep:
    create_orders_db(pg)
    _policy(Target.postgres(Var("DSN"))).write(tmp_path)
    return cli_project.Lockstep(tmp_path, project_env(DSN=pg.dsn("orders")))


@pytest.fixture
def redis_cli(redis_server, tmp_path: Path) -> Iterator[cli_project.Lockstep]:
    from services.redis_server import reset

    reset(redis_server)
    _policy(Target.redis(Var("URL"))).write(tmp_path)
    yield cli_project.Lockstep(tmp_path, project_env(URL=redis_server.url()))
    reset(redis_server)


def impostors(cli: cli_project.Lockstep) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    plan = cli.json("plan")
    found = [f for f in plan["findings"] if f["type"] == "lease_impostor"]
    return found, [(a["op"], a["account"]) for a in plan["actions"] if a["account"] == BACKDOOR]


def test_a_superuser_role_with_the_lease_prefix_is_found_suspended_and_never_dropped(
    pg_cli: cli_project.Lockstep, pg: localpg.LocalPostgres
) -> None:
    assert pg_cli("apply", "--yes").returncode == 0
    with admin(pg) as conn:
        conn.execute(f"CREATE ROLE {BACKDOOR} SUPERUSER LOGIN PASSWORD '{BACKDOOR_PW}'")
    found, planned = impostors(pg_cli)
    assert [(f["severity"], f["account"]) for f in found] == [("high", BACKDOOR)]
    assert found[0]["owasp_nhi"] and found[0]["nist_csf"]
    assert planned == [("suspend_account", BACKDOOR)]
    assert pg_cli("verify").returncode == 2

    applied = pg_cli.json("apply", "--yes")
    [result] = [r for r in applied["results"] if r["account"] == BACKDOOR]
    assert (result["op"], result["status"]) == ("suspend_account", "verified")
    assert refused(pg, BACKDOOR, BACKDOOR_PW)
    with admin(pg) as conn:  # suspended, not dropped
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (BACKDOOR,)).fetchone()
    assert impostors(pg_cli)[1] == []  # nothing more to do ...
    verified = pg_cli("verify", "--json")
    assert verified.returncode == 2  # ... but not in sync while it exists
    assert "lease impostor suspended" in verified.stdout

    with admin(pg) as conn:
        conn.execute(f"DROP ROLE {BACKDOOR}")
    assert pg_cli("verify").returncode == 0
    assert impostors(pg_cli)[0] == []


def test_a_redis_user_with_the_lease_prefix_and_every_permission_is_suspended(
    redis_cli: cli_project.Lockstep, redis_server
) -> None:
    with redis_server.admin() as client:
        client.execute_command("ACL", "SETUSER", BACKDOOR, "on", f">{BACKDOOR_PW}", "~*", "+@all")
    found, planned = impostors(redis_cli)
    assert [f["account"] for f in found] == [BACKDOOR]
    assert planned == [("suspend_account", BACKDOOR)]
    assert redis_cli("apply", "--yes").returncode == 0
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(
            host="127.0.0.1", port=redis_server.port, username=BACKDOOR, password=BACKDOOR_PW
        ).ping()
    assert redis_cli("verify").returncode == 2


def test_a_lease_account_the_reaper_cannot_end_is_a_finding_a_metric_and_a_health_detail(
    pg_cli: cli_project.Lockstep, pg: localpg.LocalPostgres
) -> None:
    assert pg_cli("apply", "--yes").returncode == 0
    with admin(pg) as conn:
        conn.execute(f"CREATE ROLE {BACKDOOR} LOGIN PASSWORD '{BACKDOOR_PW}'")
        conn.execute(
            f"CREATE TABLE public.planted (id int); ALTER TABLE public.planted OWNER TO {BACKDOOR}"
        )
    reaped = pg_cli("reap", "--json")
    assert reaped.returncode == 1
    assert "owns 1 object" in reaped.stdout + reaped.stderr

    service = Service(pg_cli.workdir, pg_cli.env, "--interval", "1s")
    try:
        service.wait_ready()

        def failing() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = service.health()["reaper"]["failing"]
            return found

        [entry] = eventually(failing, "the reaper's failure in /healthz")
        assert entry["account"] == BACKDOOR and "owns 1 object" in entry["detail"]
        assert service.metric("lockstep_lease_reap_failures", target="t") == 1
        findings = eventually(
            lambda: [
                f
                for f in json.loads(pg_cli("findings", "--json").stdout)["findings"]
                if f["account"] == BACKDOOR
            ],
            "the impostor's finding",
        )
        assert findings[0]["type"] == "lease_impostor"
    finally:
        service.stop()
    with psycopg.connect(pg.dsn("orders"), autocommit=True) as conn:
        conn.execute("DROP TABLE public.planted")
