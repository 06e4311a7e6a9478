"""The README's "Requests and approvals" example runs as written: its policy, against a real
PostgreSQL and a real `lockstep run`, its commands in order, and the output it shows."""

from __future__ import annotations

import json
import re
import shlex
from functools import partial
from pathlib import Path

from lockstep.demo import localpg
from support.cli_project import Lockstep, create_orders_db, project_env
from support.service_harness import Service, eventually

ROOT = Path(__file__).resolve().parents[2]
SECTION = ROOT.joinpath("README.md").read_text().split("## Requests and approvals", 1)[1]
SECTION = SECTION.split("\n## ", 1)[0]
EXAMPLE_ID = "R-5d1f0e6a2b9c"


def block(kind: str) -> str:
    found = re.search(rf"```{kind}\n(.*?)```", SECTION, re.S)
    assert found is not None, f"no {kind} block in the section"
    return found.group(1)


def _active(runner: Lockstep) -> bool:
    return '"active"' in runner("grants", "--json").stdout


def test_the_two_stage_example_runs_as_the_readme_shows(
    pg: localpg.LocalPostgres, tmp_path: Path
) -> None:
    create_orders_db(
        pg,
        on_server=["CREATE ROLE refunds NOLOGIN"],
        in_orders=[
            "CREATE TABLE public.orders (id int PRIMARY KEY)",
            "CREATE TABLE public.payments (id int PRIMARY KEY)",
        ],
    )
    (tmp_path / "lockstep.yaml").write_text(block("yaml"))
    env = project_env(ORDERS_DB_DSN=pg.dsn("orders"))
    expected = block("text").splitlines()
    service: Service | None = None
    request_id = EXAMPLE_ID
    outputs: list[str] = []
    try:
        for line in block("sh").splitlines():
            if line == "lockstep run &":
                service = Service(tmp_path, env).wait_ready()  # on a free port
                env["LOCKSTEP_URL"] = f"http://127.0.0.1:{service.port}"
                continue
            if line.startswith("export "):
                name, command = re.fullmatch(r"export (\w+)=\$\((.*)\)", line).groups()  # type: ignore[union-attr]
                made = Lockstep(tmp_path, env)(*shlex.split(command)[1:])
                assert made.returncode == 0, made.stderr
                env[name] = made.stdout.strip()
                continue
            assignment, command = line.split(" ", 1)
            name = assignment.removeprefix("LOCKSTEP_TOKEN=$")
            words = shlex.split(command.replace(EXAMPLE_ID, request_id))
            runner = Lockstep(tmp_path, {**env, "LOCKSTEP_TOKEN": env[name]})
            if words[1] == "grants":
                eventually(partial(_active, runner), "the grant to become active")
            done = runner(*words[1:])
            output = (done.stdout + done.stderr).strip()
            if words[1] == "request" and done.returncode == 0:
                request_id = re.search(r"R-[0-9a-f]{12}", output).group(0)  # type: ignore[union-attr]
            outputs += output.replace(request_id, EXAMPLE_ID).splitlines()
    finally:
        if service is not None:
            service.stop()
    shown = [re.sub(r"until \S+", "until T", line) for line in expected]
    got = [re.sub(r"until \S+", "until T", line) for line in outputs]
    assert got == shown
    assert json.loads(Lockstep(tmp_path, env)("plan", "--json").stdout)["actions"] == []
