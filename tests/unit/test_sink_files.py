"""A file sink and the state directory are lockstep's own: the sink is created by lockstep
with its own owner and mode 0600 (never handed to whoever planted the path), no symbolic
link is followed on the way to it, a sink directory writable by others or owned by another
user is refused, the temporary file is removed when a write fails; the `.lockstep`
directory, key file and state database are checked at every start. Relative sink paths
resolve beside the policy."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockstep.credentials.keys import VaultError, load_key
from lockstep.credentials.sinks import Delivery, SinkError, beside, deliver
from lockstep.policy.load import load_policy
from lockstep.secret import Secret
from lockstep.store import Store, StoreError

OTHER_UID = 54321
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def delivery() -> Delivery:
    return Delivery("db", "app", "app", Secret("pw-sink-test-1"), NOW, None)


def test_the_sink_is_lockstep_s_own_file_whoever_created_the_path(tmp_path: Path) -> None:
    sink = tmp_path / "secrets" / "app.json"
    sink.parent.mkdir(mode=0o700)
    sink.write_text("planted")
    os.chown(sink, OTHER_UID, OTHER_UID)
    os.chmod(sink, 0o644)
    deliver(f"file:{sink}", delivery())
    info = sink.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (os.geteuid(), 0o600)
    assert json.loads(sink.read_text())["password"] == "pw-sink-test-1"


def test_missing_directories_are_made_0700(tmp_path: Path) -> None:
    sink = tmp_path / "a" / "b" / "app.json"
    deliver(f"file:{sink}", delivery())
    assert (sink.parent.stat().st_mode & 0o777, sink.parent.parent.stat().st_mode & 0o777) == (
        0o700,
        0o700,
    )


@pytest.mark.parametrize("where", ["sink directory", "a directory on the way"])
def test_no_symbolic_link_is_followed_to_a_sink(tmp_path: Path, where: str) -> None:
    real = tmp_path / "real"
    (real / "inner").mkdir(parents=True, mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    sink = link / "app.json" if where == "sink directory" else link / "inner" / "app.json"
    with pytest.raises(SinkError, match="symbolic link"):
        deliver(f"file:{sink}", delivery())
    assert list(real.rglob("*.json")) == []


def test_a_sink_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.mkdir()
    os.chmod(group, 0o770)  # noqa: S103 - the permissive mode is what is refused
    with pytest.raises(SinkError, match="writable by group or others"):
        deliver(f"file:{group / 'app.json'}", delivery())
    directory = tmp_path / "open"
    directory.mkdir()
    os.chmod(directory, 0o777)  # noqa: S103 - the permissive mode is what is refused
    with pytest.raises(SinkError, match="writable by"):
        deliver(f"file:{directory / 'app.json'}", delivery())
    assert list(directory.iterdir()) == []


def test_a_sink_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, OTHER_UID, OTHER_UID)
    with pytest.raises(SinkError, match=f"owned by uid {OTHER_UID}"):
        deliver(f"file:{directory / 'app.json'}", delivery())


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    (directory / "app.json").mkdir(parents=True)  # a directory where the file should go
    os.chmod(directory, 0o700)
    with pytest.raises(SinkError):
        deliver(f"file:{directory / 'app.json'}", delivery())
    assert [p.name for p in directory.iterdir()] == ["app.json"]


def test_a_relative_sink_resolves_beside_the_policy_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "lockstep.yaml").write_text(
        "version: 1\n"
        "targets: {}\n"
        "owners: {team: {contacts: [a@example.com]}}\n"
        "identities:\n"
        "  app:\n"
        "    owner: team\n"
        "    purpose: tests\n"
        "    credentials: {sink: 'file:secrets/app.json'}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_policy(Path("../project/lockstep.yaml"))
    sink = loaded.policy.identities["app"].credentials.sink
    assert sink == f"file:{project.resolve() / 'secrets' / 'app.json'}"
    assert beside("file:/abs/x.json", project) == "file:/abs/x.json"
    assert beside("aws-secrets:name", project) == "aws-secrets:name"


def test_the_state_directory_is_checked_at_every_start(tmp_path: Path) -> None:
    state = tmp_path / ".lockstep"
    load_key(state)
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "key").stat().st_mode & 0o777 == 0o600
    os.chmod(state, 0o770)  # noqa: S103 - the permissive mode is what is refused
    with pytest.raises(VaultError, match="writable by group or others"):
        load_key(state)
    os.chmod(state, 0o700)
    os.chown(state / "key", OTHER_UID, OTHER_UID)
    with pytest.raises(VaultError, match="owned by uid"):
        load_key(state)
    os.chown(state / "key", os.geteuid(), os.getegid())
    os.chown(state, OTHER_UID, OTHER_UID)
    with pytest.raises(VaultError, match="owned by uid"):
        load_key(state)


def test_the_state_database_is_created_0600_and_checked(tmp_path: Path) -> None:
    db = tmp_path / ".lockstep" / "state.db"
    Store.open(f"sqlite:///{db}").close()
    assert db.stat().st_mode & 0o777 == 0o600
    os.chmod(db, 0o666)  # noqa: S103 - the permissive mode is what is refused
    with pytest.raises(StoreError, match="writable by group or others"):
        Store.open(f"sqlite:///{db}")
    os.chmod(db, 0o600)
    os.chown(db, OTHER_UID, OTHER_UID)
    with pytest.raises(StoreError, match="owned by uid"):
        Store.open(f"sqlite:///{db}")
