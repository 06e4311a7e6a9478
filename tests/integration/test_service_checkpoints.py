"""`lockstep run` signs the journal head as it grows and keeps the checkpoints away from the
state store (a directory, or an S3 bucket on the moto server), and an auditor verifies the
journal against them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from lockstep.demo import localpg
from lockstep.evidence import checkpoints
from support.cli_project import Lockstep, create_orders_db, project_env
from support.journal_tampering import rewrite_from as rewrite_journal
from support.service_harness import Service, eventually

pytest_plugins = ("services.moto_server",)

POLICY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
owners:
  payments-team:
    contacts: [alice@example.com]
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    access:
      - target: orders-db
        account: payments_api
        entitlements: [SELECT on table public.orders]
audit:
  checkpoints: WHERE
  checkpoint_every: 1
EXTRA"""


@pytest.fixture
def db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    return create_orders_db(pg)


def start(tmp_path: Path, db: localpg.LocalPostgres, where: str, extra: str = "", **env: str):
    (tmp_path / "lockstep.yaml").write_text(POLICY.replace("WHERE", where).replace("EXTRA", extra))
    environment = project_env(
        ORDERS_DB_DSN=db.dsn("orders"),
        LOCKSTEP_SIGNING_KEY=str(tmp_path / "keys" / "signing.key"),
        **env,
    )
    return Service(tmp_path, environment).wait_ready(), Lockstep(tmp_path, environment)


def rewrite_from(state: Path, seq: int) -> None:
    engine = create_engine(f"sqlite:///{state}")
    with engine.begin() as conn:
        rewrite_journal(conn, seq)
    engine.dispose()


def converged(tmp_path: Path) -> bool:
    state = tmp_path / ".lockstep" / "state.db"
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT payload FROM journal WHERE kind = 'result'").fetchall()
    return any(json.loads(p)["op"] == "grant" for (p,) in rows)


def test_the_service_checkpoints_to_a_directory_and_the_journal_verifies_against_it(
    tmp_path: Path, db: localpg.LocalPostgres
) -> None:
    service, cli = start(tmp_path, db, "file:evidence")
    try:
        eventually(lambda: converged(tmp_path), "the account to be created and granted")
        eventually(lambda: service.events("checkpoint written"), "a checkpoint")
        (tmp_path / "trusted.pem").write_text(cli("audit", "public-key").stdout)
        proc = cli(
            "audit", "verify", "--checkpoint", "evidence", "--public-key", "trusted.pem"
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "it holds the checkpoint of entry" in proc.stdout
    finally:
        assert service.stop() == 0
    newest = sorted((tmp_path / "evidence").glob("checkpoint-*.json"))[-1]
    signed = checkpoints.read_checkpoint(newest)
    rewrite_from(tmp_path / ".lockstep" / "state.db", 1)
    proc = cli("audit", "verify", "--checkpoint", str(newest), "--public-key", "trusted.pem")
    assert proc.returncode == 1
    assert f"rewritten before the checkpoint: entry {signed.seq}" in proc.stderr


def test_a_restarted_service_says_when_the_journal_no_longer_holds_its_checkpoint(
    tmp_path: Path, db: localpg.LocalPostgres
) -> None:
    service, _ = start(tmp_path, db, "file:evidence")
    eventually(lambda: service.events("checkpoint written"), "a checkpoint")
    assert service.stop() == 0
    rewrite_from(tmp_path / ".lockstep" / "state.db", 1)
    again = Service(tmp_path, service_env(tmp_path, db), name="again").wait_ready()
    try:
        [said] = eventually(
            lambda: again.events("the journal does not hold the last checkpoint"),
            "the contradiction to be logged",
        )
        assert "rewritten before the checkpoint" in said["problem"]
    finally:
        again.stop()


def service_env(tmp_path: Path, db: localpg.LocalPostgres) -> dict[str, str]:
    return project_env(
        ORDERS_DB_DSN=db.dsn("orders"),
        LOCKSTEP_SIGNING_KEY=str(tmp_path / "keys" / "signing.key"),
    )


def test_the_service_checkpoints_to_an_s3_bucket(
    tmp_path: Path, db: localpg.LocalPostgres, moto_server
) -> None:
    moto_server.reset()
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="evidence")
    extra = f"  endpoint_url: {moto_server.endpoint_url}\n  region: {moto_server.region}\n"
    service, cli = start(
        tmp_path,
        db,
        "s3://evidence/lockstep/prod",
        extra,
        AWS_ACCESS_KEY_ID=moto_server.access_key_id,
        AWS_SECRET_ACCESS_KEY=moto_server.secret_access_key.reveal(),
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    try:
        [written, *_] = eventually(lambda: service.events("checkpoint written"), "a checkpoint")
        assert written["where"].startswith("s3://evidence/lockstep/prod/checkpoint-")
        key = written["where"].removeprefix("s3://evidence/")
        body = s3.get_object(Bucket="evidence", Key=key)["Body"].read().decode()
        (tmp_path / "cp.json").write_text(body)
        (tmp_path / "trusted.pem").write_text(cli("audit", "public-key").stdout)
        proc = cli("audit", "verify", "--checkpoint", "cp.json", "--public-key", "trusted.pem")
        assert proc.returncode == 0, proc.stderr
    finally:
        assert service.stop() == 0


def test_a_service_told_to_checkpoint_without_a_signing_key_does_not_start(
    tmp_path: Path, db: localpg.LocalPostgres
) -> None:
    (tmp_path / "lockstep.yaml").write_text(
        POLICY.replace("WHERE", "file:evidence").replace("EXTRA", "")
    )
    proc = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=db.dsn("orders")))(
        "run", "--listen", f"127.0.0.1:{localpg.free_port()}"
    )
    assert proc.returncode == 1
    assert "no signing key" in proc.stderr
