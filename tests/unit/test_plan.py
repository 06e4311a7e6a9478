"""The pure core: desired state and plan, on plain data."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.model import (
    Access,
    Account,
    Action,
    CredentialPolicy,
    FindingType,
    Identity,
    Op,
    Owner,
    OwnerStatus,
    Policy,
    RuleAction,
    Rules,
    Severity,
    Snapshot,
    Target,
    Unreachable,
)
from support.settings import NO_SETTINGS

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ENTS = ["role:a", "role:b", "SELECT on table public.t", "USAGE on schema s"]


def target(name: str = "db") -> Target:
    return Target(name, "postgres", "prod", frozenset(), False, NO_SETTINGS)


def policy(
    identities: list[Identity],
    owners: dict[str, OwnerStatus] | None = None,
    rules: Rules | None = None,
    targets: tuple[str, ...] = ("db",),
) -> Policy:
    owners = owners or {"team": OwnerStatus.ACTIVE}
    return Policy(
        targets={t: target(t) for t in targets},
        owners={n: Owner(n, (), s) for n, s in owners.items()},
        identities={i.name: i for i in identities},
        rules=rules or Rules(),
    )


def identity(name: str, account: str, ents: list[str], **kw: object) -> Identity:
    expires = kw.pop("expires", None)
    tgt = kw.pop("target", "db")
    return Identity(
        name=name,
        owner=str(kw.pop("owner", "team")),
        purpose="test",
        environment="prod",
        access=(Access(str(tgt), account, frozenset(ents), expires),),  # type: ignore[arg-type]
        credentials=kw.pop("credentials", CredentialPolicy()),  # type: ignore[arg-type]
    )


def snap(*accounts: Account, name: str = "db") -> Snapshot:
    return Snapshot(name, {a.name: a for a in accounts})


def acct(name: str, ents: list[str] | None = None, enabled: bool = True, sessions: int = 0):
    return Account(name, frozenset(ents or []), enabled, sessions)


def plan_for(p: Policy, *observed: Snapshot | Unreachable, now: datetime = NOW):
    return make_plan(p, desired_state(p, now), {o.target: o for o in observed}, now)


def ops(plan) -> list[tuple[str, str, str | None]]:
    return [(a.op.value, a.account, a.entitlement) for a in plan.actions]


def test_a_missing_account_is_created_then_granted_in_that_order():
    p = policy([identity("api", "api_user", ["role:b", "role:a"])])
    plan = plan_for(p, snap())
    assert ops(plan) == [
        ("create_account", "api_user", None),
        ("grant", "api_user", "role:a"),
        ("grant", "api_user", "role:b"),
    ]


def test_excess_entitlement_is_revoked_and_reported_by_default():
    p = policy([identity("api", "u", ["role:a"])])
    plan = plan_for(p, snap(acct("u", ["role:a", "role:b"])))
    assert ops(plan) == [("revoke", "u", "role:b")]
    [f] = plan.findings
    assert (f.type, f.entitlement, f.identity) == (FindingType.EXCESS_ENTITLEMENT, "role:b", "api")


def test_excess_entitlement_rule_report_only_reports():
    p = policy(
        [identity("api", "u", ["role:a"])], rules=Rules(excess_entitlements=RuleAction.REPORT)
    )
    plan = plan_for(p, snap(acct("u", ["role:a", "role:b"])))
    assert plan.actions == ()
    assert [f.type for f in plan.findings] == [FindingType.EXCESS_ENTITLEMENT]


def test_missing_entitlement_is_granted_and_reported():
    p = policy([identity("api", "u", ["role:a", "role:b"])])
    plan = plan_for(p, snap(acct("u", ["role:a"])))
    assert ops(plan) == [("grant", "u", "role:b")]
    assert [f.type for f in plan.findings] == [FindingType.MISSING_ENTITLEMENT]


def test_orphans_follow_the_rule():
    orphan = acct("ghost", ["role:a"])
    for rule, expected in [
        (RuleAction.REPORT, []),
        (RuleAction.SUSPEND, [("suspend_account", "ghost", None)]),
        (RuleAction.DELETE, [("delete_account", "ghost", None)]),
    ]:
        plan = plan_for(policy([], rules=Rules(orphan_accounts=rule)), snap(orphan))
        assert ops(plan) == expected
        assert [f.type for f in plan.findings] == [FindingType.ORPHAN_ACCOUNT]


def test_expired_access_is_revoked_and_the_account_suspended_even_when_rules_only_report():
    past = NOW - timedelta(days=1)
    p = policy(
        [identity("api", "u", ["role:a"], expires=past)],
        rules=Rules(excess_entitlements=RuleAction.REPORT),
    )
    plan = plan_for(p, snap(acct("u", ["role:a"])))
    assert ops(plan) == [("revoke", "u", "role:a"), ("suspend_account", "u", None)]
    assert {f.type for f in plan.findings} == {FindingType.EXPIRED_ACCESS}


def test_access_not_yet_expired_is_kept():
    p = policy([identity("api", "u", ["role:a"], expires=NOW + timedelta(seconds=1))])
    assert plan_for(p, snap(acct("u", ["role:a"]))).actions == ()


def test_departed_owner_suspends_the_account_but_keeps_its_grants():
    p = policy([identity("api", "u", ["role:a"])], owners={"team": OwnerStatus.DEPARTED})
    plan = plan_for(p, snap(acct("u", ["role:a"])))
    assert ops(plan) == [("suspend_account", "u", None)]
    assert [f.type for f in plan.findings] == [FindingType.OWNERLESS_IDENTITY]


def test_departed_owner_with_rule_report_changes_nothing():
    p = policy(
        [identity("api", "u", ["role:a"])],
        owners={"team": OwnerStatus.DEPARTED},
        rules=Rules(ownerless_identities=RuleAction.REPORT),
    )
    plan = plan_for(p, snap(acct("u", ["role:a"])))
    assert plan.actions == ()
    assert [f.type for f in plan.findings] == [FindingType.OWNERLESS_IDENTITY]


def test_a_suspended_account_the_policy_grants_again_is_restored():
    p = policy([identity("api", "u", ["role:a"])])
    plan = plan_for(p, snap(acct("u", ["role:a"], enabled=False)))
    assert ops(plan) == [("restore_account", "u", None)]


def test_a_suspended_account_with_open_sessions_gets_them_ended():
    p = policy([identity("api", "u", [])], owners={"team": OwnerStatus.DEPARTED})
    plan = plan_for(p, snap(acct("u", enabled=False, sessions=2)))
    assert ops(plan) == [("end_sessions", "u", None)]


def test_an_unreachable_target_gets_one_finding_and_no_verdict():
    p = policy([identity("api", "u", ["role:a"])])
    plan = plan_for(p, Unreachable("db", "connection refused"))
    assert plan.actions == ()
    assert plan.unreachable == ("db",)
    [f] = plan.findings
    assert f.type is FindingType.TARGET_UNREACHABLE and "refused" in f.detail


def test_a_target_never_read_counts_as_unreachable():
    p = policy([identity("api", "u", [])], targets=("db", "other"))
    plan = plan_for(p, snap())
    assert plan.unreachable == ("other",)


def test_mass_change_guard_trips_above_the_share_and_the_floor():
    ghosts = [acct(f"g{i}") for i in range(6)]
    tripped = plan_for(policy([], rules=Rules(orphan_accounts=RuleAction.SUSPEND)), snap(*ghosts))
    assert tripped.blocked and tripped.mass_change is not None
    assert tripped.mass_change.removals == 6
    few = plan_for(policy([], rules=Rules(orphan_accounts=RuleAction.SUSPEND)), snap(*ghosts[:5]))
    assert not few.blocked


def test_rotation_is_planned_only_for_credentials_lockstep_issued_and_now_stale():
    ident = identity("api", "u", [], credentials=CredentialPolicy(rotate_every_s=86400))
    p = policy([ident])
    d = desired_state(p, NOW)
    observed = {"db": snap(acct("u"))}
    fresh = make_plan(p, d, observed, NOW, {("db", "u"): NOW - timedelta(hours=1)})
    stale = make_plan(p, d, observed, NOW, {("db", "u"): NOW - timedelta(days=2)})
    unknown = make_plan(p, d, observed, NOW, {})
    assert fresh.actions == () and fresh.findings == ()
    assert ops(stale) == [("rotate_credential", "u", None)]
    assert unknown.actions == ()
    assert [f.type for f in unknown.findings] == [FindingType.STALE_CREDENTIAL]


def test_finding_ids_are_stable_and_distinct():
    p = policy([identity("api", "u", ["role:a"])])
    a = plan_for(p, snap(acct("u", ["role:b", "role:c"])))
    b = plan_for(p, snap(acct("u", ["role:b", "role:c"])))
    assert [f.id for f in a.findings] == [f.id for f in b.findings]
    assert len({f.id for f in a.findings}) == len(a.findings)


# ---------------------------------------------------------------- properties


def simulate(observed: Snapshot, actions: tuple[Action, ...]) -> Snapshot:
    """Apply a plan's actions to plain data, as a perfect target would."""
    accounts = dict(observed.accounts)
    for a in actions:
        cur = accounts.get(a.account)
        if a.op is Op.CREATE_ACCOUNT:
            accounts[a.account] = Account(a.account, frozenset(), True)
        elif a.op is Op.DELETE_ACCOUNT:
            accounts.pop(a.account)
        elif cur is None:
            raise AssertionError(f"{a.op} on a missing account {a.account}")
        elif a.op is Op.GRANT:
            assert a.entitlement is not None
            accounts[a.account] = replace(cur, entitlements=cur.entitlements | {a.entitlement})
        elif a.op is Op.REVOKE:
            accounts[a.account] = replace(cur, entitlements=cur.entitlements - {a.entitlement})
        elif a.op is Op.SUSPEND_ACCOUNT:
            accounts[a.account] = replace(cur, enabled=False, sessions=0)
        elif a.op is Op.RESTORE_ACCOUNT:
            accounts[a.account] = replace(cur, enabled=True)
        elif a.op is Op.END_SESSIONS:
            accounts[a.account] = replace(cur, sessions=0)
    return Snapshot(observed.target, accounts)


names = st.sampled_from(["a", "b", "c", "d"])
ent_sets = st.frozensets(st.sampled_from(ENTS), max_size=4)
accounts_st = st.builds(
    Account,
    name=names,
    entitlements=ent_sets,
    enabled=st.booleans(),
    sessions=st.integers(0, 2),
)
identities_st = st.lists(
    st.tuples(
        names,
        ent_sets,
        st.sampled_from([None, NOW - timedelta(days=1), NOW + timedelta(days=1)]),
        st.sampled_from(["team", "gone"]),
    ),
    max_size=4,
)
rules_st = st.builds(
    Rules,
    orphan_accounts=st.sampled_from([RuleAction.REPORT, RuleAction.SUSPEND, RuleAction.DELETE]),
    excess_entitlements=st.sampled_from([RuleAction.REVOKE, RuleAction.REPORT]),
    ownerless_identities=st.sampled_from([RuleAction.SUSPEND, RuleAction.REPORT]),
)


def build(specs, rules) -> Policy:
    idents = [
        identity(f"id{i}", account, list(ents), expires=expires, owner=owner)
        for i, (account, ents, expires, owner) in enumerate(specs)
    ]
    return policy(
        idents, owners={"team": OwnerStatus.ACTIVE, "gone": OwnerStatus.DEPARTED}, rules=rules
    )


@settings(max_examples=400, deadline=None)
@given(identities_st, st.lists(accounts_st, max_size=4, unique_by=lambda a: a.name), rules_st)
def test_applying_any_plan_leaves_nothing_to_do(specs, accounts, rules):
    p = build(specs, rules)
    observed = snap(*accounts)
    first = plan_for(p, observed)
    second = plan_for(p, simulate(observed, first.actions))
    assert second.actions == ()


@settings(max_examples=200, deadline=None)
@given(identities_st, st.lists(accounts_st, max_size=4, unique_by=lambda a: a.name), rules_st)
def test_plans_are_deterministic_and_never_touch_what_the_rules_protect(specs, accounts, rules):
    p = build(specs, rules)
    observed = snap(*accounts)
    plan = plan_for(p, observed)
    assert plan == plan_for(p, snap(*reversed(accounts)))
    declared = {a.account for i in p.identities.values() for a in i.access}
    for action in plan.actions:
        if action.op is Op.DELETE_ACCOUNT:
            assert rules.orphan_accounts is RuleAction.DELETE and action.account not in declared
        if action.op is Op.REVOKE and rules.excess_entitlements is RuleAction.REPORT:
            d = desired_state(p, NOW).accounts[("db", action.account)]
            assert action.entitlement in d.expired


def test_an_identity_holding_access_in_another_environment_is_reported():
    ident = replace(identity("api", "u", []), environment="dev")
    plan = plan_for(policy([ident]), snap(acct("u")))
    [f] = plan.findings
    assert f.type is FindingType.ENVIRONMENT_CROSSING and "dev" in f.detail


def test_one_account_declared_by_two_identities_is_a_shared_account():
    p = policy([identity("api", "u", ["role:a"]), identity("batch", "u", ["role:b"])])
    plan = plan_for(p, snap(acct("u", ["role:a", "role:b"])))
    assert plan.actions == ()
    assert sorted((f.type, f.identity) for f in plan.findings) == [
        (FindingType.SHARED_ACCOUNT, "api"),
        (FindingType.SHARED_ACCOUNT, "batch"),
    ]


def test_an_account_unused_for_longer_than_dormant_after_is_dormant():
    p = policy([identity("api", "u", [])], rules=Rules(dormant_after_s=30 * 86400))
    d = desired_state(p, NOW)
    observed = {"db": snap(acct("u"))}
    recent = make_plan(p, d, observed, NOW, last_used={("db", "u"): NOW - timedelta(days=29)})
    old = make_plan(p, d, observed, NOW, last_used={("db", "u"): NOW - timedelta(days=31)})
    assert recent.findings == ()
    assert [f.type for f in old.findings] == [FindingType.DORMANT_IDENTITY]


def test_lease_accounts_are_left_to_the_lease_reaper():
    p = policy([], rules=Rules(orphan_accounts=RuleAction.DELETE))
    leases = {("db", "lockstep_lease_0123abcd"): "active"}
    plan = make_plan(
        p, desired_state(p, NOW), {"db": snap(acct("lockstep_lease_0123abcd"))}, NOW, leases=leases
    )
    assert plan.actions == () and plan.findings == ()


def test_an_account_with_the_lease_prefix_and_no_lease_record_is_an_impostor_suspended():
    plan = plan_for(
        policy([], rules=Rules(orphan_accounts=RuleAction.DELETE)),
        snap(acct("lockstep_lease_backdoor")),
    )
    assert [(f.type, f.severity) for f in plan.findings] == [
        (FindingType.LEASE_IMPOSTOR, Severity.HIGH)
    ]
    assert [(a.op, a.account) for a in plan.actions] == [
        (Op.SUSPEND_ACCOUNT, "lockstep_lease_backdoor")  # never deleted, whatever the rule
    ]


def test_a_lease_whose_revocation_failed_is_an_unverified_revocation_while_it_exists():
    p = policy([])
    leases = {("db", "lockstep_lease_0123abcd"): "failed"}
    plan = make_plan(
        p, desired_state(p, NOW), {"db": snap(acct("lockstep_lease_0123abcd"))}, NOW, leases=leases
    )
    assert [f.type for f in plan.findings] == [FindingType.UNVERIFIED_REVOCATION]
    assert plan.actions == ()


def test_a_legacy_target_rotates_every_credential_lockstep_issued_on_its_shorter_clock():
    p = policy([identity("api", "u", [])])
    legacy = replace(p.targets["db"], legacy=True, max_credential_age_s=7 * 86400)
    p = replace(p, targets={"db": legacy})
    plan = make_plan(
        p, desired_state(p, NOW), {"db": snap(acct("u"))}, NOW, {("db", "u"): NOW - timedelta(8)}
    )
    assert ops(plan) == [("rotate_credential", "u", None)]


def test_a_risk_acceptance_holds_back_the_remediation_but_not_the_report():
    p = policy([identity("api", "u", ["role:a"])], rules=Rules(orphan_accounts=RuleAction.DELETE))
    observed = snap(acct("u", ["role:a", "role:b"]), acct("ghost"))
    first = plan_for(p, observed)
    assert len(first.actions) == 2
    accepted = frozenset(f.id for f in first.findings)
    held = make_plan(p, desired_state(p, NOW), {"db": observed}, NOW, accepted=accepted)
    assert held.actions == ()
    assert held.findings == first.findings


def test_expired_access_is_revoked_even_under_a_risk_acceptance():
    p = policy([identity("api", "u", ["role:a"], expires=NOW - timedelta(days=1))])
    observed = snap(acct("u", ["role:a"]))
    first = plan_for(p, observed)
    accepted = frozenset(f.id for f in first.findings)
    held = make_plan(p, desired_state(p, NOW), {"db": observed}, NOW, accepted=accepted)
    assert held.actions == first.actions
