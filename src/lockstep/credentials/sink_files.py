"""The modes, owners and groups of ``file:`` sinks and the directories above them, read from
this host for escalation paths (``lockstep.paths.sinks`` decides what they allow)."""

from __future__ import annotations

import grp
import pwd
from collections.abc import Iterable
from pathlib import Path

from lockstep.paths.graph import NotAssessed
from lockstep.paths.sinks import HOST, FileMode, SinkFacts, SinkFile


def read_sink_files(locations: Iterable[str]) -> SinkFacts:
    """``locations`` are sinks with their target filled in (``file:PATH``)."""
    files: list[SinkFile] = []
    gaps: list[NotAssessed] = []
    for location in sorted(set(locations)):
        path = Path(location.partition(":")[2])
        try:
            files.append(_sink(location, path))
        except OSError as exc:
            gaps.append(NotAssessed(HOST, location, f"cannot stat: {exc.strerror}"))
    return SinkFacts(tuple(files), tuple(gaps))


def _sink(location: str, path: Path) -> SinkFile:
    found = _mode(path) if path.exists() else None
    directories = tuple(_mode(p) for p in reversed(path.parents) if p.exists())
    gids = {m.gid for m in (*directories, *([found] if found else []))}
    return SinkFile(location, found, directories, tuple((g, _users(g)) for g in sorted(gids)))


def _mode(path: Path) -> FileMode:
    info = path.stat()
    return FileMode(str(path), info.st_uid, info.st_gid, info.st_mode, _user_name(info.st_uid))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _users(gid: int) -> tuple[str, ...]:
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        members = set()
    members |= {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid}
    return tuple(sorted(members))
