"""The dashboard over HTTP, as a browser that misbehaves or an attacker would speak to it:
sign-in and its cookies, CSRF and cross-site refusals, headers, static files, who sees
what, and no secret anywhere in a page or the log. A real `lockstep run` over a real
PostgreSQL (the browser tests drive the same estate through Chromium)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockstep.demo import localpg
from support.dashboard_estate import (
    HOSTILE,
    OPERATOR_TOKEN,
    DashboardEstate,
    csrf_of,
    estate_on,
)


@pytest.fixture(scope="module")
def estate(
    pg_server: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardEstate]:
    with estate_on(pg_server, tmp_path_factory.mktemp("dashboard-http")) as running:
        yield running


def test_a_page_asks_to_sign_in_first(estate: DashboardEstate) -> None:
    with estate.client() as client:
        answer = client.get("/inventory")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=/inventory"
        page = client.get("/signin")
        assert page.status_code == 200
        assert '<label for="token">Token</label>' in page.text


def test_the_session_cookie_is_signed_httponly_lax_and_not_secure_on_loopback(
    estate: DashboardEstate,
) -> None:
    with estate.client() as client:
        csrf = csrf_of(client.get("/signin").text)
        answer = client.post("/signin", data={"token": OPERATOR_TOKEN, "csrf": csrf})
        assert answer.status_code == 303
        cookies = answer.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("lockstep_session="))
        assert "HttpOnly" in session and "SameSite=lax" in session
        assert "Secure" not in session
        assert OPERATOR_TOKEN not in session
        assert client.get("/").status_code == 200
        client.cookies.set("lockstep_session", session.split(";")[0].split("=", 1)[1] + "x")
        assert client.get("/").status_code == 303  # a tampered cookie signs nobody in


def test_a_wrong_token_is_refused_and_signs_nobody_in(estate: DashboardEstate) -> None:
    with estate.client() as client:
        csrf = csrf_of(client.get("/signin").text)
        answer = client.post("/signin", data={"token": "not-the-token", "csrf": csrf})
        assert answer.status_code == 401
        assert "not valid" in answer.text
        assert "lockstep_session" not in answer.headers.get("set-cookie", "")
        assert client.get("/").status_code == 303


def test_state_changes_need_the_csrf_token_and_a_same_site_request(
    estate: DashboardEstate,
) -> None:
    with estate.signed_in() as client:
        csrf = client.cookies["lockstep_csrf"]
        path = f"/leases/{estate.lease_id}/revoke"
        assert client.post(path, data={}).status_code == 403
        assert client.post(path, data={"csrf": "forged"}).status_code == 403
        cross = client.post(path, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        assert "cross-site" in cross.text
        signout = client.post(
            "/signout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "same-site"}
        )
        assert signout.status_code == 403
        assert estate.lease_id in client.get("/leases").text  # nothing happened


def test_every_page_has_a_csp_without_inline_script_and_static_files_are_cached(
    estate: DashboardEstate,
) -> None:
    with estate.signed_in() as client:
        page = client.get("/")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text  # no inline script of ours
        scripts = [line for line in page.text.splitlines() if "<script src=" in line]
        assert scripts and all('src="/static/' in s for s in scripts)
        src = scripts[0].split('src="')[1].split('"')[0]
        asset = client.get(src)
        assert asset.status_code == 200
        assert "immutable" in asset.headers["cache-control"]
        assert client.get(src.replace("/static/", "/static/0")).status_code == 404


def test_a_hostile_account_name_is_escaped_everywhere(estate: DashboardEstate) -> None:
    with estate.signed_in() as client:
        for path in ("/inventory?status=orphan", "/findings"):
            text = client.get(path).text
            assert HOSTILE not in text
            assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text


def test_a_person_sees_their_own_identities_only(estate: DashboardEstate) -> None:
    with estate.signed_in(estate.outsider_token) as client:
        inventory = client.get("/inventory").text
        assert "search_indexer" in inventory
        assert "payments_api" not in inventory and "orphan" not in inventory.split("<tbody>")[1]
        assert client.get("/identities/payments-api").status_code == 404
        assert client.get("/identities/search-indexer").status_code == 200
        assert estate.lease_id not in client.get("/leases").text
        csrf = client.cookies["lockstep_csrf"]
        refused = client.post(f"/leases/{estate.lease_id}/revoke", data={"csrf": csrf})
        assert refused.status_code == 403
        assert client.get("/reports/owasp-nhi-2025/json").status_code == 403


def test_a_revoked_personal_token_ends_its_sessions(estate: DashboardEstate) -> None:
    token = estate.cli("token", "create", "alice@example.com", "--ttl", "1h").strip()
    token_id = token.split("_")[1]
    with estate.signed_in(token) as client:
        assert client.get("/").status_code == 200
        estate.cli("token", "revoke", token_id)
        assert client.get("/").status_code == 303


def test_sign_out_ends_the_session(estate: DashboardEstate) -> None:
    with estate.signed_in() as client:
        answer = client.post("/signout", data={"csrf": client.cookies["lockstep_csrf"]})
        assert answer.status_code == 303 and answer.headers["location"] == "/signin"
        assert client.get("/").status_code == 303


def test_a_copy_of_a_signed_out_session_is_refused(estate: DashboardEstate) -> None:
    with estate.signed_in() as client, estate.client() as thief:
        thief.cookies.update(client.cookies)
        assert thief.get("/").status_code == 200
        client.post("/signout", data={"csrf": client.cookies["lockstep_csrf"]})
        assert thief.get("/").status_code == 303
        assert thief.get("/inventory").headers["location"].startswith("/signin")
        stale = thief.post("/signout", data={"csrf": thief.cookies["lockstep_csrf"]})
        assert stale.status_code == 303 and stale.headers["location"].startswith("/signin")


def test_every_report_downloads_in_every_format(estate: DashboardEstate) -> None:
    with estate.signed_in() as client:
        for fmt in ("json", "html", "oscal", "ocsf"):
            answer = client.get(f"/reports/owasp-nhi-2025/{fmt}")
            assert answer.status_code == 200, fmt
            assert "attachment" in answer.headers["content-disposition"]
            assert len(answer.content) > 100
        html = client.get("/reports/nist-csf-2.0/html?view=true")
        assert "inline" in html.headers["content-disposition"]
        assert "'unsafe-inline'" not in html.headers["content-security-policy"]
        assert "style-src 'sha256-" in html.headers["content-security-policy"]


def test_no_secret_is_in_any_page_or_the_log(estate: DashboardEstate) -> None:
    with estate.signed_in() as client:
        pages = [client.get(p).text for p in ("/", "/inventory", "/findings", "/leases",
                                               "/reports", "/identities/payments-api")]  # fmt: skip
    assert estate.service is not None
    seen = "\n".join(pages) + estate.service.text()
    for secret in estate.secrets:
        assert secret not in seen


def test_without_an_oidc_client_there_is_no_oidc_sign_in(estate: DashboardEstate) -> None:
    with estate.client() as client:
        assert "Sign in with" not in client.get("/signin").text
        assert client.get("/signin/oidc").status_code == 404
        assert client.get("/signin/oidc/callback?code=x&state=y").status_code == 404
