"""End to end: ``lockstep findings`` and ``lockstep findings accept`` against a real
PostgreSQL, as a user drives them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lockstep.demo import localpg
from support import cli_project
from support.cli_project import create_orders_db, project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var


def policy() -> Policy:
    """Two identities on orders-db holding role:app_readonly, and rules that only report."""
    return Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"), environment="prod")},
        owners={
            "payments-team": Owner(["alice@example.com"], status="active"),
            "reporting-team": Owner(["bob@example.com"], status="active"),
        },
        identities={
            "payments-api": Identity(
                owner="payments-team",
                purpose="Serve the payments API",
                environment="prod",
                access=[Access("orders-db", "payments_api", ["role:app_readonly"])],
            ),
            "reporting-job": Identity(
                owner="reporting-team",
                purpose="Nightly report",
                environment="prod",
                access=[Access("orders-db", "reporting_job", ["role:app_readonly"])],
            ),
        },
        rules={"orphan_accounts": "report", "excess_entitlements": "report"},
    )


CONTRACT_KEYS = {
    "id",
    "type",
    "severity",
    "target",
    "account",
    "entitlement",
    "identity",
    "owasp_nhi",
    "nist_csf",
    "first_seen",
    "status",
}


class Lockstep(cli_project.Lockstep):
    def findings(self, *args: str) -> list[dict[str, Any]]:
        proc = self("findings", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        found: list[dict[str, Any]] = json.loads(proc.stdout)["findings"]
        return found

    def by_type(self, *args: str) -> dict[str, dict[str, Any]]:
        return {f["type"]: f for f in self.findings(*args)}


@pytest.fixture
def db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    """payments_api holds a role the policy does not grant, reporting_job lacks the one it
    grants, and legacy_batch is declared by nobody."""
    return create_orders_db(
        pg,
        on_server=[
            "CREATE ROLE app_readonly NOLOGIN",
            "CREATE ROLE app_admin NOLOGIN",
            "CREATE ROLE payments_api LOGIN IN ROLE app_readonly, app_admin",
            "CREATE ROLE reporting_job LOGIN",
            "CREATE ROLE legacy_batch LOGIN",
        ],
        in_orders=[],
    )


@pytest.fixture
def lockstep(db: localpg.LocalPostgres, tmp_path: Path) -> Iterator[Lockstep]:
    policy().write(tmp_path)
    cli = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=db.dsn("orders")))
    yield cli
    text = "\n".join(cli.outputs)
    assert db.password.reveal() not in text


def admin(pg: localpg.LocalPostgres) -> psycopg.Connection[Any]:
    return psycopg.connect(pg.dsn(), autocommit=True)


def risk_acceptances(cli: Lockstep) -> list[dict[str, Any]]:
    """The journal's risk_acceptance entries."""
    with sqlite3.connect(cli.workdir / ".lockstep" / "state.db") as conn:
        rows = conn.execute(
            "SELECT payload FROM journal WHERE kind = 'risk_acceptance' ORDER BY seq"
        ).fetchall()
    return [json.loads(payload) for (payload,) in rows]


# ---------------------------------------------------------------- listing


def test_findings_lists_each_finding_with_its_lifecycle_in_the_contract_shape(
    lockstep: Lockstep,
) -> None:
    found = lockstep.by_type()
    assert set(found) == {"excess_entitlement", "missing_entitlement", "orphan_account"}
    for f in found.values():
        assert set(f) >= CONTRACT_KEYS
        assert f["status"] == "open" and f["first_seen"] and f["last_seen"]
    excess = found["excess_entitlement"]
    assert (excess["account"], excess["entitlement"]) == ("payments_api", "role:app_admin")
    assert (excess["owasp_nhi"], excess["nist_csf"]) == (["NHI5"], ["PR.AA-05"])
    assert excess["owner"] == "payments-team"
    assert found["orphan_account"]["owner"] is None


def test_a_finding_keeps_its_first_seen_across_runs(lockstep: Lockstep) -> None:
    first = lockstep.by_type()["orphan_account"]
    again = lockstep.by_type()["orphan_account"]
    assert again["first_seen"] == first["first_seen"]
    assert again["last_seen"] > first["last_seen"]


def test_findings_are_filtered_by_type_target_and_owner(lockstep: Lockstep) -> None:
    assert [f["account"] for f in lockstep.findings("--type", "orphan_account")] == ["legacy_batch"]
    assert len(lockstep.findings("--target", "orders-db")) == 3
    assert [f["type"] for f in lockstep.findings("--owner", "payments-team")] == [
        "excess_entitlement"
    ]
    both = lockstep.findings("--owner", "payments-team", "--owner", "reporting-team")
    assert {f["type"] for f in both} == {"excess_entitlement", "missing_entitlement"}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--type", "orphan", "unknown finding type 'orphan'; one of: "),
        ("--target", "billing-db", "unknown target 'billing-db'; one of: orders-db"),
        ("--owner", "nobody", "unknown owner 'nobody'; one of: payments-team, reporting-team"),
        ("--status", "closed", "unknown status 'closed'; one of: "),
    ],
)
def test_an_unknown_filter_value_is_refused_with_the_choices(
    lockstep: Lockstep, option: str, value: str, message: str
) -> None:
    proc = lockstep("findings", option, value)
    assert proc.returncode == 1
    assert message in proc.stderr and proc.stdout == ""


def test_a_finding_gone_on_its_own_is_resolved_and_shown_only_when_asked(
    lockstep: Lockstep, db: localpg.LocalPostgres
) -> None:
    lockstep.findings()
    with admin(db) as conn:
        conn.execute("DROP ROLE legacy_batch")
    assert "orphan_account" not in lockstep.by_type()
    assert lockstep.by_type("--status", "resolved")["orphan_account"]["status"] == "resolved"
    statuses = {f["type"]: f["status"] for f in lockstep.findings("--status", "all")}
    assert statuses["orphan_account"] == "resolved" and statuses["excess_entitlement"] == "open"


def test_findings_of_an_unreachable_target_stay_open_beside_the_unreachable_finding(
    lockstep: Lockstep,
) -> None:
    lockstep.findings()
    lockstep.env["ORDERS_DB_DSN"] = f"postgresql://nobody:pw-x9@127.0.0.1:{localpg.free_port()}/x"
    found = lockstep.by_type()
    assert found["target_unreachable"]["status"] == "open"
    assert found["orphan_account"]["status"] == "open"
    assert "pw-x9" not in "\n".join(lockstep.outputs)


def test_the_human_listing_shows_status_dates_and_owner(lockstep: Lockstep) -> None:
    proc = lockstep("findings", "--type", "excess_entitlement")
    assert proc.returncode == 0
    assert "1 finding(s) (open, remediated, accepted)" in proc.stdout
    assert "excess_entitlement  orders-db/payments_api  role:app_admin" in proc.stdout
    assert "open  first seen " in proc.stdout and "owner payments-team" in proc.stdout
    none = lockstep("findings", "--type", "stale_credential")
    assert "No findings (open, remediated, accepted)." in none.stdout


# ---------------------------------------------------------------- accept


def test_an_accepted_finding_is_journaled_and_shown_as_accepted_by_plan(
    lockstep: Lockstep,
) -> None:
    excess = lockstep.by_type()["excess_entitlement"]
    proc = lockstep(
        "findings", "accept", excess["id"], "--reason", "vendor migration", "--until", "30d"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Accepted {excess['id']}" in proc.stdout and "by payments-team" in proc.stdout

    listed = lockstep.by_type("--status", "accepted")["excess_entitlement"]
    assert listed["status"] == "accepted" and listed["first_seen"] == excess["first_seen"]
    assert (listed["accepted_by"], listed["accepted_reason"]) == (
        "payments-team",
        "vendor migration",
    )
    assert listed["accepted_until"] > listed["last_seen"]

    plan = json.loads(lockstep("plan", "--json").stdout)
    [planned] = [f for f in plan["findings"] if f["id"] == excess["id"]]
    assert planned["status"] == "accepted"

    [payload] = risk_acceptances(lockstep)
    assert payload["finding"] == excess["id"] and payload["accepted_by"] == "payments-team"
    assert payload["reason"] == "vendor migration"
    assert lockstep("audit", "verify").returncode == 0


def test_accepting_an_orphan_names_who_accepts_it(lockstep: Lockstep) -> None:
    orphan = lockstep.by_type()["orphan_account"]
    refused = lockstep("findings", "accept", orphan["id"], "--reason", "r", "--until", "2d")
    assert refused.returncode == 1 and "has no owner in the policy" in refused.stderr
    assert "--by" in refused.stderr
    accepted = lockstep(
        "findings", "accept", orphan["id"], "--reason", "batch retires in May",
        "--until", "7d", "--by", "alice@example.com", "--json",
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["accepted_by"] == "alice@example.com"


@pytest.mark.parametrize(
    ("finding", "until", "message"),
    [
        ("F-000000000000", "30d", "no finding 'F-000000000000'"),
        ("excess_entitlement", "2001-01-01", "must expire in the future"),
        ("excess_entitlement", "400d", "at most 365 days"),
        ("excess_entitlement", "next week", "write a date (2027-01-31)"),
    ],
)
def test_an_acceptance_that_cannot_be_made_is_refused_and_changes_nothing(
    lockstep: Lockstep, finding: str, until: str, message: str
) -> None:
    found = lockstep.by_type()
    finding_id = found[finding]["id"] if finding in found else finding
    proc = lockstep("findings", "accept", finding_id, "--reason", "why", "--until", until)
    assert proc.returncode == 1 and message in proc.stderr
    assert lockstep.by_type()["excess_entitlement"]["status"] == "open"
    assert risk_acceptances(lockstep) == []


def test_accept_uses_the_state_given_to_the_findings_group(
    lockstep: Lockstep, db: localpg.LocalPostgres
) -> None:
    with admin(db) as conn:
        conn.execute("CREATE DATABASE lockstep_state")
    state = db.dsn("lockstep_state")
    in_six_weeks = (datetime.now(UTC) + timedelta(weeks=6)).date().isoformat()
    [excess] = lockstep.findings("--state", state, "--type", "excess_entitlement")
    proc = lockstep(
        "findings", "--state", state, "accept", excess["id"], "--reason", "r",
        "--until", in_six_weeks,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(state) as conn:
        row = conn.execute(
            "SELECT status, accepted_by FROM findings WHERE id = %s", (excess["id"],)
        )
        assert row.fetchone() == ("accepted", "payments-team")
