"""The policy's governance section and sod rules: loaded as written, every mistake reported
at its file and line, and a policy that itself breaks a sod rule refused by validate."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lockstep.model import OWNER, IdentityKind, Stage
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.load import load_policy

ENV = {"DSN": "postgresql://admin@127.0.0.1:5432/orders", "REDIS": "redis://127.0.0.1:1"}

BASE = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${DSN}
    environment: prod
  cache:
    type: redis
    url: ${REDIS}
    environment: staging
owners:
  payments-team:
    contacts: [alice@example.com]
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    environment: prod
    access:
      - target: orders-db
        account: payments_api
        entitlements: [role:app_readonly]
      - target: cache
        account: payments_api
        entitlements: ["~orders:*"]
  triage-agent:
    owner: payments-team
    purpose: Triage tickets
    kind: agent
    sponsor: Alice@Example.com
"""

GOVERNANCE = """\
governance:
  people:
    issuer: https://idp.example.com
    audience: lockstep
  groups:
    security: [Sam@Example.com, sue@example.com]
  admins: [group:security, root@example.com]
  approvals:
    prod:
      - {approvers: [owner], required: 1}
      - {approvers: [group:security], required: 2}
    default:
      - {approvers: [owner], required: 1}
  max_duration: {prod: 7d, default: 30d}
  pending_expires_after: 12h
rules:
  sod:
    - name: write-and-cache
      entitlements: ["orders-db/insert ON TABLE public.payments", "cache/+set"]
      within: 30d
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lockstep.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        load_policy(path, ENV)
    return [str(e) for e in info.value.errors]


def test_the_governance_section_loads_as_written(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, BASE + GOVERNANCE), ENV).policy
    gov = policy.governance
    assert gov.people is not None and gov.people.claim == "email"
    assert gov.groups["security"] == {"sam@example.com", "sue@example.com"}
    assert gov.admins == ("group:security", "root@example.com")
    assert gov.approvals["prod"] == (
        Stage((OWNER,), 1),
        Stage(("group:security",), 2),
    )
    assert gov.max_duration_s == {"prod": 7 * 86400, "default": 30 * 86400}
    assert gov.pending_expires_after_s == 12 * 3600
    [rule] = policy.rules.sod
    assert rule.entitlements == (
        ("orders-db", "INSERT on table public.payments"),
        ("cache", "+set"),
    )
    assert rule.within_s == 30 * 86400
    agent = policy.identities["triage-agent"]
    assert agent.kind is IdentityKind.AGENT and agent.sponsor == "alice@example.com"


def test_without_approvals_every_request_needs_its_owner(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, BASE), ENV).policy
    assert policy.governance.approvals == {"default": (Stage((OWNER,), 1),)}
    assert policy.rules.sod == ()


def test_unknown_groups_environments_and_people_are_errors_at_their_lines(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        governance:
          groups:
            security: [not-an-email]
          admins: [group:secruity]
          approvals:
            prd:
              - {approvers: [owner, "bob; DROP TABLE"], required: 1}
            default:
              - {approvers: [carol@example.com], required: 2}
          max_duration: {qa: 1d}
        """)
    errors = errors_of(write(tmp_path, text))
    assert any(":33: group 'security': 'not-an-email' is not an email" in e for e in errors)
    assert any(":34: unknown group 'secruity' (known: security)" in e for e in errors)
    assert any(":36: no target or identity is in environment 'prd'" in e for e in errors)
    assert any(":37: 'bob; DROP TABLE' is not owner, group:NAME or an email" in e for e in errors)
    assert any(":39: 2 approvals required, but only 1 people can give them" in e for e in errors)
    assert any(":40: no target or identity is in environment 'qa'" in e for e in errors)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_duration: {prod: 0d}", ":32: max_duration.prod: '0d' is not a duration"),
        ("pending_expires_after: soon", ":32: pending_expires_after: 'soon' is not a duration"),
        ("approvals: {prod: []}", ":32: approvals.prod: List should have at least 1 item"),
        ("approvals: {prod: [{approvers: [owner], required: 0}]}", "greater than or equal to 1"),
        ("people: {issuer: https://idp.example.com}", "missing required key 'people.audience'"),
        ("admins: owner", ":32: admins: Input should be a valid list"),
    ],
)
def test_malformed_governance_keys_are_errors(tmp_path: Path, text: str, message: str) -> None:
    errors = errors_of(write(tmp_path, BASE + "governance:\n  " + text + "\n"))
    assert any(message in e for e in errors), errors


def test_sod_entitlements_name_a_target_and_its_grammar(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        rules:
          sod:
            - name: r
              entitlements: ["nowhere/role:x", "orders-db/FLY on moon x", "cache/+get"]
            - name: r
              entitlements: ["cache/+get", "cache/+set"]
        """)
    errors = errors_of(write(tmp_path, text))
    assert any(
        ":34: sod rule 'r': 'nowhere/role:x': write TARGET/ENTITLEMENT with a known target" in e
        for e in errors
    )
    assert any(":34: sod rule 'r': 'orders-db/FLY on moon x'" in e for e in errors)
    assert any(":35: sod rule 'r' is defined twice" in e for e in errors)


def test_a_sod_rule_names_two_entitlements_at_least(tmp_path: Path) -> None:
    text = BASE + 'rules:\n  sod:\n    - {name: one, entitlements: ["cache/+get"]}\n'
    assert any(
        ":33: sod.0.entitlements: List should have at least 2 items" in e
        for e in errors_of(write(tmp_path, text))
    )


def test_validate_refuses_a_policy_whose_own_access_breaks_a_sod_rule(tmp_path: Path) -> None:
    text = BASE.replace('["~orders:*"]', '["~orders:*", "+set"]') + textwrap.dedent("""\
        rules:
          sod:
            - name: read-and-write
              entitlements: ["orders-db/role:app_readonly", "cache/+SET"]
        """)
    [error] = errors_of(write(tmp_path, text))
    assert error == (
        f"{tmp_path / 'lockstep.yaml'}:25: identity 'payments-api' breaks sod rule "
        f"'read-and-write': it declares orders-db/role:app_readonly "
        f"(at {tmp_path / 'lockstep.yaml'}:22) and cache/+set"
    )


def test_a_sponsor_is_an_email(tmp_path: Path) -> None:
    errors = errors_of(write(tmp_path, BASE.replace("Alice@Example.com", "alice")))
    assert any(":30: 'alice' is not an email" in e for e in errors)
