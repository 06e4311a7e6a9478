"""A lockstep project driven end to end through its CLI against the real PostgreSQL database
``orders``: the database's setup, the CLI runner and the logins the tests probe with.

Import what a test module needs; the module keeps its own policy and ``db`` fixture, since each
starts from a different database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from lockstep.demo import localpg

ORDERS_TABLE = "CREATE TABLE public.orders (id int PRIMARY KEY)"


def create_orders_db(
    pg: localpg.LocalPostgres,
    on_server: Sequence[str] = (),
    in_orders: Sequence[str] = (ORDERS_TABLE,),
) -> localpg.LocalPostgres:
    """Create the database ``orders``, then run ``on_server`` (roles are cluster-wide) and
    ``in_orders`` (tables, schemas) as the administrator."""
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE orders")
        for statement in on_server:
            conn.execute(statement)
    if in_orders:
        with admin(pg) as conn:
            for statement in in_orders:
                conn.execute(statement)
    return pg


def project_env(**values: str) -> dict[str, str]:
    """This process's environment without any LOCKSTEP_ setting of the caller's, plus ``values``
    (the policy's ${...} references)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
    env.update(values)
    return env


class Lockstep:
    """Runs the CLI in a project directory and remembers everything it printed."""

    timeout_s = 120

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.outputs: list[str] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lockstep", *args]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
        )
        self.record(proc.stdout, proc.stderr)
        return proc

    def record(self, stdout: str, stderr: str) -> None:
        self.outputs += [stdout, stderr]
        assert "Traceback" not in stderr, stderr

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


def admin(pg: localpg.LocalPostgres) -> psycopg.Connection[Any]:
    return psycopg.connect(pg.dsn("orders"), autocommit=True)


def login(pg: localpg.LocalPostgres, user: str, password: str) -> psycopg.Connection[Any]:
    """A connection as ``user`` over TCP, where the server checks the password."""
    return psycopg.connect(
        host="127.0.0.1", port=pg.port, dbname="orders", user=user, password=password
    )


def refused(pg: localpg.LocalPostgres, user: str, password: str) -> bool:
    """The server refuses this login for its password or because the role may not log in; any
    other failure is not a refusal."""
    try:
        login(pg, user, password).close()
    except psycopg.OperationalError as exc:
        return "authentication failed" in str(exc) or "not permitted to log in" in str(exc)
    return False
