"""Reviews through `lockstep run`, as people use them: a review opens by itself in the
service, people are told through the webhook (retried when it fails), `lockstep reviews
--json` lists it, and `lockstep review ID revoke` takes the access away at once on the real
PostgreSQL, proven there before the review reads `revoked`. Refusals exit 1 with the reason
and change nothing."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from support.cli_project import Lockstep, create_orders_db, project_env, refused
from support.service_harness import Service, eventually, journal
from support.webhook import Receiver, receiver

POLICY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${{ORDERS_DB_DSN}}
owners:
  payments-team:
    contacts: [alice@example.com]
  support-team:
    contacts: [carol@example.com]
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    access:
      - target: orders-db
        account: payments_api
        entitlements: ["SELECT on table public.orders"]
    credentials:
      sink: file:{sink}
rules:
  review_every: {{default: 2s}}
governance:
  admins: [root@example.com]
  notify: {{webhook: "{webhook}"}}
"""


class World:
    def __init__(self, workdir: Path, pg: localpg.LocalPostgres, hook: Receiver) -> None:
        self.workdir = workdir
        self.pg = pg
        self.hook = hook
        self.sink = workdir / "secrets" / "payments-api.json"
        (workdir / "lockstep.yaml").write_text(
            textwrap.dedent(POLICY.format(sink=self.sink, webhook=hook.url))
        )
        self.env = project_env(ORDERS_DB_DSN=pg.dsn("orders"))
        self.service: Service | None = None
        self.tokens: dict[str, str] = {}

    def token(self, person: str) -> str:
        if person not in self.tokens:
            made = Lockstep(self.workdir, self.env)("token", "create", person, "--ttl", "1h")
            self.tokens[person] = made.stdout.strip()
        return self.tokens[person]

    def cli(self, person: str, *args: str) -> Any:
        assert self.service is not None
        env = {
            **self.env,
            "LOCKSTEP_URL": f"http://127.0.0.1:{self.service.port}",
            "LOCKSTEP_TOKEN": self.token(person),
        }
        return Lockstep(self.workdir, env)(*args)

    def reviews(self) -> list[dict[str, Any]]:
        done = self.cli("alice@example.com", "reviews", "--json")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)["reviews"]
        return rows

    def password(self) -> str:
        value: str = json.loads(self.sink.read_text())["password"]
        return value


@pytest.fixture
def world(pg: localpg.LocalPostgres, tmp_path: Path) -> Iterator[World]:
    create_orders_db(pg)
    with receiver(fail_first=1) as hook:
        world = World(tmp_path, pg, hook)
        for person in ("alice@example.com", "carol@example.com"):
            world.token(person)
        world.service = Service(tmp_path, world.env, "--interval", "1s").wait_ready()
        yield world
        if world.service.proc.poll() is None:
            world.service.stop()


def test_a_review_opens_notifies_and_a_revoke_is_proven_in_postgres(world: World) -> None:
    [review] = eventually(world.reviews, "a periodic review to open in the service")
    assert set(review) >= {"id", "identity", "target", "account", "entitlement", "trigger",
                           "reviewers", "due", "status", "decision"}  # fmt: skip
    assert (review["trigger"], review["status"], review["decision"]) == ("periodic", "open", None)
    assert review["reviewers"] == ["alice@example.com"]

    # people were told, without polling: the first POST failed and was retried
    [told] = eventually(lambda: world.hook.bodies("review_opened"), "the webhook to be told")
    assert told["review"]["id"] == review["id"]
    assert world.hook.answered[0] == 500 and len(world.hook.received) >= 2
    password = world.password()
    for got in world.hook.received:
        assert "Authorization" not in got.headers
        assert password not in got.raw and "lsp_" not in got.raw

    # who may not decide is refused, and nothing changes
    no = world.cli("carol@example.com", "review", review["id"], "revoke", "--reason", "mine")
    assert no.returncode == 1 and "may not review" in no.stderr
    assert world.reviews()[0]["status"] == "open"

    assert not refused(world.pg, "payments_api", password)
    done = world.cli("alice@example.com", "review", review["id"], "revoke", "--reason", "unused")
    assert done.returncode == 0, done.stderr
    revoked = eventually(
        lambda: [r for r in world.reviews() if r["status"] == "revoked"], "the removal proven"
    )
    assert revoked[0]["decision"] == "revoke" and revoked[0]["decided_by"] == "alice@example.com"
    assert refused(world.pg, "payments_api", password)
    entries = journal(world.workdir / ".lockstep" / "state.db")
    decided = [e for e in entries if e["kind"] == "review_decided"]
    assert decided[0]["via"].startswith("token ") and decided[0]["reason"] == "unused"
    assert any(e["kind"] == "review_verified" for e in entries)
    results = [e for e in entries if e["kind"] == "result" and e.get("review") == review["id"]]
    assert results and results[-1]["status"] == "verified"

    again = world.cli("alice@example.com", "review", review["id"], "keep", "--reason", "oops")
    assert again.returncode == 1 and "decided already" in again.stderr


def test_unknown_reviews_and_statuses_are_clear_errors(world: World) -> None:
    missing = world.cli("alice@example.com", "review", "RV-000000000000", "keep", "--reason", "x")
    assert missing.returncode == 1 and "no review 'RV-000000000000'" in missing.stderr
    bad = world.cli("alice@example.com", "reviews", "--status", "pending")
    assert bad.returncode == 1 and "unknown status 'pending'" in bad.stderr


def test_a_request_waiting_for_approval_is_told_to_people(world: World) -> None:
    asked = world.cli(
        "alice@example.com", "request", "payments-api", "--target", "orders-db",
        "--entitlement", "INSERT on table public.orders", "--for", "1h", "--reason", "incident 7",
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    [told] = eventually(lambda: world.hook.bodies("approval_pending"), "people to be told")
    assert told["request"]["status"] == "pending"
    assert told["request"]["requester"] == "alice@example.com"
    assert told["request"]["entitlements"] == ["INSERT on table public.orders"]
