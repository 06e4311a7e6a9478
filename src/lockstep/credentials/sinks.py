"""Sinks: where a workload picks up the credential lockstep issued for it.

``file:PATH`` writes JSON that a workload (or a sidecar) reads. The write is atomic, so a
reader sees the old credential or the new one, never half of either, and the file is 0600
from its creation. When the file already exists with another owner (lockstep running as
root, the workload as itself), the new file keeps that owner, so rotating does not lock the
workload out of its own credential.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lockstep.secrets import Secret

_TARGET = "{target}"
# A target name becomes a file name: nothing that could climb out of the directory or
# hide the file, and nothing that two different names could both turn into.
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


class SinkError(Exception):
    """A sink that cannot be used or written. The message holds no secret."""


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
    if scheme == "file":
        _check_file_template(rest)
    elif scheme == "aws-secrets":
        raise SinkError("aws-secrets sinks are not supported yet; use file:PATH")
    else:
        raise SinkError(f"unknown sink {scheme!r}: expected file:PATH or aws-secrets:NAME")


def sink_location(sink: str, target: str) -> str:
    """Where ``deliver`` writes a credential for ``target``: the sink with its target filled in."""
    check_sink(sink)
    if _TARGET in sink and not _SAFE_COMPONENT.fullmatch(target):
        raise SinkError(
            f"target name {target!r} cannot be used in a file name: letters, digits, '.', "
            "'_' and '-' only, not starting with '.'"
        )
    return sink.replace(_TARGET, target)


def deliver(sink: str, delivery: Delivery) -> str:
    """Write the credential to its sink; returns the location (never the secret)."""
    location = sink_location(sink, delivery.target)
    path = Path(location.removeprefix("file:"))
    document = {
        "target": delivery.target,
        "account": delivery.account,
        "username": delivery.username,
        "password": delivery.secret.reveal(),
        "issued_at": _iso(delivery.issued_at),
        "expires_at": None if delivery.expires_at is None else _iso(delivery.expires_at),
    }
    content = (json.dumps(document, indent=2) + "\n").encode()
    try:
        _make_private_dirs(path.parent)
        _replace_atomically(path, content)
    except OSError as exc:
        raise SinkError(f"cannot write the credential to {path}: {exc.strerror}") from None
    return location


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


def _make_private_dirs(directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for each in reversed(missing):
        each.mkdir(mode=0o700, exist_ok=True)


def _replace_atomically(path: Path, content: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600)
    try:
        try:
            _keep_owner(fd, path)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _keep_owner(fd: int, path: Path) -> None:
    try:
        previous = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if (previous.st_uid, previous.st_gid) != (os.geteuid(), os.getegid()):
        os.fchown(fd, previous.st_uid, previous.st_gid)
