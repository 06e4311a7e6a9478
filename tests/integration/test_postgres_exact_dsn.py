"""Against a real PostgreSQL: lockstep connects with exactly the DSN's parameters. PG*
variables, a password file and a service file that would make a connection work (or point
it elsewhere) are never used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lockstep.demo import localpg
from support.cli_project import Lockstep, create_orders_db, project_env
from support.policies import Owner, Policy, Target, Var


@pytest.fixture
def db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    return create_orders_db(pg, on_server=["CREATE ROLE stray LOGIN"])


def project(tmp_path: Path, dsn: str, **env: str) -> Lockstep:
    Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"))},
        owners={"team": Owner(["a@example.com"])},
    ).write(tmp_path)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Lockstep(tmp_path, {**project_env(ORDERS_DB_DSN=dsn, HOME=str(home)), **env})


def unreachable(cli: Lockstep) -> str:
    plan = cli.json("plan")
    (finding,) = [f for f in plan["findings"] if f["type"] == "target_unreachable"]
    return str(finding["detail"])


def without_password(pg: localpg.LocalPostgres) -> str:
    return f"postgresql://{pg.superuser}@127.0.0.1:{pg.port}/orders"


def test_variables_pointing_elsewhere_do_not_move_a_complete_dsn(db, tmp_path: Path) -> None:
    cli = project(
        tmp_path,
        db.dsn("orders"),
        PGHOST="127.0.0.2",
        PGPORT="1",
        PGUSER="intruder",
        PGDATABASE="postgres",
        PGSSLMODE="require",  # the test server has no TLS: honoured, it would fail
        PGOPTIONS="-c statement_timeout=1",
    )
    plan = cli.json("plan")
    assert plan["unreachable"] == []
    assert [f["account"] for f in plan["findings"] if f["type"] == "orphan_account"] == ["stray"]


def test_pgpassword_never_supplies_a_password_the_dsn_lacks(db, tmp_path: Path) -> None:
    cli = project(tmp_path, without_password(db), PGPASSWORD=db.password.reveal())
    assert "no password supplied" in unreachable(cli)


def test_a_password_file_is_never_read(db, tmp_path: Path) -> None:
    cli = project(tmp_path, without_password(db))
    pgpass = tmp_path / "home" / ".pgpass"
    pgpass.write_text(f"*:*:*:{db.superuser}:{db.password.reveal()}\n")
    os.chmod(pgpass, 0o600)
    assert "no password supplied" in unreachable(cli)
    cli.env["PGPASSFILE"] = str(pgpass)
    assert "no password supplied" in unreachable(cli)


def test_a_service_from_the_environment_is_refused_by_name(db, tmp_path: Path) -> None:
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[orders]\npassword={db.password.reveal()}\n")
    cli = project(tmp_path, without_password(db), PGSERVICE="orders", PGSERVICEFILE=str(services))
    detail = unreachable(cli)
    assert "PGSERVICE is set in lockstep's environment" in detail and "unset PGSERVICE" in detail
    assert db.password.reveal() not in "\n".join(cli.outputs)
