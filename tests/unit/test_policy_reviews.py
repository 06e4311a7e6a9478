"""The policy's review rules, its notification webhook, and what an agent may declare: loaded
as written, every mistake at its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lockstep.model import RuleAction
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.load import load_policy
from lockstep.policy.reviews import AGENT_LEASE_MAX_TTL_S

ENV = {"DSN": "postgresql://admin@127.0.0.1:5432/orders"}

BASE = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${DSN}
    environment: prod
owners:
  payments-team:
    contacts: [alice@example.com]
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    access:
      - target: orders-db
        account: payments_api
        entitlements: [role:app_readonly]
"""

AGENT = """\
  triage-agent:
    owner: payments-team
    purpose: Triage tickets
    kind: agent
    sponsor: alice@example.com
    access:
      - target: orders-db
        account: triage_agent
        entitlements: [role:app_readonly]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lockstep.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        load_policy(path, ENV)
    return [str(e).removeprefix(str(path)) for e in info.value.errors]


def test_review_rules_load_as_written(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        rules:
          review_every: {prod: 90d, default: 180d}
          review_grace: 3d
          unreviewed: suspend
        governance:
          notify: {webhook: "https://hooks.example.com/lockstep"}
        """)
    policy = load_policy(write(tmp_path, text), ENV).policy
    assert policy.rules.review_every_s == {"prod": 90 * 86400, "default": 180 * 86400}
    assert policy.rules.review_grace_s == 3 * 86400
    assert policy.rules.unreviewed is RuleAction.SUSPEND
    assert policy.governance.notify is not None
    assert policy.governance.notify.webhook == "https://hooks.example.com/lockstep"


def test_by_default_nothing_is_reviewed_periodically_and_overdue_reviews_are_reported(
    tmp_path: Path,
) -> None:
    policy = load_policy(write(tmp_path, BASE), ENV).policy
    assert policy.rules.review_every_s == {}
    assert policy.rules.review_grace_s == 7 * 86400
    assert policy.rules.unreviewed is RuleAction.REPORT
    assert policy.governance.notify is None


def test_review_rule_mistakes_are_errors_at_their_lines(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        rules:
          review_every: {prd: 90d}
          review_grace: 0d
          unreviewed: delete
        governance:
          notify: {webhook: "ftp://hooks.example.com"}
        """)
    errors = errors_of(write(tmp_path, text))
    assert any(e.startswith(":20:") and "review_grace" in e for e in errors), errors
    assert any(e.startswith(":21:") and "unreviewed" in e for e in errors), errors
    assert any(e.startswith(":23: notify.webhook: write an http") for e in errors), errors
    # the environment check runs once the rules have a valid shape
    text = text.replace("review_grace: 0d", "review_grace: 1d").replace("delete", "revoke")
    errors = errors_of(write(tmp_path, text))
    assert any(e.startswith(":19: no target or identity is in environment 'prd'") for e in errors)


def test_an_agent_holds_short_leases_by_default(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, BASE + AGENT), ENV).policy
    agent = policy.identities["triage-agent"]
    assert agent.credentials.lease_max_ttl_s == AGENT_LEASE_MAX_TTL_S == 3600
    assert policy.identities["payments-api"].credentials.lease_max_ttl_s is None


def test_an_agent_needs_a_sponsor(tmp_path: Path) -> None:
    text = BASE + AGENT.replace("    sponsor: alice@example.com\n", "")
    assert errors_of(write(tmp_path, text)) == [
        ":21: an agent needs a sponsor: the person who answers for it"
    ]


def test_an_agent_holds_no_static_credential_and_no_long_lease(tmp_path: Path) -> None:
    text = (
        BASE
        + AGENT
        + textwrap.indent(
            textwrap.dedent("""\
                credentials:
                  rotate_every: 30d
                  sink: file:/run/secrets/agent.json
                  lease_ttl: 9h
                  lease_max_ttl: 9h
                """),
            "    ",
        )
    )
    errors = errors_of(write(tmp_path, text))
    assert errors == [
        ":28: an agent holds no static credential: remove credentials.rotate_every "
        "(agents obtain short-lived leases only)",
        ":29: an agent holds no static credential: remove credentials.sink "
        "(agents obtain short-lived leases only)",
        ":31: an agent's leases live at most 8h, not 9h",
    ]


def test_an_agent_may_lease_up_to_eight_hours_when_its_policy_says_so(tmp_path: Path) -> None:
    text = BASE + AGENT + "    credentials: {lease_ttl: 2h, lease_max_ttl: 8h}\n"
    agent = load_policy(write(tmp_path, text), ENV).policy.identities["triage-agent"]
    assert (agent.credentials.lease_ttl_s, agent.credentials.lease_max_ttl_s) == (7200, 28800)
    text = BASE + AGENT + "    credentials: {lease_ttl: 2h}\n"
    assert errors_of(write(tmp_path, text)) == [
        ":27: lease_ttl 2h is longer than the agent's lease_max_ttl (1h)"
    ]
