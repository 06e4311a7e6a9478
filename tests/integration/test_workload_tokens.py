"""Workload tokens buy bounded work: a token whose lifetime (exp - iat) passes its identity's
maximum is refused, a token is traded for one lease only (its jti kept in the state store,
so a second service sharing the store refuses it too), an identity holds at most
`max_live_leases` live leases, every refusal is journaled once with bounded, escaped fields,
and the lease routes never tell whether a lease exists."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lockstep.engine.workspace import Workspace
from lockstep.leases.manager import LeaseManager
from lockstep.leases.sessions import TargetSessions
from lockstep.leases.workload import KeySets, WorkloadVerifier
from lockstep.service.credentials_api import router
from support import policies
from support.oidc import Issuer, new_key

if TYPE_CHECKING:
    from services.redis_server import LocalRedis

pytest_plugins = ("services.redis_server",)

SUBJECT = "spiffe://example.org/ns/payments/sa/api"


def policy(issuer: str) -> policies.Policy:
    return policies.Policy(
        targets={"cache": policies.Target.redis(policies.Var("CACHE_URL"))},
        owners={"team": policies.Owner(["a@example.com"])},
        identities={
            "payments-api": policies.Identity(
                owner="team",
                purpose="tests",
                access=[policies.Access("cache", "payments_api", ["~orders:*", "+get"])],
                credentials=policies.Credentials(lease_ttl="10m", max_live_leases=2),
                workload=policies.Workload(issuer, SUBJECT, "lockstep", max_token_lifetime="10m"),
            )
        },
    )


@dataclass
class App:
    client: TestClient
    workspace: Workspace

    def issue(self, token: str | None) -> Any:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        body = {"identity": "payments-api", "target": "cache"}
        return self.client.post("/v1/credentials", json=body, headers=headers)

    def refusals(self) -> list[dict[str, Any]]:
        return [
            dict(e.payload)
            for e in self.workspace.journal.entries()
            if e.kind == "workload_refused"
        ]


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    started = Issuer([new_key("ES256", "k1")], subject=SUBJECT).start()
    yield started
    started.stop()


def _app(workdir: Path) -> Iterator[App]:
    with Workspace.open(workdir / "lockstep.yaml") as ws:
        manager = LeaseManager(ws.policy, ws.store, ws.journal, ws.vault, TargetSessions(ws.policy))
        app = FastAPI()
        app.include_router(router)
        app.state.leases = manager
        app.state.workloads = WorkloadVerifier(ws.policy.identities, KeySets())
        app.state.journal = ws.journal
        with TestClient(app) as client:
            yield App(client, ws)
        manager.close()


@pytest.fixture
def two(
    tmp_path: Path,
    issuer: Issuer,
    redis_server: LocalRedis,
    redis_target: object,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[App, App]]:
    """Two services sharing one state store."""
    monkeypatch.setenv("CACHE_URL", redis_server.url())
    monkeypatch.delenv("LOCKSTEP_STATE", raising=False)
    policy(issuer.url).write(tmp_path)
    first, second = _app(tmp_path), _app(tmp_path)
    yield next(first), next(second)
    for each in (first, second):
        next(each, None)


def test_a_token_living_longer_than_its_identity_allows_is_refused(
    two: tuple[App, App], issuer: Issuer
) -> None:
    app, _ = two
    now = int(time.time())
    answer = app.issue(issuer.token(iat=now, exp=now + 3600))
    assert answer.status_code == HTTPStatus.UNAUTHORIZED
    assert "lifetime" in answer.json()["error"] and "600s" in answer.json()["error"]
    assert app.issue(issuer.token(iat=None)).status_code == HTTPStatus.UNAUTHORIZED
    assert app.issue(issuer.token(jti=None)).status_code == HTTPStatus.UNAUTHORIZED
    assert app.issue(issuer.token(iat=now, exp=now + 300)).status_code == HTTPStatus.CREATED


def test_a_token_buys_one_lease_on_every_service_sharing_the_store(
    two: tuple[App, App], issuer: Issuer
) -> None:
    first, second = two
    token = issuer.token()
    assert first.issue(token).status_code == HTTPStatus.CREATED
    again = second.issue(token)
    assert again.status_code == HTTPStatus.UNAUTHORIZED
    assert "already traded" in again.json()["error"]
    assert first.issue(token).status_code == HTTPStatus.UNAUTHORIZED
    refusals = first.refusals()
    assert len(refusals) == 2  # once per refusal
    assert all("already traded" in r["reason"] for r in refusals)


def test_an_identity_holds_at_most_its_quota_of_live_leases(
    two: tuple[App, App], issuer: Issuer
) -> None:
    app, _ = two
    leases = [app.issue(issuer.token()).json() for _ in range(2)]
    over = app.issue(issuer.token())
    assert over.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "max_live_leases" in over.json()["error"]
    released = app.client.delete(
        f"/v1/credentials/{leases[0]['lease_id']}",
        headers={"Authorization": f"Bearer {issuer.token()}"},
    )
    assert released.status_code == HTTPStatus.OK
    assert app.issue(issuer.token()).status_code == HTTPStatus.CREATED
    [refusal] = app.refusals()
    assert refusal["status"] == 429


def test_refusals_are_journaled_with_bounded_escaped_fields(
    two: tuple[App, App], issuer: Issuer
) -> None:
    app, _ = two
    # Random filler: a run of one letter may hold a test's registered password, and the
    # journal rightly refuses an entry with a secret in it.
    hostile = "\x1b]8;;https://evil\x07" + secrets.token_hex(2500)
    answer = app.issue(issuer.token(subject=hostile))
    assert answer.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN), answer.text
    [refusal] = app.refusals()
    assert len(refusal["sub"]) <= 201
    assert "\x1b" not in refusal["sub"] and "\x1b" not in refusal["reason"]
    assert "\x1b" not in answer.text


def test_the_lease_routes_never_tell_whether_a_lease_exists(
    two: tuple[App, App], issuer: Issuer
) -> None:
    app, _ = two
    lease = app.issue(issuer.token()).json()
    for path in (f"/v1/credentials/{lease['lease_id']}", "/v1/credentials/no-such-lease"):
        for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "x"}):
            answer = app.client.delete(path, headers=headers)
            assert answer.status_code == HTTPStatus.UNAUTHORIZED, (path, headers)
            renew = app.client.post(f"{path}/renew", json={}, headers=headers)
            assert renew.status_code == HTTPStatus.UNAUTHORIZED
    bodies = {
        app.client.delete(path, headers={}).text
        for path in (f"/v1/credentials/{lease['lease_id']}", "/v1/credentials/no-such-lease")
    }
    assert len(bodies) == 1
