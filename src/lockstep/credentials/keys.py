"""The vault's key: ``LOCKSTEP_KEY``, or a key file in the state directory created on first
use with mode 0600 and never readable by group or others."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet

from lockstep.errors import LockstepError

KEY_ENV = "LOCKSTEP_KEY"
KEY_FILE = "key"


class VaultError(LockstepError):
    """The key or a stored credential cannot be used. The message holds no secret."""

    code = "vault_unusable"
    default_hint = "check LOCKSTEP_KEY, or the key file in the state directory (.lockstep/key)"


def load_key(state_dir: Path) -> bytes:
    """The vault key: ``LOCKSTEP_KEY`` if set, else ``state_dir/key``, created on first use.
    The state directory, where it exists, is checked first (see ``check_private_dir``)."""
    check_private_dir(state_dir)
    from_env = os.environ.get(KEY_ENV)
    if from_env is not None:
        return checked_key(from_env.strip().encode(), f"{KEY_ENV} is not a valid Fernet key")
    path = state_dir / KEY_FILE
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(path)


def checked_key(key: bytes, problem: str) -> bytes:
    try:
        Fernet(key)
    except ValueError:
        raise VaultError(
            f"{problem} (expected 32 url-safe base64-encoded bytes, as made by "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'`)"
        ) from None
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise VaultError(f"cannot read the key file {path}: {exc.strerror}") from None
    try:
        _check_key_file(path, os.fstat(fd))
        # A key is 45 bytes; one read of a regular file returns all of it.
        key = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    return checked_key(key, f"the key file {path} does not hold a valid Fernet key")


def check_private_dir(path: Path) -> None:
    """The state directory (``.lockstep``) holds the key and the state: it must be a real
    directory (not a link), owned by the user lockstep runs as, and writable by nobody else.
    Checked at every start; absent, it is created 0700 when first needed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise VaultError(f"the state directory {path} is not a directory (a link is refused)")
    _check_owner(path, info, "state directory")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise VaultError(
            f"the state directory {path} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 700 {path}"
        )


def _check_owner(path: Path, info: os.stat_result, what: str) -> None:
    if info.st_uid != os.geteuid():
        raise VaultError(
            f"the {what} {path} is owned by uid {info.st_uid}, not by the user lockstep runs "
            f"as ({os.geteuid()}): refused"
        )


def _check_key_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise VaultError(f"the key file {path} is not a regular file")
    _check_owner(path, info, "key file")
    if info.st_mode & 0o077:
        raise VaultError(
            f"the key file {path} is accessible to group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )


def _create_key_file(path: Path) -> bytes:
    """Write a new key under a temporary name, then link it into place.

    The file is 0600 from its creation, and linking fails if another process won the race,
    so nobody ever reads a half-written key: the loser discards its key and reads the file.
    """
    key = Fernet.generate_key()
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return _read_key_file(path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise VaultError(f"cannot create the key file {path}: {exc.strerror}") from None
    finally:
        temp.unlink(missing_ok=True)
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
