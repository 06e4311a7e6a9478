"""Agents (``kind: agent``) on real PostgreSQL and Redis: short-lived leases only, of bounded
life, that say they are an agent's; what a review takes from an agent no lease keeps; an
agent never gets a person's token."""

from __future__ import annotations

import json

import pytest

from lockstep.engine.review_model import Decision, ReviewStatus, Trigger
from lockstep.leases.records import LeaseError, LeaseStatus
from support.cli_project import Lockstep, project_env
from support.review_project import T0, Project, days, lease_manager

pytest_plugins = ("support.review_estates",)


def test_an_agents_leases_are_short_and_say_they_are_an_agents(review_project: Project) -> None:
    first, _ = review_project.estate.declared
    review_project.write(review_project.agent((first,)))
    review_project.apply(T0)
    with lease_manager(review_project, T0) as manager:
        with pytest.raises(LeaseError, match=r"lease_max_ttl: 1h"):
            manager.issue("triage-agent", "t", ttl_s=2 * 3600)
        lease, credential = manager.issue("triage-agent", "t")
        assert lease.expires_at - lease.issued_at == days(1) / 24  # 1h unless it says less
        assert review_project.estate.logs_in(credential.username, credential.secret.reveal())
    assert lease.identity_kind == "agent"
    [issued] = review_project.journal("lease_issued")
    assert issued["identity_kind"] == "agent" and issued["identity"] == "triage-agent"
    shown = Lockstep(review_project.workdir, project_env())("leases", "--json")
    [row] = json.loads(shown.stdout)["leases"]
    assert row["identity_kind"] == "agent"
    text = Lockstep(review_project.workdir, project_env())("leases").stdout
    assert "triage-agent (agent) on t" in text


def test_revoking_an_agents_access_ends_its_leases_and_new_ones_leave_it_out(
    review_project: Project,
) -> None:
    first, second = review_project.estate.declared
    review_project.write(review_project.agent((first,)))
    review_project.apply(T0)
    review_project.write(review_project.agent((first, second)))
    review_project.apply(T0 + days(1))
    review = review_project.review(trigger=Trigger.SCOPE_CHANGED)
    with lease_manager(review_project, T0 + days(1)) as manager:
        held, credential = manager.issue("triage-agent", "t")
    review_project.decide(review, Decision.REVOKE, T0 + days(1), reason="not for triage")
    review_project.apply(T0 + days(1))
    done = review_project.review()
    assert done.status is ReviewStatus.REVOKED
    assert not review_project.estate.logs_in(credential.username, credential.secret.reveal())
    [verified] = review_project.journal("review_verified")
    assert verified["leases"] == [{"lease_id": held.id, "status": "revoked"}]
    with lease_manager(review_project, T0 + days(2)) as manager:
        assert manager.get(held.id).status is LeaseStatus.REVOKED
        lease, _ = manager.issue("triage-agent", "t")
    holds = review_project.lease_account(lease.account, T0 + days(2))
    assert holds is not None and first in holds.entitlements and second not in holds.entitlements


def test_a_revoked_agent_account_gets_no_lease(review_project: Project) -> None:
    first, _ = review_project.estate.declared
    review_project.rules = "rules:\n  review_every: {default: 30d}\n"
    review_project.write(review_project.agent((first,)))
    review_project.apply(T0)
    review_project.apply(T0 + days(30))
    review_project.decide(review_project.review(), Decision.REVOKE, T0 + days(30))
    refused = pytest.raises(LeaseError, match="revoked by review RV-")
    with lease_manager(review_project, T0 + days(30)) as manager, refused:
        manager.issue("triage-agent", "t")


def test_no_person_token_is_issued_to_an_agent(review_project: Project) -> None:
    first, _ = review_project.estate.declared
    review_project.write(review_project.agent((first,)))
    lockstep = Lockstep(review_project.workdir, project_env())
    for name in ("triage-agent", "Triage-Agent"):
        proc = lockstep("token", "create", name, "--ttl", "1h")
        assert proc.returncode == 1 and proc.stdout == ""
        assert "is an identity, not a person: no person token is issued" in proc.stderr
