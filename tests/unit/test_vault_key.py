"""The vault key comes from LOCKSTEP_KEY or an owner-only key file made on first use."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from lockstep.credentials.vault import KEY_ENV, VaultError, load_key


@pytest.fixture(autouse=True)
def no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_first_use_creates_an_owner_only_key_file_without_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("the key file must be created 0600, not changed to it")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    old_umask = os.umask(0)
    try:
        key = load_key(tmp_path / "state")
    finally:
        os.umask(old_umask)
    key_file = tmp_path / "state" / "key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().strip() == key
    Fernet(key)
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["key"]


def test_later_uses_read_the_same_key(tmp_path: Path) -> None:
    assert load_key(tmp_path) == load_key(tmp_path)


def test_processes_racing_to_create_the_key_all_get_the_same_one(tmp_path: Path) -> None:
    keys: list[bytes] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        keys.append(load_key(tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_lockstep_key_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = Fernet.generate_key()
    monkeypatch.setenv(KEY_ENV, env_key.decode())
    assert load_key(tmp_path) == env_key
    assert not (tmp_path / "key").exists()


def test_a_malformed_lockstep_key_is_refused_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "not-a-key-but-maybe-a-password")
    with pytest.raises(VaultError, match="LOCKSTEP_KEY is not a valid Fernet key") as caught:
        load_key(tmp_path)
    assert "not-a-key-but-maybe-a-password" not in str(caught.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    load_key(tmp_path)
    (tmp_path / "key").chmod(mode)
    with pytest.raises(VaultError, match=f"mode {mode:04o}.*chmod 600"):
        load_key(tmp_path)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"garbage")
    key_file.chmod(0o600)
    with pytest.raises(VaultError, match="does not hold a valid Fernet key"):
        load_key(tmp_path)


def test_a_key_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").mkdir(mode=0o700)
    with pytest.raises(VaultError, match="key"):
        load_key(tmp_path)
