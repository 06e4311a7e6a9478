"""Delivery is verified and redelivered: a sink that could not be written, was removed or
altered is an `undelivered_credential` (never "in sync"), and the next pass delivers the
credential the target accepts; temporary files a killed delivery left are removed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from support import cli_project
from support.cli_project import create_orders_db, login, project_env
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var


class Lockstep(cli_project.Lockstep):
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir, env)
        self.sink = workdir / "secrets" / "app.json"
        Policy(
            targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"))},
            owners={"team": Owner(["alice@example.com"], status="active")},
            identities={
                "app": Identity(
                    owner="team",
                    purpose="tests delivery",
                    access=[Access("orders-db", "app_user", ["CONNECT on database orders"])],
                    credentials=Credentials(sink=f"file:{self.sink}"),
                )
            },
        ).write(workdir)

    def journal_kinds(self) -> list[str]:
        import sqlite3

        with sqlite3.connect(self.workdir / ".lockstep" / "state.db") as conn:
            return [k for (k,) in conn.execute("SELECT kind FROM journal ORDER BY seq")]


@pytest.fixture
def db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    return create_orders_db(pg)


@pytest.fixture
def lockstep(db: localpg.LocalPostgres, tmp_path: Path) -> Lockstep:
    return Lockstep(tmp_path, project_env(ORDERS_DB_DSN=db.dsn("orders")))


def undelivered(cli: Lockstep) -> list[dict[str, Any]]:
    return [f for f in cli.json("plan")["findings"] if f["type"] == "undelivered_credential"]


def assert_delivered_and_in_sync(cli: Lockstep, db: localpg.LocalPostgres) -> None:
    doc = json.loads(cli.sink.read_text())
    login(db, doc["username"], doc["password"]).close()
    verified = cli("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    checks = json.loads(verified.stdout)["checks"]
    assert any(c["expected"] == f"credential delivered to file:{cli.sink}" for c in checks)
    assert undelivered(cli) == []


def test_a_sink_unwritable_then_writable_is_delivered_by_the_next_pass(
    lockstep: Lockstep, db: localpg.LocalPostgres
) -> None:
    lockstep.sink.parent.write_text("not a directory")  # the sink's directory cannot be made
    failed = lockstep("apply", "--yes")
    assert failed.returncode == 1 and "credential not delivered" in failed.stdout + failed.stderr
    verified = lockstep("verify", "--json")
    assert verified.returncode == 2
    assert "undelivered_credential" in verified.stdout
    [finding] = undelivered(lockstep)
    assert finding["account"] == "app_user" and finding["severity"] == "high"
    assert lockstep("apply", "--yes").returncode == 1  # still unwritable: said, not hidden

    lockstep.sink.parent.unlink()
    again = lockstep("apply", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "redelivery" in lockstep.journal_kinds()
    assert_delivered_and_in_sync(lockstep, db)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.unlink(),
        lambda p: p.write_text("{}"),
        lambda p: p.write_text("not json"),
        lambda p: p.write_text(
            json.dumps({**json.loads(p.read_text()), "password": "someone-elses-pw-1"})
        ),
    ],
    ids=["removed", "empty-object", "not-json", "another-password"],
)
def test_a_sink_removed_or_altered_is_not_in_sync_and_is_delivered_again(
    lockstep: Lockstep, db: localpg.LocalPostgres, damage
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    damage(lockstep.sink)
    assert lockstep("verify").returncode == 2
    assert undelivered(lockstep)
    assert lockstep("apply", "--yes").returncode == 0
    assert_delivered_and_in_sync(lockstep, db)


def test_temporary_files_a_killed_delivery_left_are_removed_by_the_next_pass(
    lockstep: Lockstep,
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    leftover = lockstep.sink.parent / f".{lockstep.sink.name}.0123456789ab.tmp"
    leftover.write_text('{"password": "half-written"}')
    unrelated = lockstep.sink.parent / ".other.json.0123456789ab.tmp"
    unrelated.write_text("not ours")
    assert lockstep("apply", "--yes").returncode == 0
    assert not leftover.exists()
    assert unrelated.exists()
