"""The service's API, tried as an attacker would: bodies are capped, a client that keeps
failing authentication is slowed down (never /healthz), the Bearer scheme is required, the
OpenAPI document is behind the API token, and `lockstep run` will not listen off loopback
without authentication."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lockstep.demo import localpg
from support.cli_project import create_orders_db, project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var
from support.service_harness import Service, eventually

TOKEN = "operator-token-for-tests-0123456789"


def write_policy(workdir: Path) -> None:
    Policy(
        targets={"orders-db": Target.postgres(Var("DSN"))},
        owners={"team": Owner(["alice@example.com"], status="active")},
        identities={
            "app": Identity(
                owner="team", purpose="tests", access=[Access("orders-db", "app_user", [])]
            )
        },
    ).write(workdir)


@pytest.fixture
def env(pg: localpg.LocalPostgres, tmp_path: Path) -> dict[str, str]:
    create_orders_db(pg)
    write_policy(tmp_path)
    return project_env(DSN=pg.dsn("orders"), LOCKSTEP_API_TOKEN=TOKEN)


@pytest.fixture
def service(env: dict[str, str], tmp_path: Path) -> Iterator[Service]:
    running = Service(tmp_path, env).wait_ready()
    yield running
    running.stop()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_body_over_64_kib_is_refused_with_413_declared_or_streamed(service: Service) -> None:
    big = b"{" + b" " * (64 * 1024) + b"}"
    declared = service.http.post("/v1/credentials", content=big, headers=bearer())
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(70):
            yield b" " * 1024

    streamed = service.http.post("/v1/reconcile", content=chunks(), headers=bearer())
    assert streamed.status_code == 413
    small = service.http.post("/v1/credentials", json={"identity": "app"}, headers=bearer())
    assert small.status_code == 422  # under the cap it reaches the route


def test_a_client_failing_authentication_is_slowed_down_but_healthz_still_answers(
    service: Service,
) -> None:
    codes = [
        service.http.get("/v1/findings", headers=bearer("wrong")).status_code for _ in range(25)
    ]
    assert codes[:20] == [401] * 20
    assert set(codes[20:]) == {429}
    refused = service.http.get("/v1/findings", headers=bearer())
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert service.get("/healthz").status_code == 200
    assert service.get("/metrics").status_code == 200


def test_the_bearer_scheme_is_required(service: Service) -> None:
    assert service.http.get("/v1/findings", headers={"Authorization": TOKEN}).status_code == 401
    basic = service.http.get("/v1/findings", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert service.http.get("/v1/findings", headers=bearer()).status_code == 200


def test_the_openapi_document_is_behind_the_api_token(service: Service) -> None:
    assert service.get("/v1/openapi.json").status_code == 401
    document = service.http.get("/v1/openapi.json", headers=bearer())
    assert document.status_code == 200 and "/v1/credentials" in document.json()["paths"]


def _run(env: dict[str, str], workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockstep", "run", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_refuses_to_listen_off_loopback_without_authentication(
    env: dict[str, str], tmp_path: Path
) -> None:
    del env["LOCKSTEP_API_TOKEN"]
    port = localpg.free_port()
    refused = _run(env, tmp_path, "--listen", f"0.0.0.0:{port}")
    assert refused.returncode == 1
    assert "refusing to listen" in refused.stderr and "--insecure-no-auth" in refused.stderr
    with socket.socket() as probe:  # nothing was bound
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("how", ["token", "insecure-no-auth"])
def test_run_listens_off_loopback_with_a_token_or_when_told_it_is_insecure(
    env: dict[str, str], tmp_path: Path, how: str
) -> None:
    args = []
    if how == "insecure-no-auth":
        del env["LOCKSTEP_API_TOKEN"]
        args = ["--insecure-no-auth"]
    port = localpg.free_port()
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lockstep", "run", "--listen", f"0.0.0.0:{port}", *args],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        eventually(lambda: _answers(port, proc), "the service on 0.0.0.0")
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
        log.close()


def _answers(port: int, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "the service exited"
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False
