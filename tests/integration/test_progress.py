"""Long operations show progress on a terminal and nothing on a pipe, against a real
PostgreSQL: apply, verify, and ending leases (revoke by prefix, reap) draw a bar with counts
on stderr when it is a terminal; piped, stderr stays empty."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import threading
from pathlib import Path

import pytest

from lockstep.demo import localpg
from support.cli_project import Lockstep, create_orders_db, project_env
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var

N = 12


@pytest.fixture
def cli(pg: localpg.LocalPostgres, tmp_path: Path) -> Lockstep:
    create_orders_db(pg)
    Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"))},
        owners={"team": Owner(["a@example.com"])},
        identities={
            f"svc{i}": Identity(
                owner="team",
                purpose="t",
                access=[Access("orders-db", f"svc{i}", ["SELECT on table public.orders"])],
                credentials=Credentials(lease_ttl="1h"),
            )
            for i in range(N)
        },
    ).write(tmp_path)
    return Lockstep(tmp_path, project_env(ORDERS_DB_DSN=pg.dsn("orders")))


def on_a_terminal(cli: Lockstep, *args: str) -> tuple[int, str]:
    """Runs the CLI with stderr on a pseudo-terminal; its exit code and what it drew there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        cli.argv(*args),
        cwd=cli.workdir,
        env={**cli.env, "COLUMNS": "160", "TERM": "xterm"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    drawn = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    code = proc.wait(timeout=cli.timeout_s)
    reader.join(timeout=10)
    os.close(master)
    return code, drawn.decode(errors="replace")


def test_apply_and_verify_draw_a_bar_on_a_terminal_only(cli: Lockstep) -> None:
    code, drawn = on_a_terminal(cli, "apply", "--yes")
    assert code == 0, drawn
    assert "applying" in drawn and f"/{N * 2}" in drawn  # a create and a grant each
    assert "SELECT on table public.orders" in drawn  # each step names its entitlement
    # verify probes only credentials someone may hold; --probe-all tries each account's.
    code, drawn = on_a_terminal(cli, "verify", "--probe-all")
    assert code == 0 and "probing" in drawn

    piped = cli("verify")
    assert piped.returncode == 0 and piped.stderr == ""
    assert "probing" not in piped.stdout


def test_ending_leases_draws_a_bar_on_a_terminal_only(cli: Lockstep) -> None:
    assert cli("apply", "--yes").returncode == 0
    ids = []
    for i in range(4):
        issued = cli("issue", f"svc{i}", "--target", "orders-db", "--json")
        assert issued.returncode == 0, issued.stderr
        ids.append(json.loads(issued.stdout)["lease_id"])
    code, drawn = on_a_terminal(cli, "revoke", "--prefix", ids[0][:6])
    assert code == 0 and "revoking" in drawn and "/1" in drawn, drawn
    code, drawn = on_a_terminal(cli, "revoke", "--target", "orders-db")
    assert code == 0 and "revoking" in drawn and "/3" in drawn, drawn
    for i in range(2):
        assert cli("issue", f"svc{i}", "--target", "orders-db", "--json").returncode == 0
    piped = cli("revoke", "--identity", "svc0")
    assert piped.returncode == 0 and piped.stderr == ""
    code, drawn = on_a_terminal(cli, "reap")
    assert code == 0, drawn
