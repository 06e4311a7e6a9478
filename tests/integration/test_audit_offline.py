"""An auditor checks the journal alone: an export or a read-only copy of the store, no policy
variable set, and a signed checkpoint that catches a journal rewritten or rolled back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from lockstep.evidence import checkpoints
from lockstep.evidence.export import ExportError, verify_export, write_export
from lockstep.evidence.state import reading
from lockstep.journal import ChainReport, Journal, check_chain, raw_entries, read_head
from lockstep.store import Store
from support import journal_tampering as tampering
from support.cli_project import Lockstep, project_env

pytest_plugins = ("support.stores",)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def filled(store: Store, n: int = 6) -> Journal:
    ticks = iter(range(1_000_000))
    journal = Journal(store, clock=lambda: T0 + timedelta(seconds=next(ticks)))
    for i in range(1, n + 1):
        journal.append("result", {"n": i, "op": "revoke", "detail": f'quote " and é {i}'})
    return journal


def rewrite_from(store: Store, seq: int, payload: str) -> None:
    with store.engine.begin() as conn:
        tampering.rewrite_from(conn, seq, payload)


def roll_back_to(store: Store, seq: int) -> None:
    with store.engine.begin() as conn:
        tampering.roll_back_to(conn, seq)


def signed_head(store: Store, tmp_path: Path) -> tuple[checkpoints.Checkpoint, str]:
    key, _ = checkpoints.load_or_create_key(tmp_path / "keys" / "signing.key")
    with store.reading() as conn:
        seq, digest = read_head(conn) or (0, "")
    return checkpoints.sign(key, seq, digest, None, T0), checkpoints.public_pem(key)


def verify_store(url: str, watch: int | None = None) -> ChainReport:
    with reading(url) as conn:
        return check_chain(raw_entries(conn), read_head(conn), watch=watch)


# ------------------------------------------------------------------ checkpoints, both backends


def test_a_journal_rewritten_consistently_passes_the_chain_but_not_the_checkpoint(
    store: Store, state_url: str, tmp_path: Path
) -> None:
    filled(store)
    checkpoint, pem = signed_head(store, tmp_path)
    rewrite_from(store, 2, '{"n":2,"op":"grant"}')
    report = verify_store(state_url, watch=checkpoint.seq)
    assert report.ok  # the chain alone cannot tell
    checkpoints.check_signature(checkpoint, pem)
    problem = checkpoints.against(report, checkpoint)
    assert problem is not None and "rewritten before the checkpoint" in problem


def test_a_journal_rolled_back_before_the_checkpoint_is_caught(
    store: Store, state_url: str, tmp_path: Path
) -> None:
    filled(store)
    checkpoint, _ = signed_head(store, tmp_path)
    roll_back_to(store, 3)
    report = verify_store(state_url, watch=checkpoint.seq)
    assert report.ok
    problem = checkpoints.against(report, checkpoint)
    assert problem is not None and "rolled back: it ends at entry 3" in problem
    assert "records entry 6" in problem


def test_entries_appended_after_the_checkpoint_still_hold_it(
    store: Store, state_url: str, tmp_path: Path
) -> None:
    journal = filled(store)
    checkpoint, _ = signed_head(store, tmp_path)
    journal.append("result", {"n": 7})
    report = verify_store(state_url, watch=checkpoint.seq)
    assert report.ok and checkpoints.against(report, checkpoint) is None


def test_a_checkpoint_altered_after_signing_or_signed_by_another_key_is_refused(
    store: Store, tmp_path: Path
) -> None:
    filled(store)
    checkpoint, pem = signed_head(store, tmp_path)
    altered = checkpoints.Checkpoint(**{**checkpoint.__dict__, "seq": 3})
    with pytest.raises(checkpoints.CheckpointError, match="altered after it was signed"):
        checkpoints.check_signature(altered, pem)
    other, _ = checkpoints.load_or_create_key(tmp_path / "other.key")
    with pytest.raises(checkpoints.CheckpointError, match="not by the key you trust"):
        checkpoints.check_signature(checkpoint, checkpoints.public_pem(other))


# ------------------------------------------------------------------ exports


def exported(store: Store, path: Path) -> list[str]:
    with store.reading() as conn, path.open("w") as f:
        write_export(conn, f)
    return path.read_text().splitlines()


def rewrite_lines(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    path.write_text("\n".join(change(path.read_text().splitlines())) + "\n")


def edit_entry(lines: list[str], seq: int, old: str, new: str) -> list[str]:
    assert old in lines[seq]
    return [*lines[:seq], lines[seq].replace(old, new), *lines[seq + 1 :]]


EXPORT_TAMPERING: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "edited payload": (
        lambda ls: edit_entry(ls, 3, '"op":"revoke"', '"op":"grant"'),
        "entry 3 does not match its hash",
    ),
    "duplicate key": (
        lambda ls: edit_entry(ls, 3, '{"detail"', '{"n":99,"detail"'),
        "entry 3 does not match its hash",
    ),
    "whitespace": (
        lambda ls: edit_entry(ls, 3, '"n":3,', '"n": 3,'),
        "entry 3 does not match its hash",
    ),
    "deleted entry": (lambda ls: [*ls[:2], *ls[3:]], "entry 2 is missing (next is 3)"),
    "reordered entries": (
        lambda ls: [ls[0], ls[1], ls[3], ls[2], *ls[4:]],
        "entry 2 is missing (next is 3)",
    ),
    "truncated": (lambda ls: ls[:4], "entries 4 to 6 are missing (the head records 6)"),
    "head line removed": (lambda ls: ls[1:], "not a lockstep journal export"),
}


@pytest.mark.parametrize("case", EXPORT_TAMPERING, ids=list(EXPORT_TAMPERING))
def test_an_export_tampered_with_names_what_is_wrong(
    store: Store, tmp_path: Path, case: str
) -> None:
    filled(store)
    path = tmp_path / "journal.jsonl"
    exported(store, path)
    assert verify_export(path).ok
    change, reason = EXPORT_TAMPERING[case]
    rewrite_lines(path, change)
    try:
        report = verify_export(path)
    except ExportError as exc:
        assert reason in str(exc)
        return
    assert not report.ok and reason in report.reason, report


def test_each_export_line_is_checkable_with_sha256_alone(store: Store, tmp_path: Path) -> None:
    filled(store, 3)
    lines = exported(store, tmp_path / "journal.jsonl")
    head = json.loads(lines[0])["head"]
    prev = "0" * 64
    for line in lines[1:]:
        entry = json.loads(line)
        record = line[: line.index(',"prev_hash"')] + "}"
        assert entry["prev_hash"] == prev
        prev = hashlib.sha256((prev + record).encode()).hexdigest()
        assert entry["hash"] == prev
    assert head == {"seq": 3, "hash": prev}


# ------------------------------------------------------------------ the CLI, offline


POLICY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${ORDERS_DB_DSN_NOT_SET}
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Lockstep, Store]:
    (tmp_path / "lockstep.yaml").write_text(POLICY)
    env = project_env(LOCKSTEP_SIGNING_KEY=str(tmp_path / "keys" / "signing.key"))
    env.pop("ORDERS_DB_DSN_NOT_SET", None)
    store = Store.open(f"sqlite:///{tmp_path}/.lockstep/state.db")
    filled(store)
    return Lockstep(tmp_path, env), store


def test_audit_verify_needs_no_policy_variable(project: tuple[Lockstep, Store]) -> None:
    cli, _ = project
    proc = cli("audit", "verify")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "6 entries, hash chain verified" in proc.stdout


def test_audit_verify_works_on_a_read_only_copy_and_leaves_it_unchanged(
    project: tuple[Lockstep, Store], tmp_path: Path
) -> None:
    cli, _ = project
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copy = copy_dir / "state.db"
    with sqlite3.connect(tmp_path / ".lockstep" / "state.db") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    copy.chmod(0o444)
    copy_dir.chmod(0o555)
    before = hashlib.sha256(copy.read_bytes()).hexdigest()
    try:
        proc = cli("audit", "verify", "--state", f"sqlite:///{copy}")
    finally:
        copy_dir.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == before


def test_audit_verify_names_the_first_bad_entry_and_exits_1(
    project: tuple[Lockstep, Store],
) -> None:
    cli, store = project
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE journal SET payload = :p WHERE seq = 4"), {"p": '{"n":4 }'})
    proc = cli("audit", "verify")
    assert proc.returncode == 1
    assert "journal broken at entry 4: entry 4 does not match its hash" in proc.stderr


def test_checkpoint_then_rewrite_then_verify_says_rewritten(
    project: tuple[Lockstep, Store], tmp_path: Path
) -> None:
    cli, store = project
    assert cli("audit", "checkpoint", "-o", "cp.json").returncode == 0
    key = tmp_path / "keys" / "signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pem = cli("audit", "public-key").stdout
    (tmp_path / "trusted.pem").write_text(pem)
    args = ("audit", "verify", "--checkpoint", "cp.json", "--public-key", "trusted.pem")
    assert cli(*args).returncode == 0
    rewrite_from(store, 5, '{"n":5}')
    proc = cli(*args)
    assert proc.returncode == 1
    assert "rewritten before the checkpoint: entry 6" in proc.stderr
    roll_back_to(store, 2)
    assert "rolled back: it ends at entry 2" in cli(*args).stderr


def test_an_export_verifies_against_the_checkpoint_too(
    project: tuple[Lockstep, Store], tmp_path: Path
) -> None:
    cli, store = project
    assert cli("audit", "checkpoint", "-o", "cp.json").returncode == 0
    (tmp_path / "trusted.pem").write_text(cli("audit", "public-key").stdout)
    roll_back_to(store, 4)
    assert cli("audit", "export", "-o", "journal.jsonl").returncode == 0
    proc = cli(
        "audit", "verify", "--file", "journal.jsonl", "--checkpoint", "cp.json",
        "--public-key", "trusted.pem", "--json",
    )  # fmt: skip
    assert proc.returncode == 1
    answer = json.loads(proc.stdout)
    assert answer["ok"] is False and "rolled back" in answer["reason"]


def test_a_checkpoint_without_the_key_to_trust_is_a_usage_error(
    project: tuple[Lockstep, Store],
) -> None:
    cli, _ = project
    assert cli("audit", "checkpoint", "-o", "cp.json").returncode == 0
    proc = cli("audit", "verify", "--checkpoint", "cp.json")
    assert proc.returncode == 64
    assert "--checkpoint and --public-key go together" in proc.stderr


def test_a_signing_key_readable_by_others_is_refused(
    project: tuple[Lockstep, Store], tmp_path: Path
) -> None:
    cli, _ = project
    assert cli("audit", "checkpoint", "-o", "cp.json").returncode == 0
    (tmp_path / "keys" / "signing.key").chmod(0o644)
    proc = cli("audit", "checkpoint", "-o", "cp2.json")
    assert proc.returncode == 1 and "accessible to group or others" in proc.stderr


def test_checkpoint_without_a_key_says_where_to_put_one(
    project: tuple[Lockstep, Store],
) -> None:
    cli, _ = project
    cli.env.pop("LOCKSTEP_SIGNING_KEY")
    proc = cli("audit", "checkpoint", "-o", "cp.json")
    assert proc.returncode == 1 and "no signing key: give --key PATH" in proc.stderr
    assert not os.path.exists(cli.workdir / "cp.json")
    shutil.rmtree(cli.workdir / ".lockstep")
    assert "no state store at" in cli("audit", "verify").stderr
