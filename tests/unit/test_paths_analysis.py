"""The analysis over hand-made facts: what is a finding and what the policy gives, the OWASP
risk of each, the suggested cut, and revocations only of what lockstep manages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel

from lockstep.engine.catalog import owasp_nhi
from lockstep.engine.desired import desired_state
from lockstep.model import (
    Access,
    CredentialPolicy,
    Identity,
    Op,
    Owner,
    OwnerStatus,
    Policy,
    RuleAction,
    Rules,
    Target,
)
from lockstep.paths.analysis import GIVEN_BY_ADMIN, GIVEN_BY_GRANT, GIVEN_BY_POLICY, analyse
from lockstep.paths.assemble import Estate
from lockstep.paths.graph import (
    Confidence,
    Edge,
    Holder,
    Node,
    NodeKind,
    NotAssessed,
    Principals,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


class NoSettings(BaseModel):
    pass


def acct(name: str, target: str = "db") -> Node:
    return Node(NodeKind.ACCOUNT, target, name)


@dataclass
class Facts:
    target: str
    made: list[Edge]
    logins: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)
    admin: str = "lockstep"

    def edges(self) -> Iterator[Edge]:
        return iter(self.made)

    def principals(self) -> Principals:
        return Principals(
            frozenset(acct(n, self.target) for n in self.logins),
            frozenset(acct(n, self.target) for n in self.people),
            frozenset({acct(self.admin, self.target)}),
        )

    def entitlement_node(self, entitlement: str) -> Node | None:
        kind, _, name = entitlement.partition(":")
        return acct(name, self.target) if kind == "role" else None

    def account_node(self, account: str) -> Node:
        return acct(account, self.target)

    def not_assessed(self) -> tuple[NotAssessed, ...]:
        return ()


def policy(*identities: Identity, revoke: bool = False) -> Policy:
    return Policy(
        targets={"db": Target("db", "postgres", "prod", frozenset(), False, NoSettings())},
        owners={"team": Owner("team", ("a@example.com",), OwnerStatus.ACTIVE)},
        identities={i.name: i for i in identities},
        rules=Rules(escalation_paths=RuleAction.REVOKE if revoke else RuleAction.REPORT),
    )


def identity(name: str, account: str, *entitlements: str, sink: str | None = None) -> Identity:
    return Identity(
        name,
        "team",
        "test",
        "prod",
        (Access("db", account, frozenset(entitlements), None),),
        CredentialPolicy(sink=sink),
    )


PAYMENTS = identity("payments-api", "payments_api")


def run(p: Policy, *facts: Facts, approved=frozenset(), held=None):
    estate = Estate({f.target: f for f in facts}, approved=approved, held=held or {})
    return analyse(p, desired_state(p, NOW), estate)


def admin_option(member: str, role: str, holder: bool = True) -> Edge:
    return Edge(
        acct(member),
        acct(role),
        "pg.admin_option",
        f"{member} admin of {role}",
        Confidence.PROVEN,
        holder=Holder(member, f"role:{role}") if holder else None,
    )


def member(m: str, role: str) -> Edge:
    return Edge(
        acct(m),
        acct(role),
        "pg.member",
        f"{m} member of {role}",
        Confidence.PROVEN,
        holder=Holder(m, f"role:{role}"),
        obtains=False,
    )


def test_an_unmanaged_account_that_can_grant_itself_an_identity_is_a_finding() -> None:
    report = run(policy(PAYMENTS), Facts("db", [admin_option("bob", "payments_api")], {"bob"}))
    [finding] = report.findings
    assert finding.identity == "payments-api" and finding.account == "payments_api"
    assert finding.entitlement == "from account db/bob"
    assert owasp_nhi(finding) == ("NHI5",)
    assert "smallest fix: remove db/bob -> db/payments_api (pg.admin_option)" in finding.detail
    [path] = report.paths
    assert path.finding == finding.id and path.given_by is None
    assert [s.rule for s in path.steps] == ["pg.admin_option"]
    assert not report.actions  # report is the default


def test_what_the_policy_an_approved_grant_or_the_admin_gives_is_no_finding() -> None:
    ops = identity("ops-bot", "ops_bot", "role:payments_api")
    audit = identity("audit-bot", "audit_bot")
    facts = Facts(
        "db",
        [
            member("ops_bot", "payments_api"),
            member("audit_bot", "payments_api"),
            admin_option("lockstep", "payments_api", holder=False),
        ],
        {"ops_bot", "audit_bot"},
    )
    report = run(
        policy(PAYMENTS, ops, audit),
        facts,
        approved=frozenset({("audit-bot", "db", "role:payments_api")}),
    )
    given = {p.source: p.given_by for p in report.paths}
    assert given == {
        "ops-bot": GIVEN_BY_POLICY,
        "audit-bot": GIVEN_BY_GRANT,
        "db/lockstep": GIVEN_BY_ADMIN,
    }
    assert not report.findings and not report.cuts


def test_a_person_reaching_an_nhi_credential_is_nhi10() -> None:
    facts = Facts("db", [admin_option("alice", "payments_api")], {"alice"}, people={"alice"})
    [finding] = run(policy(PAYMENTS), facts).findings
    assert finding.entitlement == "from person db/alice"
    assert owasp_nhi(finding) == ("NHI10",)


def test_a_readable_sink_is_nhi2_and_leads_to_the_identity() -> None:
    sink = "file:/run/secrets/payments.json"
    carol = Node(NodeKind.OS_USER, "", "os-user:carol")
    reads = Edge(carol, Node(NodeKind.SINK, "", sink), "sink.readable", "0640", Confidence.PROVEN)
    p = policy(identity("payments-api", "payments_api", sink=sink))
    [finding] = run(p, Facts("db", []), Facts("", [reads])).findings
    assert owasp_nhi(finding) == ("NHI2",)
    [path] = [x for x in run(p, Facts("db", []), Facts("", [reads])).paths]
    assert [s.rule for s in path.steps] == ["sink.readable", "sink.holds"]


def test_every_path_is_listed_shortest_first_and_the_cut_covers_them_all() -> None:
    edges = [
        admin_option("bob", "payments_api", holder=False),
        member("bob", "grp"),
        admin_option("grp", "payments_api", holder=False),
    ]
    report = run(policy(PAYMENTS), Facts("db", edges, {"bob"}))
    assert [len(p.steps) for p in report.paths] == [1, 2]
    [cut] = report.cuts
    assert {(s.source, s.destination) for s in cut.edges} == {
        ("db/bob", "db/payments_api"),
        ("db/grp", "db/payments_api"),
    } or len(cut.edges) == 2


def test_revoke_removes_only_what_lockstep_manages_and_the_policy_does_not_give() -> None:
    reporting = identity("reporting", "reporting", "role:readers")
    edges = [
        member("reporting", "app_admin"),
        admin_option("app_admin", "payments_api"),
        admin_option("bob", "payments_api"),
    ]
    held = {("db", "reporting"): frozenset({"role:app_admin", "role:readers"})}
    facts = Facts("db", edges, {"reporting", "bob"})
    revoking = run(policy(PAYMENTS, reporting, revoke=True), facts, held=held)
    assert [(a.op, a.account, a.entitlement) for a in revoking.actions] == [
        (Op.REVOKE, "reporting", "role:app_admin")
    ]
    assert {f.entitlement for f in revoking.findings} == {
        "from identity reporting",
        "from account db/bob",
    }
    [(_, finding)] = revoking.remedies  # bob's path stays: it is not lockstep's to cut
    assert finding == next(f.id for f in revoking.findings if "reporting" in f.entitlement)
    assert not run(policy(PAYMENTS, reporting), facts, held=held).actions


def test_a_conditional_path_is_a_medium_finding_listing_its_conditions() -> None:
    edge = Edge(
        acct("bob"),
        acct("payments_api"),
        "aws.create_access_key",
        "if MFA",
        Confidence.CONDITIONAL,
        conditions=("aws:MultiFactorAuthPresent",),
    )
    report = run(policy(PAYMENTS), Facts("db", [edge], {"bob"}))
    [finding] = report.findings
    assert finding.severity == "medium"
    assert report.paths[0].conditions == ("aws:MultiFactorAuthPresent",)
    assert report.paths[0].confidence is Confidence.CONDITIONAL


def test_a_secret_store_is_a_goal_of_its_own() -> None:
    store = Node(NodeKind.SECRET, "db", "table public.api_tokens")
    reads = Edge(acct("bob"), store, "pg.reads_secret_table", "SELECT", Confidence.PROVEN)
    [finding] = run(policy(PAYMENTS), Facts("db", [reads], {"bob"})).findings
    assert finding.identity is None and finding.account is None
    assert owasp_nhi(finding) == ("NHI2",)
