"""Signing in to the dashboard through the people's OIDC issuer: the authorization-code flow
with PKCE against a local issuer (tests/support/oidc.py), a real `lockstep run` and a real
PostgreSQL. The redirect URI is the policy's whatever Host the request names; the session
lasts no longer than the ID token; a forged state, a replayed code, a refusal by the issuer,
a wrong nonce and a person the policy does not name sign nobody in; no secret is logged."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lockstep.demo import localpg
from support.dashboard_estate import PERSON, DashboardEstate, start_estate
from support.oidc import Issuer, new_key

CLIENT_SECRET = "dashboard-client-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    started = Issuer([new_key("ES256", "people-1")], client_secret=CLIENT_SECRET).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def estate(
    pg_server: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory, issuer: Issuer
) -> Iterator[DashboardEstate]:
    from conftest import _reset_cluster

    _reset_cluster(pg_server)
    port = localpg.free_port()
    people: dict[str, object] = {
        "issuer": issuer.url,
        "audience": "lockstep",
        "client_id": issuer.client_id,
        "client_secret": "${OIDC_CLIENT_SECRET}",
        "redirect_uri": f"http://127.0.0.1:{port}/signin/oidc/callback",
    }
    running = start_estate(
        tmp_path_factory.mktemp("dashboard-oidc"), pg_server, people, port,
        OIDC_CLIENT_SECRET=CLIENT_SECRET,
    )  # fmt: skip
    running.secrets.append(CLIENT_SECRET)
    yield running
    running.stop()
    _reset_cluster(pg_server)


@pytest.fixture(autouse=True)
def fresh(issuer: Issuer) -> None:
    issuer.login_as, issuer.refuse_with, issuer.id_token_claims = PERSON, None, {}


def to_issuer(client: httpx.Client, next_path: str = "/requests") -> httpx.Response:
    """Start a sign-in; the redirect to the issuer's authorization endpoint."""
    start = client.get(f"/signin/oidc?next={next_path}")
    assert start.status_code == 303, start.text
    return start


def through_issuer(client: httpx.Client, start: httpx.Response) -> str:
    """What the issuer sends the browser back to: the callback's path and query."""
    answer = httpx.get(start.headers["location"], follow_redirects=False)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    return f"{back.path}?{back.query}"


def test_a_person_signs_in_with_the_code_flow_and_pkce(
    estate: DashboardEstate, issuer: Issuer
) -> None:
    with estate.client() as client:
        assert f"Sign in with {issuer.url}" in client.get("/signin").text
        start = to_issuer(client)
        asked = parse_qs(urlsplit(start.headers["location"]).query)
        assert asked["response_type"] == ["code"] and asked["code_challenge_method"] == ["S256"]
        assert asked["redirect_uri"] == [f"{estate.url}/signin/oidc/callback"]
        assert {"openid", "email"} <= set(asked["scope"][0].split())
        assert asked["state"][0] and asked["nonce"][0] and len(asked["code_challenge"][0]) >= 43
        flow = next(c for c in start.headers.get_list("set-cookie") if "lockstep_oidc=" in c)
        assert "HttpOnly" in flow and "SameSite=lax" in flow
        back = client.get(through_issuer(client, start))
        assert back.status_code == 303 and back.headers["location"] == "/requests"
        session = next(c for c in back.headers.get_list("set-cookie") if "lockstep_session=" in c)
        max_age = int(session.split("Max-Age=")[1].split(";")[0])
        assert 0 < max_age <= 300  # no longer than the ID token
        page = client.get("/requests")
        assert page.status_code == 200 and PERSON in page.text
    traded = issuer.token_requests[-1]
    assert traded["grant_type"] == "authorization_code" and traded["code_verifier"]
    assert traded["redirect_uri"] == f"{estate.url}/signin/oidc/callback"


def test_the_redirect_uri_never_comes_from_the_host_header(estate: DashboardEstate) -> None:
    with estate.client() as client:
        start = client.get("/signin/oidc", headers={"Host": "evil.example:443"})
        assert start.status_code == 303
        asked = parse_qs(urlsplit(start.headers["location"]).query)
        assert asked["redirect_uri"] == [f"{estate.url}/signin/oidc/callback"]


def test_a_forged_state_or_a_replayed_code_signs_nobody_in(estate: DashboardEstate) -> None:
    with estate.client() as client:
        back = through_issuer(client, to_issuer(client))
        forged = back.replace("state=", "state=x")
        answer = client.get(forged)
        assert answer.status_code == 401 and "state differs" in answer.text
        assert client.get("/").status_code == 303
        again = client.get(back)  # the flow's cookie was spent by the forged answer
        assert again.status_code == 401 and "start again" in again.text
        assert client.get("/").status_code == 303


def test_another_browsers_callback_signs_nobody_in(estate: DashboardEstate) -> None:
    with estate.client() as victim, estate.client() as attacker:
        back = through_issuer(attacker, to_issuer(attacker))
        answer = victim.get(back)  # login CSRF: the victim has no flow of that sign-in
        assert answer.status_code == 401 and "started elsewhere" in answer.text
        assert victim.get("/").status_code == 303


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"refuse_with": "access_denied"}, "the identity provider refused: access_denied"),
        ({"login_as": "mallory@example.com"}, "mallory@example.com is not a person the policy"),
        ({"id_token_claims": {"nonce": "another"}}, "the ID token is not this sign-in"),
        ({"id_token_claims": {"aud": "someone-else"}}, "wrong audience"),
    ],
)
def test_refusals_sign_nobody_in(
    estate: DashboardEstate, issuer: Issuer, setup: dict[str, object], message: str
) -> None:
    for key, value in setup.items():
        setattr(issuer, key, value)
    with estate.client() as client:
        answer = client.get(through_issuer(client, to_issuer(client)))
        assert answer.status_code == 401 and message in answer.text, answer.text
        assert "lockstep_session=" not in answer.headers.get("set-cookie", "")
        assert client.get("/").status_code == 303


def test_no_token_code_or_secret_reaches_the_log(estate: DashboardEstate, issuer: Issuer) -> None:
    with estate.client() as client:
        back = through_issuer(client, to_issuer(client))
        code = parse_qs(urlsplit(back).query)["code"][0]
        assert client.get(back).status_code == 303
    assert estate.service is not None
    log = estate.service.text()
    assert "dashboard sign-in" in log
    for secret in (*estate.secrets, code):
        assert secret not in log
