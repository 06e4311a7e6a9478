"""Leases as a person reads them, against a real PostgreSQL: ``leases --status active``
never lists an expired lease, ``lockstep lease ID`` looks one up, and ``renew --ttl`` past
the identity's maximum is refused as ``issue`` refuses it, or says it capped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lockstep.demo import localpg
from support.cli_project import Lockstep, create_orders_db, project_env
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var


@pytest.fixture
def cli(pg: localpg.LocalPostgres, tmp_path: Path) -> Lockstep:
    create_orders_db(pg)
    Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"))},
        owners={"team": Owner(["a@example.com"])},
        identities={
            "reporting": Identity(
                owner="team",
                purpose="Reports",
                access=[Access("orders-db", "reporting", ["SELECT on table public.orders"])],
                credentials=Credentials(lease_ttl="10m", lease_max_ttl="1h"),
            )
        },
    ).write(tmp_path)
    lockstep = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=pg.dsn("orders")))
    assert lockstep("apply", "--yes").returncode == 0
    return lockstep


def issue(cli: Lockstep, *args: str) -> str:
    issued = cli("issue", "reporting", "--target", "orders-db", "--json", *args)
    assert issued.returncode == 0, issued.stderr
    return str(json.loads(issued.stdout)["lease_id"])


def test_an_expired_lease_is_never_listed_as_active(cli: Lockstep) -> None:
    brief = issue(cli, "--ttl", "1s")
    lasting = issue(cli)
    time.sleep(2)
    active = [lease["lease_id"] for lease in cli.json("leases", "--status", "active")["leases"]]
    assert active == [lasting]
    (expired,) = cli.json("leases", "--status", "expired")["leases"]
    assert expired["lease_id"] == brief and expired["awaiting_reaper"] is True
    assert "awaiting the reaper" in cli("leases").stdout
    assert cli("reap").returncode == 0
    (reaped,) = cli.json("leases", "--status", "expired")["leases"]
    assert reaped["awaiting_reaper"] is False


def test_a_lease_is_looked_up_by_its_id(cli: Lockstep) -> None:
    lease_id = issue(cli)
    found = cli.json("lease", lease_id)
    assert found["lease_id"] == lease_id and found["status"] == "active"
    assert "password" not in found
    shown = cli("lease", lease_id)
    assert shown.returncode == 0 and lease_id in shown.stdout and "orders-db" in shown.stdout
    missing = cli("lease", "0" * 16)
    assert missing.returncode == 1 and "0" * 16 in missing.stderr


def test_renew_past_the_maximum_is_refused_like_issue(cli: Lockstep) -> None:
    lease_id = issue(cli)
    refused_issue = cli("issue", "reporting", "--target", "orders-db", "--ttl", "2h", "--json")
    refused_renew = cli("renew", lease_id, "--ttl", "2h")
    assert refused_issue.returncode == refused_renew.returncode == 1
    assert "longer than identity 'reporting' allows" in refused_renew.stderr
    renewed = cli.json("renew", lease_id, "--ttl", "30m")
    assert renewed["capped"] is False
    capped = cli("renew", lease_id, "--ttl", "1h")
    assert capped.returncode == 0 and "Capped at the lease's maximum lifetime" in capped.stdout
