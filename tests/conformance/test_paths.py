"""Every connector reads its escalation facts the same way: pure data about its own target,
lockstep's admin among the principals, edges that carry a rule, evidence and a confidence,
and a managed account holding only the suite's plain entitlements on no escalation path;
``lockstep paths`` runs against each, and the secrets it knows of never show."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockstep.connectors.registry import connector_types
from lockstep.paths.graph import Confidence, PathRequest

if TYPE_CHECKING:
    from conformance.targets import ConformanceTarget, Project

pytest_plugins = ("conformance.targets",)


def test_the_facts_are_the_target_s_own_and_well_formed(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    account = conformance_target.account
    project.write({account: list(conformance_target.entitlements)})
    project.apply()
    with conformance_target.session() as session:
        facts = session.read_paths(PathRequest())
    assert facts.target == "conformance"
    edges = list(facts.edges())
    assert all(e.rule and e.evidence and isinstance(e.confidence, Confidence) for e in edges)
    assert all(e.conditions for e in edges if e.confidence is Confidence.CONDITIONAL)
    assert facts.principals().admins
    node = facts.account_node(account)
    assert not [e for e in edges if e.source == node and e.obtains]
    for entitlement in conformance_target.entitlements:
        held = facts.entitlement_node(entitlement)
        assert held is None or held.target == "conformance"


def test_paths_runs_against_the_target_and_leaks_nothing(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    project.write({conformance_target.account: list(conformance_target.entitlements)})
    project.apply()
    report = project.json("paths")
    assert set(report) >= {"paths", "cuts", "not_assessed", "unreachable"}
    assert not report["unreachable"]
    assert not [p for p in report["paths"] if p["given_by"] is None and p["from"] == "svc0"]
    project.assert_no_secret_leaked(project.credential())


def test_each_connector_says_what_reading_its_escalation_facts_needs() -> None:
    for name, connector in connector_types().items():
        needed = connector.paths_permissions
        assert isinstance(needed, tuple) and needed, name
        assert all(isinstance(p, str) and p.strip() for p in needed), name
