"""``governance.people``'s OIDC client, through which the dashboard signs people in: loaded as
written, its secret only from ${VAR} and never shown, its redirect URI checked, and every
mistake an error at its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lockstep.model import Policy
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.load import load_policy

ENV = {"DSN": "postgresql://admin@127.0.0.1:5432/orders"}
BASE = """\
version: 1
targets:
  orders-db: {type: postgres, dsn: "${DSN}"}
owners:
  payments-team: {contacts: [alice@example.com]}
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    access: [{target: orders-db, account: payments_api, entitlements: []}]
"""
SECRET = "client-secret-from-the-environment-0123456789"
URI = "https://lockstep.example.com/signin/oidc/callback"
PEOPLE = """\
governance:
  people:
    issuer: https://idp.example.com
    audience: lockstep
    client_id: lockstep-dashboard
    client_secret: ${OIDC_CLIENT_SECRET}
    redirect_uri: https://lockstep.example.com/signin/oidc/callback
"""


def load(tmp_path: Path, text: str, **env: str) -> Policy:
    path = tmp_path / "lockstep.yaml"
    path.write_text(BASE + textwrap.dedent(text))
    return load_policy(path, {**ENV, **env}).policy


def errors_of(tmp_path: Path, text: str, **env: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        load(tmp_path, text, **env)
    return [str(e) for e in info.value.errors]


def test_the_client_loads_with_its_secret_from_the_environment(tmp_path: Path) -> None:
    people = load(tmp_path, PEOPLE, OIDC_CLIENT_SECRET=SECRET).governance.people
    assert people is not None and people.client is not None
    client = people.client
    assert client.client_id == "lockstep-dashboard"
    assert client.redirect_uri == "https://lockstep.example.com/signin/oidc/callback"
    assert client.scopes == ("openid", "email", "profile")
    assert client.client_secret is not None and client.client_secret.reveal() == SECRET
    assert SECRET not in repr(people) and SECRET not in str(client)


def test_a_public_client_needs_no_secret(tmp_path: Path) -> None:
    text = PEOPLE.replace("    client_secret: ${OIDC_CLIENT_SECRET}\n", "")
    people = load(tmp_path, text).governance.people
    assert people is not None and people.client is not None
    assert people.client.client_secret is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("${OIDC_CLIENT_SECRET}", "hunter2", "'client_secret' holds a literal secret"),
        ("${OIDC_CLIENT_SECRET}", "file:/run/secret", "client_secret: pass it as ${VAR}"),
        (URI, URI.replace("https:", "http:"), "use https (http only on loopback)"),
        (URI, URI.replace("signin/oidc/callback", "x"), "must end with /signin/oidc/callback"),
        (URI, URI + "?next=/", "has a query or fragment"),
        (URI, "/signin/oidc/callback", "is not an absolute http(s) URL"),
        (f"    redirect_uri: {URI}\n", "", "client_id needs redirect_uri"),
        ("    client_id: lockstep-dashboard\n", "", "client_secret without client_id"),
        ("redirect_uri", "scopes: [email]\n    redirect_uri", "scopes must include openid"),
    ],
)  # fmt: skip
def test_mistakes_in_the_client_are_errors_at_their_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    errors = errors_of(tmp_path, PEOPLE.replace(old, new), OIDC_CLIENT_SECRET=SECRET)
    assert any(message in e and "lockstep.yaml:1" in e for e in errors), errors


def test_loopback_may_use_http(tmp_path: Path) -> None:
    text = PEOPLE.replace("https://lockstep.example.com", "http://127.0.0.1:8787")
    people = load(tmp_path, text, OIDC_CLIENT_SECRET=SECRET).governance.people
    assert people is not None and people.client is not None
