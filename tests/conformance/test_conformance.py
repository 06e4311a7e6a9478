"""Every connector, against its real server, through the real engine and CLI.

Each test runs once per connector (see ``conformance_target``). The CLI decides and acts;
the checks behind it use the connector's own session only to read back and to probe a
credential the way a workload would, never to vouch for an action.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from lockstep.connectors.base import ProbeResult

if TYPE_CHECKING:
    from conformance.targets import ConformanceTarget, Project

pytest_plugins = ("conformance.targets",)

# What a connector cannot pass today, each reported for routing. Strict: once fixed, the test
# fails until its entry goes.
KNOWN_FAILURES: Mapping[tuple[str, str], str] = {}


@pytest.fixture(autouse=True)
def known_failure(request: pytest.FixtureRequest, conformance_target: ConformanceTarget) -> None:
    reason = KNOWN_FAILURES.get((request.node.originalname, conformance_target.type))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def ops(plan: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(a["op"], a["account"], a["entitlement"]) for a in plan["actions"]]


def statuses(results: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str]]:
    return [(r["op"], r["account"], r["entitlement"], r["status"]) for r in results]


def test_an_empty_target_reads_no_account_and_plans_nothing(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    with conformance_target.session() as session:
        assert dict(session.read().accounts) == {}
    project.write({})
    plan = project.json("plan")
    assert (plan["actions"], plan["findings"], plan["unreachable"]) == ([], [], [])


def test_apply_creates_the_account_and_delivers_a_credential_that_works(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account, (granted, _) = conformance_target.account, conformance_target.entitlements
    project.write({account: [granted]})
    assert ops(project.json("plan")) == [
        ("create_account", account, None),
        ("grant", account, granted),
    ]
    assert statuses(project.apply()) == [
        ("create_account", account, None, "verified"),
        ("grant", account, granted, "verified"),
    ]
    credential = project.credential()
    sink = project.workdir / "secrets" / "svc0.json"
    assert sink.stat().st_mode & 0o777 == 0o600
    with conformance_target.session() as session:
        assert session.probe(credential) is ProbeResult.ACCEPTED
        held = session.read_account(account)
    assert held is not None and held.enabled and held.entitlements == {granted}
    project.assert_no_secret_leaked(credential)


def test_a_newly_granted_entitlement_is_applied_alone_and_read_back(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account, (first, second) = conformance_target.account, conformance_target.entitlements
    project.write({account: [first]})
    project.apply()
    project.write({account: [first, second]})
    assert ops(project.json("plan")) == [("grant", account, second)]
    assert statuses(project.apply()) == [("grant", account, second, "verified")]
    with conformance_target.session() as session:
        held = session.read_account(account)
    assert held is not None and held.entitlements == {first, second}


def test_planning_again_after_apply_changes_nothing(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    project.write({conformance_target.account: list(conformance_target.entitlements)})
    project.apply()
    assert project.json("plan")["actions"] == []
    assert project("plan", "--exit-code").returncode == 0
    verified = project("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert project.apply() == []


def test_an_entitlement_the_policy_drops_is_revoked_and_read_back(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account, (kept, dropped) = conformance_target.account, conformance_target.entitlements
    project.write({account: [kept, dropped]})
    project.apply()
    project.write({account: [kept]})
    plan = project.json("plan")
    assert ops(plan) == [("revoke", account, dropped)]
    assert [(f["type"], f["entitlement"]) for f in plan["findings"]] == [
        ("excess_entitlement", dropped)
    ]
    assert statuses(project.apply()) == [("revoke", account, dropped, "verified")]
    with conformance_target.session() as session:
        held = session.read_account(account)
    assert held is not None and held.entitlements == {kept}


def test_suspension_keeps_the_account_and_proves_its_credential_refused(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account, (granted, _) = conformance_target.account, conformance_target.entitlements
    project.write({account: [granted]})
    project.apply()
    old = project.credential()

    project.write({account: [granted]}, owner_status="departed")
    assert statuses(project.apply()) == [("suspend_account", account, None, "verified")]
    with conformance_target.session() as session:
        assert session.probe(old) is ProbeResult.REFUSED
        held = session.read_account(account)
    assert held is not None and not held.enabled  # suspended, not deleted
    assert project("verify").returncode == 0
    project.assert_no_secret_leaked(old)


def test_restoring_issues_a_new_credential_and_the_old_one_stays_refused(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account, (granted, _) = conformance_target.account, conformance_target.entitlements
    project.write({account: [granted]})
    project.apply()
    old = project.credential()
    project.write({account: [granted]}, owner_status="departed")
    project.apply()

    project.write({account: [granted]})
    assert statuses(project.apply()) == [("restore_account", account, None, "verified")]
    new = project.credential()
    assert new.secret != old.secret
    with conformance_target.session() as session:
        assert session.probe(new) is ProbeResult.ACCEPTED
        assert session.probe(old) is ProbeResult.REFUSED
        held = session.read_account(account)
    assert held is not None and held.enabled and held.entitlements == {granted}
    assert project.json("plan")["actions"] == []
    assert project("verify").returncode == 0
    project.assert_no_secret_leaked(old, new)


def test_an_orphan_is_deleted_when_the_rules_say_so_and_its_credential_refused(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account, (granted, _) = conformance_target.account, conformance_target.entitlements
    project.write({account: [granted]})
    project.apply()
    old = project.credential()

    project.write({}, orphan_accounts="delete")
    assert ops(project.json("plan")) == [("delete_account", account, None)]
    assert statuses(project.apply()) == [("delete_account", account, None, "verified")]
    with conformance_target.session() as session:
        assert session.read_account(account) is None
        assert session.probe(old) is ProbeResult.REFUSED
    plan = project.json("plan")
    assert (plan["actions"], plan["findings"]) == ([], [])


def test_hostile_account_names_are_managed_exactly(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    names = conformance_target.hostile_accounts
    granted = conformance_target.entitlements[0]
    project.write({name: [granted] for name in names})
    assert project("validate").returncode == 0
    results = project.apply()
    assert {(r["op"], r["account"]) for r in results if r["op"] == "create_account"} == {
        ("create_account", name) for name in names
    }
    plan = project.json("plan")
    assert (plan["actions"], plan["findings"]) == ([], [])
    credentials = [project.credential(f"svc{i}") for i in range(len(names))]
    with conformance_target.session() as session:
        accounts = session.read().accounts
        assert set(accounts) == set(names)
        assert all(accounts[name].entitlements == {granted} for name in names)
        assert [session.probe(c) for c in credentials] == [ProbeResult.ACCEPTED] * len(names)
    project.assert_no_secret_leaked(*credentials)


def test_illegal_account_names_are_refused_at_validate_with_file_and_line(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    names = conformance_target.illegal_accounts
    assert names, "every connector refuses some account names"
    project.write({name: [conformance_target.entitlements[0]] for name in names})
    proc = project("validate")
    assert proc.returncode == 1
    for line in project.account_lines():
        assert f"{project.policy.name}:{line}: " in proc.stderr, proc.stderr
    assert not (project.workdir / ".lockstep").exists()  # validate touches nothing


def test_an_unreachable_target_is_reported_and_never_planned_or_passed(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    project.target = conformance_target.unreachable()
    project.write({conformance_target.account: [conformance_target.entitlements[0]]})
    plan = project.json("plan")
    assert plan["actions"] == []
    assert plan["unreachable"] == ["conformance"]
    assert [f["type"] for f in plan["findings"]] == ["target_unreachable"]
    assert "No changes. Every target" not in project("plan").stdout
    verified = project("verify", "--json")
    assert verified.returncode == 2 and '"in_sync": false' in verified.stdout
    assert project("apply", "--yes").returncode == 1
    project.assert_no_secret_leaked()
