"""The request commands against a real `lockstep run`: every bad input is one line on
stderr and exit 1, with nothing filed, approved or journaled as done."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_project import Lockstep, project_env
from support.governance import ENV, POLICY
from support.service_harness import Service, journal

PAY = "SELECT on table public.payments"


class Running:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = project_env(**ENV)
        self.cli = Lockstep(workdir, self.env)
        self.tokens = {
            p: self.cli("token", "create", p, "--ttl", "1h").stdout.strip()
            for p in ("alice@example.com", "amir@example.com", "sam@example.com")
        }
        self.service = Service(workdir, self.env).wait_ready()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    def as_token(self, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "LOCKSTEP_URL": self.url()}
        if token is not None:
            env["LOCKSTEP_TOKEN"] = token
        return Lockstep(self.workdir, env)(*args)

    def as_person(self, person: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.as_token(self.tokens[person], *args)

    def file(
        self, *extra: str, person: str = "alice@example.com"
    ) -> subprocess.CompletedProcess[str]:
        args = ["request", "payments-api", "--target", "orders-db", "--entitlement", PAY]
        return self.as_person(person, *args, "--for", "1h", "--reason", "r", *extra)

    def filed(self) -> list[str]:
        return [
            e["request"] for e in journal(self.workdir / ".lockstep" / "state.db", "request_filed")
        ]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("requests-cli")
    (workdir / "lockstep.yaml").write_text(POLICY)
    started = Running(workdir)
    yield started
    started.service.stop()


def one_line_refusal(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_a_request_is_filed_shown_and_approved_through_the_cli(running: Running) -> None:
    filed = running.file("--json")
    assert filed.returncode == 0, filed.stderr
    request = json.loads(filed.stdout)
    listed = running.as_person("sam@example.com", "requests", "--status", "pending")
    assert request["id"] in listed.stdout and "stage 1 of 2: owner" in listed.stdout
    first = running.as_person("amir@example.com", "approve", request["id"], "--comment", "ok")
    assert first.returncode == 0 and "waits for stage 2" in first.stdout
    second = running.as_person("sam@example.com", "approve", request["id"])
    assert second.returncode == 0 and "is approved" in second.stdout
    again = running.as_person("sam@example.com", "approve", request["id"])
    one_line_refusal(again, f"request {request['id']} is")


def ask(identity: str, target: str, entitlement: str) -> list[str]:
    return ["request", identity, "--target", target, "--entitlement", entitlement]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (ask("nobody", "orders-db", PAY), "unknown identity 'nobody'"),
        (ask("payments-api", "moon", PAY), "unknown target 'moon'"),
        (ask("payments-api", "reports-db", PAY), "has no access on target 'reports-db'"),
        (ask("payments-api", "orders-db", "FLY on moon x"), "entitlement 'FLY on moon x'"),
        (ask("payments-api", "orders-db", "SELECT on table a.b; DROP ROLE c"), "unexpected"),
    ],
)
def test_bad_requests_are_one_line_and_file_nothing(
    running: Running, args: list[str], message: str
) -> None:
    before = running.filed()
    proc = running.as_person("alice@example.com", *args, "--for", "1h", "--reason", "r")
    one_line_refusal(proc, message)
    assert running.filed() == before


@pytest.mark.parametrize(
    ("duration", "message"),
    [("0h", "--for: '0h' is not a duration"), ("1 week", "is not a duration"),
     ("8d", "8d is longer than governance.max_duration allows in prod (7d)")],
)  # fmt: skip
def test_durations_malformed_zero_or_too_long_are_refused(
    running: Running, duration: str, message: str
) -> None:
    args = ["request", "payments-api", "--target", "orders-db", "--entitlement", PAY]
    before = running.filed()
    one_line_refusal(
        running.as_person("alice@example.com", *args, "--for", duration, "--reason", "r"), message
    )
    assert running.filed() == before


def test_a_person_not_allowed_is_refused(running: Running) -> None:
    one_line_refusal(running.file(person="sam@example.com"), "sam@example.com may not ask")


def test_the_requester_neither_approves_nor_denies(running: Running) -> None:
    request = json.loads(running.file("--json").stdout)
    one_line_refusal(
        running.as_person("alice@example.com", "approve", request["id"]), "you filed this request"
    )
    one_line_refusal(
        running.as_person("alice@example.com", "deny", request["id"], "--reason", "no"),
        "you filed this request",
    )
    # An approver of a stage still to come may deny it.
    denied = running.as_person("sam@example.com", "deny", request["id"], "--reason", "no")
    assert denied.returncode == 0
    one_line_refusal(
        running.as_person("amir@example.com", "approve", request["id"]), "is denied already"
    )


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("lsp_000000000000_" + "A" * 43, "unknown personal token"),
        ("lsp_garbage", "malformed personal token"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "governance.people names no OIDC issuer"),
        (None, "set LOCKSTEP_TOKEN"),
    ],
)
def test_forged_and_missing_tokens_are_refused(
    running: Running, token: str | None, message: str
) -> None:
    one_line_refusal(running.as_token(token, "requests"), message)


def test_a_revoked_token_replayed_is_refused(running: Running) -> None:
    made = running.cli("token", "create", "amir@example.com", "--ttl", "1h")
    token = made.stdout.strip()
    assert running.as_token(token, "requests").returncode == 0
    token_id = token.split("_")[1]
    assert running.cli("token", "revoke", token_id).returncode == 0
    one_line_refusal(running.as_token(token, "requests"), f"personal token {token_id} was revoked")


def test_an_unreachable_service_is_one_line(running: Running) -> None:
    proc = running.as_person("alice@example.com", "requests", "--url", "http://127.0.0.1:9")
    one_line_refusal(proc, "cannot reach the service at http://127.0.0.1:9")


def test_no_token_reaches_the_service_log_or_the_journal(running: Running) -> None:
    assert running.file().returncode == 0
    log = running.service.text()
    with sqlite3.connect(running.workdir / ".lockstep" / "state.db") as conn:
        dump = "\n".join(conn.iterdump())
    for token in running.tokens.values():
        secret = token.split("_", 2)[2]
        assert secret not in log and secret not in dump
