"""Sinks: where a workload picks up the credential lockstep issued for it.

``file:PATH`` writes JSON that a workload (or a sidecar) reads. The write is atomic, so a
reader sees the old credential or the new one, never half of either, and the file is 0600
from its creation and owned by the user lockstep runs as, whoever created the path before
(a workload that reads it runs as that user, or gets it through a sidecar or a group-less
bind mount: lockstep never hands a file to whoever planted one). The directories on the way
are opened without following symbolic links; the sink's own directory must belong to
lockstep's user (or root) and be writable by nobody else.

``aws-secrets:NAME`` (a secret name or ARN) stores the same JSON in AWS Secrets Manager the
way a rotation does: the new version is staged ``AWSPENDING``, then ``AWSCURRENT`` moves to
it (the old version becomes ``AWSPREVIOUS``), and the move is read back. A reader asking for
``AWSCURRENT`` sees the old credential or the new one, never a half-delivered state; if any
step fails, ``AWSCURRENT`` still holds the old credential. The client comes from the
standard AWS environment (credentials or profile, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL``); an ARN names its own region. A missing secret is created.

Either way, a failed delivery raises ``SinkError`` and the caller must not retire the old
credential: the workload is never left without a working secret.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lockstep.errors import LockstepError
from lockstep.secret import Secret

_TARGET = "{target}"
_FILE = "file"
_AWS_SECRETS = "aws-secrets"
# Secrets Manager's own rule for names, and the shape of a secret's ARN.
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+"
)
# A target name becomes a file name: nothing that could climb out of the directory or
# hide the file, and nothing that two different names could both turn into.
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SinkError(LockstepError):
    """A sink that cannot be used or written. The message holds no secret."""

    code = "sink_unusable"
    default_hint = "check the sink's path (or secret name) and that lockstep may write there"


@dataclass(frozen=True)
class Delivery:
    target: str
    account: str
    username: str
    secret: Secret
    issued_at: datetime
    expires_at: datetime | None


def check_sink(sink: str) -> None:
    """Check a sink's syntax without writing anything (for ``lockstep validate``)."""
    scheme, _, rest = sink.partition(":")
    if scheme == _FILE:
        _check_file_template(rest)
    elif scheme == _AWS_SECRETS:
        _check_secret_template(rest)
    else:
        raise SinkError(f"unknown sink {scheme!r}: expected file:PATH or aws-secrets:NAME")


def beside(sink: str, base_dir: Path) -> str:
    """A ``file:`` sink with a relative path, resolved in ``base_dir`` (the policy's
    directory), never against the working directory of whoever runs lockstep."""
    scheme, _, rest = sink.partition(":")
    if scheme != _FILE or Path(rest).is_absolute():
        return sink
    return f"{_FILE}:{base_dir.resolve() / rest}"


def sink_location(sink: str, target: str) -> str:
    """Where ``deliver`` writes a credential for ``target``: the sink with its target filled in."""
    check_sink(sink)
    if _TARGET in sink and not _SAFE_COMPONENT.fullmatch(target):
        raise SinkError(
            f"target name {target!r} cannot be used in a file name or a secret name: "
            "letters, digits, '.', '_' and '-' only, not starting with '.'"
        )
    return sink.replace(_TARGET, target)


def deliver(sink: str, delivery: Delivery) -> str:
    """Store the credential in its sink; returns the location (never the secret)."""
    location = sink_location(sink, delivery.target)
    scheme, _, where = location.partition(":")
    content = json.dumps(_document(delivery), indent=2) + "\n"
    if scheme == _AWS_SECRETS:
        _put_secret(where, content)
    else:
        _write_file(Path(where), content.encode())
    return location


# The keys of a delivered document, as the contract gives them.
DOCUMENT_KEYS = ("target", "account", "username", "password", "issued_at", "expires_at")
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.tmp")


def read_delivered(sink: str, target: str) -> dict[str, str | None] | None:
    """What the sink holds now for ``target``: the contract's document, or None when it holds
    nothing. Raises SinkError when it cannot be read or is not such a document."""
    location = sink_location(sink, target)
    scheme, _, where = location.partition(":")
    if scheme == _AWS_SECRETS:
        from lockstep.credentials import aws_secrets

        arn = _SECRET_ARN.fullmatch(where)
        text = aws_secrets.get_current(where, region=arn.group("region") if arn else None)
    else:
        text = _read_file(Path(where))
    if text is None:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        raise SinkError(f"{location} does not hold JSON") from None
    if not isinstance(document, dict) or any(k not in document for k in DOCUMENT_KEYS):
        raise SinkError(f"{location} lacks the keys {', '.join(DOCUMENT_KEYS)}")
    if not all(isinstance(document[k], str) for k in ("username", "password")):
        raise SinkError(f"{location}: username and password must be strings")
    return document


def _read_file(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SinkError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(1 << 20)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise SinkError(f"{path} is not UTF-8 text") from None


def remove_leftovers(sink: str, target: str) -> list[Path]:
    """Temporary files a killed delivery left beside a file sink (they may hold a
    credential): removed; returns which."""
    location = sink_location(sink, target)
    scheme, _, where = location.partition(":")
    if scheme != _FILE:
        return []
    path = Path(where)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    for name in names:
        match = _LEFTOVER.fullmatch(name)
        if match and match.group("name") == path.name:
            (path.parent / name).unlink(missing_ok=True)
            removed.append(path.parent / name)
    return removed


def _document(delivery: Delivery) -> dict[str, str | None]:
    return {
        "target": delivery.target,
        "account": delivery.account,
        "username": delivery.username,
        "password": delivery.secret.reveal(),
        "issued_at": _iso(delivery.issued_at),
        "expires_at": None if delivery.expires_at is None else _iso(delivery.expires_at),
    }


def _write_file(path: Path, content: bytes) -> None:
    try:
        directory = _open_sink_dir(path)
        try:
            _replace_atomically(directory, path.name, content)
        finally:
            os.close(directory)
    except OSError as exc:
        raise SinkError(f"cannot write the credential to {path}: {exc.strerror}") from None


def _check_secret_template(name: str) -> None:
    filled = name.replace(_TARGET, "t")
    if not (_SECRET_NAME.fullmatch(filled) or _SECRET_ARN.fullmatch(filled)):
        unknown = [p for p in _PLACEHOLDER.findall(name) if p != _TARGET]
        if unknown:
            raise SinkError(f"unknown placeholder {unknown[0]} in a secret name: only {_TARGET}")
        raise SinkError(
            f"aws-secrets:{name} is not a secret name (1-512 of letters, digits and "
            "/_+=.@-) nor a secret ARN"
        )


def _put_secret(name: str, content: str) -> None:
    from lockstep.credentials import aws_secrets

    arn = _SECRET_ARN.fullmatch(name)
    aws_secrets.put_current(name, content, region=arn.group("region") if arn else None)


def _check_file_template(template: str) -> None:
    if not template or template.endswith("/"):
        raise SinkError("a file sink needs a file path: file:PATH")
    unknown = [p for p in _PLACEHOLDER.findall(template) if p != _TARGET]
    if unknown:
        raise SinkError(f"unknown placeholder {unknown[0]} in a file sink: only {_TARGET}")


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise SinkError("a credential time without a time zone cannot be written as UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_sink_dir(path: Path) -> int:
    """The sink's directory, opened by a walk from the root that follows no symbolic link
    (each component opened relative to its parent, ``openat``-style), missing directories
    made 0700 on the way. A directory lockstep writes into must be its own (or root's) and
    writable by nobody else: else another user could swap the file, or read it."""
    if not path.is_absolute():
        raise SinkError(f"a file sink must be an absolute path once resolved, got {path}")
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in path.parent.parts[1:]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o700, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise SinkError(
                        f"{path}: {part!r} on its way is a symbolic link or not a directory; "
                        "lockstep follows no link to a sink"
                    ) from None
                raise
            os.close(fd)
            fd = child
            _check_parent(path, fd)
        _check_sink_dir(path.parent, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_parent(path: Path, fd: int) -> None:
    info = os.fstat(fd)
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise SinkError(
            f"{path}: a directory on its way is writable by anyone and not sticky "
            f"(mode {stat.S_IMODE(info.st_mode):04o}): another user could replace what follows"
        )


def _check_sink_dir(directory: Path, info: os.stat_result) -> None:
    if info.st_uid not in (os.geteuid(), 0):
        raise SinkError(
            f"the sink directory {directory} is owned by uid {info.st_uid}, not by the user "
            "lockstep runs as (nor root): refused"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SinkError(
            f"the sink directory {directory} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod go-w {directory}"
        )


def _replace_atomically(directory: int, name: str, content: bytes) -> None:
    """Write a new file (0600, owned by lockstep's user, whoever owned the old one) beside
    the old one in ``directory``, then rename it over: a reader sees the old credential or
    the new one. The temporary file is removed on every failure."""
    temp = f".{name}.{os.urandom(6).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600, dir_fd=directory)
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        os.unlink(temp, dir_fd=directory)
        raise
    os.fsync(directory)
