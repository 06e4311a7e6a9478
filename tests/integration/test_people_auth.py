"""People sign in with personal tokens (kept as hashes only, with a lifetime, revocable) or
with JWTs from the policy's OIDC issuer; the operator's token acts for nobody; a workload's
token never acts as a person; a person the policy does not name is refused."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path

import pytest

from lockstep.governance.auth import Authenticator, AuthRefused
from lockstep.governance.tokens import PersonTokens
from lockstep.journal import Journal
from lockstep.leases.workload import KeySets
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.load import load_policy
from lockstep.secret import Secret
from lockstep.store import Store
from support.oidc import Issuer, new_key

WORKLOAD = "spiffe://example.org/ns/payments/sa/api"


def policy_text(issuer: str) -> str:
    return f"""\
version: 1
targets: {{}}
owners:
  payments-team: {{contacts: [alice@example.com]}}
  old-team: {{contacts: [olga@example.com], status: departed}}
identities:
  payments-api:
    owner: payments-team
    purpose: Serve payments
    workload: {{issuer: "{issuer}", subject: "{WORKLOAD}", audience: lockstep}}
governance:
  people: {{issuer: "{issuer}", audience: lockstep}}
  groups:
    security: [sam@example.com]
"""


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    started = Issuer([new_key("ES256", "people-1")], subject="u-1").start()
    yield started
    started.stop()


@pytest.fixture
def project(tmp_path: Path, issuer: Issuer) -> Path:
    (tmp_path / "lockstep.yaml").write_text(policy_text(issuer.url))
    return tmp_path


def lockstep(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LOCKSTEP_STATE"}
    return subprocess.run(
        [sys.executable, "-m", "lockstep", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(project: Path) -> Iterator[tuple[Authenticator, PersonTokens, Clock]]:
    clock = Clock()
    store = Store.open(f"sqlite:///{project}/.lockstep/state.db")
    tokens = PersonTokens(store, Journal(store), clock)
    policy = load_policy(project / "lockstep.yaml").policy
    yield Authenticator(policy, tokens, Secret("operator-secret-token"), KeySets()), tokens, clock
    store.close()


def refused(auth: Authenticator, header: str | None) -> AuthRefused:
    with pytest.raises(AuthRefused) as info:
        auth.authenticate(header)
    return info.value


def test_token_create_prints_the_token_alone_and_keeps_only_its_hash(project: Path) -> None:
    made = lockstep(project, "token", "create", "Alice@Example.com", "--ttl", "8h")
    assert made.returncode == 0, made.stderr
    [token] = made.stdout.splitlines()
    assert token.startswith("lsp_")
    assert "alice@example.com" in made.stderr and token not in made.stderr
    listed = lockstep(project, "token", "list", "--json")
    assert token not in listed.stdout and '"status": "active"' in listed.stdout
    with sqlite3.connect(project / ".lockstep" / "state.db") as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump and token.split("_", 2)[2] not in dump
    assert "token_created" in dump


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bob@example.com", "--ttl", "1h"), "'bob@example.com' is not a person the policy names"),
        (("olga@example.com", "--ttl", "1h"), "is not a person the policy names"),
        (("payments-api", "--ttl", "1h"), "'payments-api' is an identity, not a person"),
        (("alice@example.com", "--ttl", "0h"), "--ttl: '0h' is not a duration"),
        (("alice@example.com", "--ttl", "soon"), "--ttl: 'soon' is not a duration"),
        (("alice@example.com", "--ttl", "91d"), "longer than a token may live (90d)"),
    ],
)
def test_token_create_refuses_clearly_and_makes_nothing(
    project: Path, args: tuple[str, ...], message: str
) -> None:
    made = lockstep(project, "token", "create", *args)
    assert made.returncode == 1 and made.stdout == ""
    assert message in made.stderr
    assert "No tokens." in lockstep(project, "token", "list").stdout


def test_token_create_requires_a_ttl(project: Path) -> None:
    made = lockstep(project, "token", "create", "alice@example.com")
    assert made.returncode != 0 and "--ttl" in made.stderr and made.stdout == ""


def test_a_personal_token_names_its_person_until_revoked(world) -> None:
    auth, tokens, _ = world
    record, token = tokens.create("alice@example.com", 3600)
    principal = auth.authenticate(f"Bearer {token}")
    assert principal.person == "alice@example.com" and principal.via == f"token {record.id}"
    tokens.revoke(record.id)
    error = refused(auth, f"Bearer {token}")
    assert error.status is HTTPStatus.UNAUTHORIZED and "was revoked" in error.reason
    assert token not in error.reason


def test_an_expired_token_is_refused(world) -> None:
    auth, tokens, clock = world
    _, token = tokens.create("alice@example.com", 60)
    clock.now += timedelta(seconds=61)
    assert "has expired" in refused(auth, f"Bearer {token}").reason


def test_forged_and_malformed_tokens_are_refused(world) -> None:
    auth, tokens, _ = world
    _, token = tokens.create("alice@example.com", 3600)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert refused(auth, f"Bearer {forged}").reason == "unknown personal token"
    assert refused(auth, "Bearer lsp_nothing").reason == "malformed personal token"
    assert refused(auth, None).status is HTTPStatus.UNAUTHORIZED
    assert refused(auth, "Basic abc").status is HTTPStatus.UNAUTHORIZED


def test_a_person_dropped_from_the_policy_is_refused(world, project: Path, issuer: Issuer) -> None:
    _, tokens, _ = world
    _, token = tokens.create("sam@example.com", 3600)
    (project / "lockstep.yaml").write_text(
        policy_text(issuer.url).replace("[sam@example.com]", "[sue@example.com]")
    )
    edited = load_policy(project / "lockstep.yaml").policy
    auth = Authenticator(edited, tokens, None, KeySets())
    error = refused(auth, f"Bearer {token}")
    assert error.status is HTTPStatus.FORBIDDEN
    assert error.reason == "sam@example.com is not a person the policy names"


def test_the_operator_token_acts_for_nobody(world) -> None:
    auth, _, _ = world
    principal = auth.authenticate("Bearer operator-secret-token")
    assert principal.operator and principal.person is None


def test_a_jwt_from_the_people_issuer_names_its_person(world, issuer: Issuer) -> None:
    auth, _, _ = world
    principal = auth.authenticate(f"Bearer {issuer.token(email='Sam@Example.com')}")
    assert principal.person == "sam@example.com" and principal.via == f"oidc {issuer.url}"


@pytest.mark.parametrize(
    ("claims", "status", "reason"),
    [
        ({"email": "eve@example.com"}, 403, "eve@example.com is not a person the policy names"),
        ({"aud": "elsewhere", "email": "sam@example.com"}, 401, "wrong audience"),
        ({"exp": 1, "email": "sam@example.com"}, 401, "the token has expired"),
        ({}, 401, "the token has no 'email' claim naming a person"),
        (
            {"sub": WORKLOAD, "email": "sam@example.com"},
            403,
            "the token is workload 'payments-api''s: a workload never acts as a person",
        ),
    ],
)
def test_jwts_that_do_not_name_an_allowed_person_are_refused(
    world, issuer: Issuer, claims: dict[str, object], status: int, reason: str
) -> None:
    auth, _, _ = world
    token = issuer.token(**claims)  # type: ignore[arg-type]
    error = refused(auth, f"Bearer {token}")
    assert error.status == status and reason in error.reason


def test_a_jwt_signed_by_another_key_is_refused(world, issuer: Issuer) -> None:
    auth, _, _ = world
    forger = Issuer([new_key("ES256", "people-1")])
    forger.url = issuer.url
    error = refused(auth, f"Bearer {forger.token(email='sam@example.com')}")
    assert error.status is HTTPStatus.UNAUTHORIZED and "signature" in error.reason


def test_without_a_people_issuer_a_jwt_is_refused(world, project: Path, issuer: Issuer) -> None:
    _, tokens, _ = world
    text = policy_text(issuer.url).replace(
        f'  people: {{issuer: "{issuer.url}", audience: lockstep}}\n', ""
    )
    (project / "lockstep.yaml").write_text(text)
    auth = Authenticator(load_policy(project / "lockstep.yaml").policy, tokens, None, KeySets())
    error = refused(auth, f"Bearer {issuer.token(email='sam@example.com')}")
    assert "governance.people names no OIDC issuer" in error.reason


def test_the_people_issuers_keys_can_come_from_a_jwks_file(
    world, project: Path, issuer: Issuer
) -> None:
    _, tokens, _ = world
    (project / "people-keys.json").write_text(json.dumps({"keys": [k.jwk() for k in issuer.keys]}))
    text = policy_text("https://idp.example.com").replace(
        "audience: lockstep}\n  groups",
        "audience: lockstep, jwks: file:people-keys.json}\n  groups",
    )
    (project / "lockstep.yaml").write_text(text)
    policy = load_policy(project / "lockstep.yaml").policy
    assert policy.governance.people is not None
    assert policy.governance.people.jwks == f"file:{(project / 'people-keys.json').resolve()}"
    keys = KeySets({"https://idp.example.com": policy.governance.people.jwks})
    auth = Authenticator(policy, tokens, None, keys)
    offline = Issuer(issuer.keys)
    offline.url = "https://idp.example.com"
    assert auth.authenticate(f"Bearer {offline.token(email='sam@example.com')}").person == (
        "sam@example.com"
    )


def test_a_people_jwks_url_must_be_https(tmp_path: Path) -> None:
    (tmp_path / "lockstep.yaml").write_text(
        policy_text("https://idp.example.com").replace(
            "audience: lockstep}", "audience: lockstep, jwks: http://keys.example.com/jwks}"
        )
    )
    with pytest.raises(PolicyInvalid) as info:
        load_policy(tmp_path / "lockstep.yaml")
    assert "keys are fetched over https only" in str(info.value)
