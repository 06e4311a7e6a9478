"""Failed sign-ins to the dashboard are limited per client: after 20 within a minute the
sign-in (even with the right token) and every other page from that address are answered 429
with a page saying when to try again, before any token is checked; /healthz still answers.
A service of its own: the limit would lock the other tests' clients out too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lockstep.demo import localpg
from support.cli_project import create_orders_db, project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var
from support.service_harness import Service

TOKEN = "operator-token-for-the-sign-in-limit-0123456789"
ALLOWED = 20  # service.http_limits.Limits: failures per client per minute


@pytest.fixture
def service(pg: localpg.LocalPostgres, tmp_path: Path) -> Iterator[Service]:
    create_orders_db(pg)
    Policy(
        targets={"orders-db": Target.postgres(Var("DSN"))},
        owners={"team": Owner(["alice@example.com"])},
        identities={
            "app": Identity(owner="team", purpose="tests", access=[Access("orders-db", "app", [])])
        },
    ).write(tmp_path)
    env = project_env(DSN=pg.dsn("orders"), LOCKSTEP_API_TOKEN=TOKEN)
    running = Service(tmp_path, env).wait_ready()
    yield running
    running.stop()


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    page = client.get("/signin")
    if page.status_code != 200:
        return page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    return client.post("/signin", data={"token": token, "csrf": csrf})


def test_failed_sign_ins_lock_the_client_out_for_a_while(service: Service) -> None:
    url = f"http://127.0.0.1:{service.port}"
    with httpx.Client(base_url=url, timeout=30) as client:
        codes = [sign_in(client, f"wrong-token-{i}").status_code for i in range(ALLOWED)]
        assert codes == [401] * ALLOWED
        locked = sign_in(client, TOKEN)
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
        assert locked.headers["content-type"].startswith("text/html")
        assert "Too many failed sign-ins" in locked.text and "Try again in" in locked.text
        assert "unsafe-inline" not in locked.headers["content-security-policy"]
        assert client.post("/signin", data={"token": TOKEN}).status_code == 429
        assert client.get("/inventory").status_code == 429
        api = client.get("/v1/findings", headers={"Authorization": f"Bearer {TOKEN}"})
        assert api.status_code == 429 and "error" in api.json()  # the API keeps its JSON
        assert client.get("/healthz").status_code == 200
    refused = [e for e in service.logs() if e.get("event") == "dashboard sign-in refused"]
    assert len(refused) == ALLOWED  # the refused ones were never checked, nor logged again
    assert TOKEN not in service.text()
