"""`lockstep inventory` and `lockstep explain` on a real PostgreSQL estate: every account,
managed or not, and why each identity holds what it holds (policy line, git commit, the
journal entries that enforced and verified it), and why an orphan is one."""

from __future__ import annotations

import csv
import io
from typing import Any

from lockstep.evidence.inventory import COLUMNS
from support.estate_names import HOSTILE, line_of

pytest_plugins = ("support.evidence_estate",)


def rows(data: dict[str, Any]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(r["target"], r["account"]): r for r in data["accounts"]}


def test_inventory_lists_every_account_managed_or_not(estate) -> None:
    cli, _, issued = estate
    by = rows(cli.json("inventory"))
    assert by[("orders-db", "payments_api")]["status"] == "managed"
    assert by[("orders-db", "legacy_batch")]["status"] == "suspended"
    assert by[("orders-db", "stray_svc")]["status"] == "orphan"
    assert by[("orders-db", "old_svc")]["status"] == "orphan"
    assert by[("orders-db", HOSTILE)]["status"] == "orphan"
    assert by[("orders-db", "dba_alice")]["status"] == "excluded"
    lease = next(r for r in by.values() if r["status"] == "lease")
    assert (lease["lease_id"], lease["identity"]) == (issued["lease_id"], "payments-api")
    assert all(set(COLUMNS) <= set(r) for r in by.values())


def test_inventory_rows_carry_identity_credential_and_findings(estate) -> None:
    cli, _, _ = estate
    by = rows(cli.json("inventory"))
    managed = by[("orders-db", "payments_api")]
    assert (managed["identity"], managed["owner"], managed["kind"]) == (
        "payments-api", "payments-team", "service",
    )  # fmt: skip
    assert managed["purpose"] == "Serve the payments API" and managed["environment"] == "prod"
    assert "SELECT on table public.orders" in managed["entitlements"]
    assert managed["credential_issued_at"] is not None
    assert (managed["grants"], managed["next_review"]) == ([], None)
    assert [f["type"] for f in by[("orders-db", "stray_svc")]["findings"]] == ["orphan_account"]
    suspended = by[("orders-db", "legacy_batch")]
    assert "ownerless_identity" in [f["type"] for f in suspended["findings"]]


def test_an_unreachable_target_is_listed_as_such_never_as_empty(estate) -> None:
    cli, _, _ = estate
    data = cli.json("inventory")
    [cache] = [t for t in data["targets"] if t["target"] == "cache-db"]
    assert cache["status"] == "unreachable" and cache["accounts"] is None
    reader = rows(data)[("cache-db", "cache_reader")]
    assert reader["status"] == "unreachable" and reader["entitlements"] is None


def test_inventory_csv_has_the_contract_columns_and_the_same_rows(estate) -> None:
    cli, _, _ = estate
    proc = cli("inventory", "--csv")
    assert proc.returncode == 0
    table = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(table[0]) == list(COLUMNS)
    assert len(table) == len(cli.json("inventory")["accounts"])
    hostile = next(r for r in table if r["account"] == HOSTILE)
    assert hostile["status"] == "orphan"


def test_explain_names_the_policy_line_and_its_commit(estate) -> None:
    cli, workdir, _ = estate
    data = cli.json("explain", "payments-api")
    [account] = data["accounts"]
    policy = workdir / "lockstep.yaml"
    assert account["declared"]["line"] == line_of(policy, "- target: orders-db", "payments-api:")
    select = next(e for e in account["entitlements"] if e["entitlement"].startswith("SELECT"))
    [because] = select["because"]
    assert because["line"] == line_of(policy, "- SELECT on table public.orders", "payments-api:")
    assert because["file"] == "lockstep.yaml"  # as the policy was named
    assert because["commit"]["summary"] == "Declare the payments estate"
    assert because["commit"]["author"] == "Pat Auditor"


def test_explain_says_when_each_grant_was_enforced_and_verified_and_how(estate) -> None:
    cli, _, _ = estate
    [account] = cli.json("explain", "payments-api")["accounts"]
    assert account["enforced"]["kind"] == "result"
    assert "create_account" in account["enforced"]["how"]
    select = next(e for e in account["entitlements"] if e["entitlement"].startswith("SELECT"))
    assert "granted" in select["enforced"]["how"]
    assert len(select["enforced"]["hash"]) == 64
    assert "new credential accepted" in account["credential"]["issued"]["how"]
    cli("verify")
    [account] = cli.json("explain", "payments-api")["accounts"]
    assert account["last_verified"]["kind"] == "verification"
    assert account["last_verified"]["seq"] > account["enforced"]["seq"]


def test_explain_of_an_orphan_says_why_it_is_one(estate) -> None:
    cli, _, _ = estate
    data = cli.json("explain", "orders-db/old_svc")
    assert data["identity"] is None and data["status"] == "orphan"
    why = "\n".join(data["why"])
    assert "no identity in the policy declares account 'old_svc'" in why
    assert "lockstep last acted on it for identity 'old-svc'" in why
    assert "Retire old-svc" in why
    assert "rule orphan_accounts: report" in why


def test_explain_of_an_unknown_name_is_one_clear_error(estate) -> None:
    cli, _, _ = estate
    proc = cli("explain", "nobody-at-all")
    assert proc.returncode == 1
    assert "no identity and no account named 'nobody-at-all'" in proc.stderr


def test_inventory_and_explain_print_no_secret(estate) -> None:
    cli, _, issued = estate
    before = len(cli.outputs)
    for args in (("inventory",), ("inventory", "--csv"), ("explain", "payments-api")):
        assert cli(*args).returncode == 0
    printed = cli.outputs[before:]
    assert not any(issued["password"] in text or "pw-1234567" in text for text in printed)
