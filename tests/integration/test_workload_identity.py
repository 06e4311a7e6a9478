"""Workload identity: a workload obtains a lease from ``POST /v1/credentials`` by presenting a
JWT from a trusted issuer, bound to that identity alone. Every refusal is one clear error,
and is journaled without the token.

The issuer is real: a local HTTP server publishing OIDC discovery and a JWKS of keys the tests
generate. The lease is real too: an ACL user on a private Redis server.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lockstep.engine.workspace import Workspace
from lockstep.journal import Entry
from lockstep.leases.manager import LeaseManager
from lockstep.leases.sessions import TargetSessions
from lockstep.leases.workload import (
    KeySets,
    KeySourceError,
    WorkloadRefused,
    WorkloadVerifier,
    parse_key_source,
)
from lockstep.model import Identity, Workload
from lockstep.service.credentials_api import router
from support import policies
from support.oidc import Issuer, SigningKey, new_key

if TYPE_CHECKING:
    from services.redis_server import LocalRedis

pytest_plugins = ("services.redis_server",)

PAYMENTS = "spiffe://example.org/ns/payments/sa/api"
REPORTING = "spiffe://example.org/ns/reporting/sa/job"
AUDIENCE = "lockstep"


def policy(issuer: str, partner: str) -> policies.Policy:
    """Three identities on the cache, each bound to the one workload that may obtain it."""
    return policies.Policy(
        targets={"cache": policies.Target.redis(policies.Var("CACHE_URL"))},
        owners={"team": policies.Owner(["team@example.com"])},
        identities={
            "payments-api": policies.Identity(
                owner="team",
                purpose="Serve payments",
                access=[policies.Access("cache", "payments_api", ["~orders:*", "+get", "+ping"])],
                credentials=policies.Credentials(
                    lease_ttl="10m", lease_max_ttl="1h", max_live_leases=100
                ),
                workload=policies.Workload(issuer, PAYMENTS, AUDIENCE, claims={"env": "prod"}),
            ),
            "reporting-job": policies.Identity(
                owner="team",
                purpose="Nightly report",
                access=[policies.Access("cache", "reporting_job", ["~reports:*", "+get"])],
                workload=policies.Workload(issuer, REPORTING, AUDIENCE),
            ),
            "partner-feed": policies.Identity(
                owner="team",
                purpose="A partner's feed, vouched for by the partner's own issuer",
                access=[policies.Access("cache", "partner_feed", ["~feed:*", "+get"])],
                workload=policies.Workload(partner, PAYMENTS, AUDIENCE),
            ),
        },
    )


def workload_issuer(keys: list[SigningKey]) -> Issuer:
    """Tokens of the payments workload unless a test says otherwise."""
    return Issuer(keys, subject=PAYMENTS, audience=AUDIENCE, claims={"env": "prod"})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    started = workload_issuer(
        [new_key("RS256", "rsa-1"), new_key("ES256", "ec-1"), new_key("EdDSA", "ed-1")]
    )
    yield started.start()
    started.stop()


@pytest.fixture
def partner() -> Iterator[Issuer]:
    started = workload_issuer([new_key("ES256", "partner-1")])
    yield started.start()
    started.stop()


# ---------------------------------------------------------------- the service


@dataclass
class Service:
    client: TestClient
    workspace: Workspace
    state_db: Path

    def request(self, token: str | None, identity: str = "payments-api", **body: Any) -> Any:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return self.client.post(
            "/v1/credentials",
            json={"identity": identity, "target": "cache", **body},
            headers=headers,
        )

    def journal(self, kind: str) -> list[Entry]:
        return [e for e in self.workspace.journal.entries() if e.kind == kind]


@pytest.fixture
def service(
    tmp_path: Path,
    issuer: Issuer,
    partner: Issuer,
    redis_server: LocalRedis,
    redis_target: object,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Service]:
    monkeypatch.setenv("CACHE_URL", redis_server.url())
    monkeypatch.delenv("LOCKSTEP_STATE", raising=False)
    with Workspace.open(policy(issuer.url, partner.url).write(tmp_path)) as ws:
        sessions = TargetSessions(ws.policy)
        app = FastAPI()
        app.include_router(router)
        app.add_api_route("/in-the-pool", lambda: {"ok": True})
        manager = LeaseManager(ws.policy, ws.store, ws.journal, ws.vault, sessions)
        app.state.leases = manager
        app.state.workloads = WorkloadVerifier(ws.policy.identities, KeySets())
        app.state.journal = ws.journal
        with TestClient(app) as client:
            yield Service(client, ws, tmp_path / ".lockstep" / "state.db")
        manager.close()


def redis_login(server: LocalRedis, username: str, password: str) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=server.port, username=username, password=password, protocol=2
    )


# ---------------------------------------------------------------- accepted


def test_a_bound_workload_gets_a_working_lease(
    service: Service, issuer: Issuer, redis_server: LocalRedis
) -> None:
    token = issuer.token()
    answer = service.request(token)
    assert answer.status_code == HTTPStatus.CREATED, answer.text
    lease = answer.json()
    assert {"lease_id", "username", "password", "expires_at"} <= set(lease)
    with redis_login(redis_server, lease["username"], lease["password"]) as client:
        assert client.ping()

    [issued] = service.journal("lease_issued")
    assert issued.payload["lease_id"] == lease["lease_id"]
    assert issued.payload["workload"] == PAYMENTS
    state = service.state_db.read_bytes()
    assert token.encode() not in state
    assert lease["password"].encode() not in state


def test_requests_waiting_for_leases_hold_no_thread_and_are_issued_in_batches(
    service: Service, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager: LeaseManager = service.client.app.state.leases  # type: ignore[attr-defined]
    waiting = []
    issue_later = manager.issue_later

    def counted(*args: Any) -> Any:
        waiting.append(args)
        return issue_later(*args)

    monkeypatch.setattr(manager, "issue_later", counted)
    requests = 45  # more than FastAPI's thread pool holds (40)
    # Every issue waits at its first state commit until this writer is done.
    blocker = sqlite3.connect(service.state_db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with ThreadPoolExecutor(requests) as pool:
        tokens = [issuer.token() for _ in range(requests)]  # a token buys one lease
        pending = [pool.submit(service.request, t) for t in tokens]
        deadline = time.monotonic() + 20
        while len(waiting) < requests:
            assert time.monotonic() < deadline, f"only {len(waiting)} requests got to wait"
            time.sleep(0.01)
        # The pool is free for other requests meanwhile (a route run in the pool that does
        # not write: every refusal is journaled, and the journal is what is blocked here).
        other = service.client.get("/in-the-pool")
        assert other.status_code == HTTPStatus.OK
        blocker.execute("COMMIT")
        blocker.close()
        answers = [p.result() for p in pending]
    assert [a.status_code for a in answers] == [HTTPStatus.CREATED] * requests
    intents = [e for e in service.journal("lease_intent") if e.payload["op"] == "issue"]
    assert len(intents) == requests
    assert len({e.at for e in intents}) < requests  # journaled in batches


def test_a_state_store_that_cannot_record_the_lease_answers_503_and_journals_no_intent(
    service: Service, issuer: Issuer, redis_server: LocalRedis
) -> None:
    token = issuer.token()
    assert service.request(token).status_code == HTTPStatus.CREATED
    intents = len(service.journal("lease_intent"))
    with sqlite3.connect(service.state_db) as conn:
        conn.execute("DROP TABLE leases")
    answer = service.request(token)
    assert answer.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert "nothing issued" in answer.json()["error"]
    # The intent and the record are one transaction: neither was written.
    assert len(service.journal("lease_intent")) == intents
    with redis_server.admin() as admin:
        assert len([u for u in admin.acl_users() if u.startswith("lockstep_lease_")]) == 1


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1", "ed-1"])
def test_rs256_es256_and_eddsa_are_accepted(service: Service, issuer: Issuer, kid: str) -> None:
    key = next(k for k in issuer.keys if k.kid == kid)
    assert service.request(issuer.token(key=key)).status_code == HTTPStatus.CREATED


def test_the_lease_lives_as_long_as_the_identity_allows(service: Service, issuer: Issuer) -> None:
    answer = service.request(issuer.token(), ttl="2h")
    assert answer.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert "lease_max_ttl" in answer.json()["error"]
    assert service.request(issuer.token(), ttl="5m").status_code == HTTPStatus.CREATED


def test_keys_can_come_from_a_jwks_file(tmp_path: Path, issuer: Issuer) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [k.jwk() for k in issuer.keys]}))
    verifier = WorkloadVerifier(_identities(issuer.url), KeySets({issuer.url: f"file:{path}"}))
    issuer.stop()  # nothing is fetched
    assert verifier.verify(issuer.token(), "payments-api").subject == PAYMENTS


def test_a_workload_renews_and_releases_its_own_lease(
    service: Service, issuer: Issuer, redis_server: LocalRedis
) -> None:
    lease = service.request(issuer.token()).json()
    auth = {"Authorization": f"Bearer {issuer.token()}"}
    renewed = service.client.post(
        f"/v1/credentials/{lease['lease_id']}/renew", json={"ttl": "30m"}, headers=auth
    )
    assert renewed.status_code == HTTPStatus.OK, renewed.text
    assert renewed.json()["expires_at"] > lease["expires_at"]

    released = service.client.delete(f"/v1/credentials/{lease['lease_id']}", headers=auth)
    assert released.status_code == HTTPStatus.OK, released.text
    assert released.json()["status"] == "revoked"
    with (
        pytest.raises(redis.exceptions.AuthenticationError),
        redis_login(redis_server, lease["username"], lease["password"]) as client,
    ):
        client.ping()


def test_another_workload_cannot_release_a_lease(service: Service, issuer: Issuer) -> None:
    lease = service.request(issuer.token()).json()
    other = {"Authorization": f"Bearer {issuer.token(subject=REPORTING)}"}
    answer = service.client.delete(f"/v1/credentials/{lease['lease_id']}", headers=other)
    # Answered as a lease that does not exist: nobody learns whether another's lease exists.
    unknown = service.client.delete("/v1/credentials/no-such-lease", headers=other)
    assert answer.status_code == unknown.status_code == HTTPStatus.NOT_FOUND
    assert answer.json() == unknown.json()


# ---------------------------------------------------------------- refused


def assert_refused(
    service: Service, answer: Any, status: HTTPStatus, reason: str, token: str | None
) -> None:
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["error"]
    [refusal] = service.journal("workload_refused")
    assert reason in refusal.payload["reason"]
    assert refusal.payload["identity"] == "payments-api"
    assert service.journal("lease_intent") == []
    if token is not None:
        assert token.encode() not in service.state_db.read_bytes()
        assert token not in answer.text


def test_an_expired_token_is_refused(service: Service, issuer: Issuer) -> None:
    token = issuer.token(exp=int(time.time()) - 120)
    answer = service.request(token)
    assert_refused(service, answer, HTTPStatus.UNAUTHORIZED, "expired", token)
    [refusal] = service.journal("workload_refused")
    assert refusal.payload["iss"] == issuer.url
    assert refusal.payload["sub"] == PAYMENTS
    assert refusal.payload["kid"] == "rsa-1"


def test_a_token_for_another_audience_is_refused(service: Service, issuer: Issuer) -> None:
    token = issuer.token(aud="some-other-service")
    assert_refused(service, service.request(token), HTTPStatus.UNAUTHORIZED, "audience", token)


def test_a_token_from_an_untrusted_issuer_is_refused(service: Service, issuer: Issuer) -> None:
    stranger = workload_issuer([new_key("RS256", "rsa-1")]).start()
    try:
        token = stranger.token()
        answer = service.request(token)
    finally:
        stranger.stop()
    assert_refused(service, answer, HTTPStatus.UNAUTHORIZED, "not trusted", token)


def test_a_token_claiming_a_trusted_issuer_but_signed_by_another_key_is_refused(
    service: Service, issuer: Issuer
) -> None:
    forger = new_key("RS256", "rsa-1")  # same kid, different key
    token = issuer.token(key=forger)
    assert_refused(service, service.request(token), HTTPStatus.UNAUTHORIZED, "signature", token)


def test_a_token_from_another_trusted_issuer_is_refused_for_this_identity(
    service: Service, partner: Issuer
) -> None:
    token = partner.token()  # same subject, but the partner's issuer vouches for partner-feed
    assert_refused(service, service.request(token), HTTPStatus.FORBIDDEN, "wrong issuer", token)


def test_alg_none_is_refused(service: Service, issuer: Issuer) -> None:
    signed = issuer.token()
    header = _b64({"alg": "none", "typ": "JWT", "kid": "rsa-1"})
    token = f"{header}.{signed.split('.')[1]}."
    assert_refused(service, service.request(token), HTTPStatus.UNAUTHORIZED, "'none'", token)


def test_an_hmac_token_keyed_with_the_public_key_is_refused(
    service: Service, issuer: Issuer
) -> None:
    public = (
        issuer.keys[0]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"})
    payload = issuer.token().split(".")[1]
    algorithm = jwt.get_algorithm_by_name("HS256")
    signature = algorithm.sign(f"{header}.{payload}".encode(), public)
    token = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert_refused(service, service.request(token), HTTPStatus.UNAUTHORIZED, "'HS256'", token)


def test_an_unknown_kid_is_refused(service: Service, issuer: Issuer) -> None:
    token = issuer.token(key=new_key("RS256", "rotated-away"))
    assert_refused(service, service.request(token), HTTPStatus.UNAUTHORIZED, "unknown kid", token)


def test_a_token_bound_to_another_identity_is_refused(service: Service, issuer: Issuer) -> None:
    token = issuer.token(subject=REPORTING)
    answer = service.request(token)
    assert_refused(service, answer, HTTPStatus.FORBIDDEN, "not the workload bound", token)
    assert service.request(token, identity="reporting-job").status_code == HTTPStatus.CREATED


def test_a_required_claim_with_another_value_is_refused(service: Service, issuer: Issuer) -> None:
    token = issuer.token(env="dev")
    assert_refused(service, service.request(token), HTTPStatus.FORBIDDEN, "claim 'env'", token)


def test_a_token_without_an_expiry_is_refused(service: Service, issuer: Issuer) -> None:
    token = issuer.token(exp=None)
    assert_refused(service, service.request(token), HTTPStatus.UNAUTHORIZED, "'exp'", token)


def test_a_token_not_valid_yet_is_refused(service: Service, issuer: Issuer) -> None:
    token = issuer.token(nbf=int(time.time()) + 600)
    assert_refused(service, service.request(token), HTTPStatus.UNAUTHORIZED, "not valid yet", token)


def test_a_request_without_a_token_is_refused(service: Service) -> None:
    assert_refused(
        service, service.request(None), HTTPStatus.UNAUTHORIZED, "token is required", None
    )


def test_garbage_for_a_token_is_refused(service: Service) -> None:
    token = "not-a-jwt"
    assert_refused(service, service.request(token), HTTPStatus.UNAUTHORIZED, "not a JWT", token)


def test_an_identity_without_a_binding_is_refused(issuer: Issuer) -> None:
    identities = _identities(issuer.url)
    identities["batch"] = Identity("batch", "team", "x", None, ())
    verifier = WorkloadVerifier(identities, KeySets())
    with pytest.raises(WorkloadRefused, match="no workload binding") as refused:
        verifier.verify(issuer.token(), "batch")
    assert refused.value.status == HTTPStatus.FORBIDDEN


def test_a_token_that_two_identities_accept_is_refused(issuer: Issuer) -> None:
    identities = _identities(issuer.url)
    twin = identities["payments-api"]
    identities["payments-twin"] = Identity(
        "payments-twin", "team", "x", None, (), workload=twin.workload
    )
    verifier = WorkloadVerifier(identities, KeySets())
    with pytest.raises(WorkloadRefused, match="several identities"):
        verifier.verify(issuer.token(), "payments-api")


def test_a_discovery_document_for_another_issuer_is_not_used(issuer: Issuer) -> None:
    issuer.discovery_issuer = "https://evil.example"
    verifier = WorkloadVerifier(_identities(issuer.url), KeySets())
    with pytest.raises(WorkloadRefused, match="not that of issuer") as refused:
        verifier.verify(issuer.token(), "payments-api")
    assert refused.value.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert issuer.fetches == 0


def test_an_issuer_that_cannot_be_reached_refuses_every_token(issuer: Issuer) -> None:
    verifier = WorkloadVerifier(_identities(issuer.url), KeySets())
    token = issuer.token()
    issuer.stop()
    with pytest.raises(WorkloadRefused, match="discovery") as refused:
        verifier.verify(token, "payments-api")
    assert refused.value.status == HTTPStatus.SERVICE_UNAVAILABLE


def test_keys_are_fetched_once_and_cached(issuer: Issuer) -> None:
    verifier = WorkloadVerifier(_identities(issuer.url), KeySets())
    for key in issuer.keys:
        verifier.verify(issuer.token(key=key), "payments-api")
    assert issuer.fetches == 1


@pytest.mark.parametrize(
    "option",
    [
        "https://issuer.example",
        "=https://keys.example/jwks.json",
        "https://issuer.example=http://keys.example/jwks.json",
        "https://issuer.example=ftp://keys.example/jwks.json",
    ],
)
def test_key_sources_must_be_complete_and_fetched_securely(option: str) -> None:
    with pytest.raises(KeySourceError):
        parse_key_source(option)


@pytest.mark.parametrize(
    ("option", "source"),
    [
        ("https://issuer.example=https://keys.example/jwks.json", "https://keys.example/jwks.json"),
        ("https://issuer.example=file:/etc/lockstep/jwks.json", "file:/etc/lockstep/jwks.json"),
        ("http://127.0.0.1:8080=http://127.0.0.1:8080/keys", "http://127.0.0.1:8080/keys"),
    ],
)
def test_key_sources_name_an_issuer_and_where_its_keys_are(option: str, source: str) -> None:
    assert parse_key_source(option)[1] == source


def _identities(issuer_url: str) -> dict[str, Identity]:
    binding = Workload(issuer_url, PAYMENTS, AUDIENCE, {"env": "prod"})
    return {"payments-api": Identity("payments-api", "team", "x", None, (), workload=binding)}


def _b64(header: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
