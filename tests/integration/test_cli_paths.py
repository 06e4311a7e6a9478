"""End to end: ``lockstep paths`` against a real PostgreSQL and this host's file sinks, as a
user drives it, and ``rules.escalation_paths: revoke`` cutting what lockstep manages in the
same pass that finds the paths."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from support import cli_project
from support.cli_project import create_orders_db, project_env
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var


def policy(sinks: Path, rule: str = "report") -> Policy:
    return Policy(
        targets={
            "orders-db": Target.postgres(
                Var("ORDERS_DB_DSN"), environment="prod", secret_tables=["public.api_tokens"]
            )
        },
        owners={"payments-team": Owner(["alice@example.com"], status="active")},
        identities={
            "payments-api": Identity(
                owner="payments-team",
                purpose="Serve the payments API",
                environment="prod",
                access=[Access("orders-db", "payments_api", ["role:app_readonly"])],
                credentials=Credentials(sink=f"file:{sinks}/payments-api.json"),
            ),
            "reporting-job": Identity(
                owner="payments-team",
                purpose="Nightly report",
                environment="prod",
                access=[Access("orders-db", "reporting_job", ["role:app_readonly"])],
            ),
            "ops-bot": Identity(
                owner="payments-team",
                purpose="Operate payments",
                environment="prod",
                access=[Access("orders-db", "ops_bot", ["role:payments_api"])],
            ),
        },
        rules={"excess_entitlements": "report", "escalation_paths": rule},
    )


@pytest.fixture
def db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    """bob (unmanaged) may grant himself payments_api; reporting_job holds app_admin, which
    the policy does not give it and which may grant payments_api; ops_bot holds payments_api
    as the policy says; tokens_reader may read the secret table."""
    return create_orders_db(
        pg,
        on_server=[
            "CREATE ROLE app_readonly NOLOGIN",
            "CREATE ROLE app_admin NOLOGIN",
            "CREATE ROLE payments_api LOGIN IN ROLE app_readonly",
            "CREATE ROLE reporting_job LOGIN IN ROLE app_readonly, app_admin",
            "CREATE ROLE ops_bot LOGIN IN ROLE payments_api",
            "CREATE ROLE bob LOGIN",
            "CREATE ROLE tokens_reader LOGIN",
            "GRANT payments_api TO bob WITH ADMIN OPTION",
            "GRANT payments_api TO app_admin WITH ADMIN OPTION",
        ],
        in_orders=[
            "CREATE TABLE public.api_tokens (token text)",
            "GRANT SELECT ON public.api_tokens TO tokens_reader",
        ],
    )


@pytest.fixture
def sinks() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="lockstep-cli-sinks-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def project(db: localpg.LocalPostgres, workdir: Path, sinks: Path, rule: str = "report"):
    policy(sinks, rule).write(workdir)
    return cli_project.Lockstep(workdir, project_env(ORDERS_DB_DSN=db.dsn("orders")))


def escalations(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["from"], p["to"]) for p in report["paths"] if p["given_by"] is None}


def test_paths_lists_escalations_and_what_the_policy_gives(db, tmp_path, sinks) -> None:
    cli = project(db, tmp_path, sinks)
    proc = cli("paths", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    found = escalations(report)
    assert ("orders-db/bob", "payments-api") in found
    assert ("reporting-job", "payments-api") in found
    assert ("orders-db/tokens_reader", "orders-db: table public.api_tokens") in found
    given = {(p["from"], p["to"]): p["given_by"] for p in report["paths"] if p["given_by"]}
    assert given[("ops-bot", "payments-api")] == "the policy"
    bob = next(p for p in report["paths"] if p["from"] == "orders-db/bob")
    assert set(bob) >= {"from", "to", "steps", "confidence"}
    assert [(s["target"], s["edge"]) for s in bob["steps"]] == [("orders-db", "pg.admin_option")]
    assert bob["confidence"] == "proven" and "pg_has_role confirms" in bob["steps"][0]["evidence"]
    chain = next(p for p in report["paths"] if p["from"] == "reporting-job")
    assert [s["edge"] for s in chain["steps"]] == ["pg.member", "pg.admin_option"]
    cut = next(c for c in report["cuts"] if c["to"] == "payments-api")
    # bob is a member with ADMIN OPTION: two edges; reporting-job's chain is cut at its start.
    assert sorted((e["from"], e["edge"]) for e in cut["edges"]) == [
        ("orders-db/bob", "pg.admin_option"),
        ("orders-db/bob", "pg.member"),
        ("orders-db/reporting_job", "pg.member"),
    ]
    assert [e["from"] for e in cut["revocable"]] == ["orders-db/reporting_job"]
    text = "\n".join(cli.outputs)
    assert db.password.reveal() not in text


def test_each_escalation_is_a_finding_mapped_to_owasp_and_csf(db, tmp_path, sinks) -> None:
    cli = project(db, tmp_path, sinks)
    found = [f for f in cli.json("findings")["findings"] if f["type"] == "escalation_path"]
    by_source = {f["entitlement"]: f for f in found}
    bob = by_source["from account orders-db/bob"]
    assert (bob["identity"], bob["account"]) == ("payments-api", "payments_api")
    assert (bob["owasp_nhi"], bob["nist_csf"]) == (["NHI5"], ["PR.AA-05"])
    assert "smallest fix" in bob["detail"]
    tokens = by_source["from account orders-db/tokens_reader"]
    assert tokens["owasp_nhi"] == ["NHI2"]
    assert "from identity ops-bot" not in by_source


def test_a_sink_others_may_read_is_an_nhi2_path(db, tmp_path, sinks) -> None:
    cli = project(db, tmp_path, sinks)
    sink = sinks / "payments-api.json"
    sink.write_text("{}")
    sink.chmod(0o644)
    report = cli.json("paths", "--to", "payments-api")
    path = next(p for p in report["paths"] if p["from"] == "any local user")
    assert [s["edge"] for s in path["steps"]] == ["sink.readable", "sink.holds"]
    found = [f for f in cli.json("findings")["findings"] if f["type"] == "escalation_path"]
    assert any(f["entitlement"] == "from anyone any local user" and f["owasp_nhi"] == ["NHI2"]
               for f in found)  # fmt: skip


def test_from_and_to_narrow_the_listing_and_unknown_names_are_refused(db, tmp_path, sinks) -> None:
    cli = project(db, tmp_path, sinks)
    only = cli.json("paths", "--from", "orders-db/bob", "--to", "payments-api")
    assert {(p["from"], p["to"]) for p in only["paths"]} == {("orders-db/bob", "payments-api")}
    proc = cli("paths", "--to", "payments-apx")
    assert proc.returncode == 1
    assert "no identity 'payments-apx'" in proc.stderr and "Traceback" not in proc.stderr
    text = cli("paths", "--from", "reporting-job").stdout
    assert "reporting-job -> payments-api" in text and "pg.admin_option" in text


def test_revoke_cuts_what_lockstep_manages_and_leaves_the_rest_reported(
    db, tmp_path, sinks
) -> None:
    cli = project(db, tmp_path, sinks, rule="revoke")
    planned = cli.json("plan")["actions"]
    revokes = [(a["account"], a["entitlement"]) for a in planned if a["op"] == "revoke"]
    assert revokes == [("reporting_job", "role:app_admin")]
    assert "escalation paths" in next(a["reason"] for a in planned if a["op"] == "revoke")
    proc = cli("apply", "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    after = escalations(cli.json("paths"))
    assert ("reporting-job", "payments-api") not in after
    assert ("orders-db/bob", "payments-api") in after  # never an unmanaged account's rights
    statuses = {
        f["entitlement"]: f["status"]
        for f in cli.json("findings", "--status", "all")["findings"]
        if f["type"] == "escalation_path"
    }
    assert statuses["from identity reporting-job"] == "verified"
    assert statuses["from account orders-db/bob"] == "open"
