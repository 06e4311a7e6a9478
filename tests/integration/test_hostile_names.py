"""Names read from a target are inert in every output: an account or a group named with
Rich markup, ANSI and OSC escapes, a line break that would forge a line or a bidi override
crashes nothing and reaches no terminal as a control sequence; control characters are shown
escaped. Each target type gets such names out of band, then every command runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest

from lockstep.demo import localpg
from support import cli_project
from support.cli_project import admin, create_orders_db, project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var

pytest_plugins = ("services.redis_server", "services.slapd")

MARKUP = ["x[/]", "[bold red]boom", "[link=https://evil.example]click"]
ESCAPES = ["esc\x1b[31mred\x1b]8;;https://evil.example\x07", "bidi\u202eevil", "bell\x07\x08"]
FORGING = ["line\nFORGED: In sync"]
# Whatever reaches a terminal: no escape, no control character but newline, no bidi override.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")

COMMANDS = [
    ("validate",),
    ("permissions",),
    ("plan",),
    ("plan", "--json"),
    ("apply", "--yes"),
    ("apply", "--yes", "--json"),
    ("verify",),
    ("verify", "--json"),
    ("findings",),
    ("findings", "--json"),
    ("inventory",),
    ("inventory", "--json"),
    ("inventory", "--csv"),
    ("explain", "app"),
    ("report", "--framework", "owasp-nhi-2025"),
    ("report", "--framework", "nist-csf-2.0", "--format", "html", "-o", "report.html"),
    ("leases",),
    ("audit", "verify"),
    ("audit", "export", "-o", "export.jsonl"),
]


def _policy(target: Target) -> Policy:
    return Policy(
        targets={"t": target},
        owners={"team": Owner(["alice@example.com"], status="active")},
        identities={
            "app": Identity(owner="team", purpose="tests", access=[Access("t", "app_user", [])])
        },
        rules={"orphan_accounts": "suspend"},
    )


def run_every_command(cli: cli_project.Lockstep, names: list[str]) -> None:
    for command in COMMANDS:
        proc = cli(*command)
        assert "internal error" not in proc.stderr, (command, proc.stderr)
        assert proc.returncode in (0, 1, 2), (command, proc.returncode, proc.stderr)
        for stream in (proc.stdout, proc.stderr):
            assert not RAW.search(stream), (command, RAW.search(stream), stream[:2000])
            forged = [line for line in stream.splitlines() if line.lstrip().startswith("FORGED")]
            assert forged == [], (command, forged)
    html = (cli.workdir / "report.html").read_text()
    assert not RAW.search(html)
    shown = "\n".join(cli.outputs)
    assert "\\x1b" in shown or "\\u202e" in shown  # escaped, not dropped
    for name in (n for n in names if n in MARKUP):
        assert name in shown  # markup shown as the text it is


@pytest.fixture
def pg_cli(pg: localpg.LocalPostgres, tmp_path: Path) -> cli_project.Lockstep:
    create_orders_db(pg)
    _policy(Target.postgres(Var("DSN"))).write(tmp_path)
    return cli_project.Lockstep(tmp_path, project_env(DSN=pg.dsn("orders")))


def test_hostile_postgres_role_names_are_inert_in_every_output(
    pg_cli: cli_project.Lockstep, pg: localpg.LocalPostgres
) -> None:
    from psycopg import sql

    names = MARKUP + ESCAPES + FORGING
    with admin(pg) as conn:
        group = "grp[/]\x1b[2J"
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
        for name in names:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name))
            )
    run_every_command(pg_cli, names)


@pytest.fixture
def redis_cli(redis_server, tmp_path: Path) -> Iterator[cli_project.Lockstep]:
    from services.redis_server import reset

    reset(redis_server)
    _policy(Target.redis(Var("URL"))).write(tmp_path)
    yield cli_project.Lockstep(tmp_path, project_env(URL=redis_server.url()))
    reset(redis_server)


def test_hostile_redis_user_names_and_rules_are_inert_in_every_output(
    redis_cli: cli_project.Lockstep, redis_server
) -> None:
    names = ["x[/]", "[bold]boom", "esc\x1b[31mred\x1b]8;;evil\x07"]
    with redis_server.admin() as client:
        for name in names:
            client.execute_command("ACL", "SETUSER", name, "on", ">pw-hostile-1", "~k[/]\x1b*")
    run_every_command(redis_cli, names)


@pytest.fixture
def ldap_cli(slapd_server, tmp_path: Path) -> Iterator[cli_project.Lockstep]:
    from services.slapd import reset_directory

    reset_directory(slapd_server)
    _policy(
        Target.ldap(
            url=slapd_server.url,
            bind_dn=slapd_server.admin_dn,
            bind_password=Var("BIND_PW"),
            accounts_dn=slapd_server.people_dn,
            groups_dn=slapd_server.groups_dn,
        )
    ).write(tmp_path)
    env = project_env(BIND_PW=slapd_server.admin_password.reveal())
    yield cli_project.Lockstep(tmp_path, env)
    reset_directory(slapd_server)


def test_hostile_ldap_uids_and_groups_are_inert_in_every_output(
    ldap_cli: cli_project.Lockstep, slapd_server
) -> None:
    names = MARKUP + ESCAPES + FORGING
    conn = slapd_server.connect()
    try:
        escape = ldap3.utils.dn.escape_rdn
        dns = []
        for name in names:
            dn = f"uid={escape(name)},{slapd_server.people_dn}"
            attrs = {"cn": name, "sn": "x", "userPassword": "pw-hostile-1"}
            assert conn.add(dn, ["inetOrgPerson"], {"uid": name, **attrs}), conn.result
            dns.append(dn)
        group = f"cn={escape('grp[/]' + chr(27) + '[2J')},{slapd_server.groups_dn}"
        assert conn.add(group, ["groupOfNames"], {"member": dns}), conn.result
    finally:
        conn.unbind()
    run_every_command(ldap_cli, names)
