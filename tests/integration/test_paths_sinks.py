"""``file:`` sinks on this host, read from real files: who besides the owner can read the
credential, or replace it through a directory others may write."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockstep.credentials.sink_files import read_sink_files
from lockstep.paths.graph import NodeKind
from lockstep.paths.sinks import ANY_LOCAL_USER


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory any local user may enter (pytest's own are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="lockstep-sinks-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def sink(directory: Path, mode: int, name: str = "svc.json") -> str:
    path = directory / name
    path.write_text("{}")
    path.chmod(mode)
    return f"file:{path}"


def rules(location: str) -> list[tuple[NodeKind, str]]:
    return [(e.source.kind, e.rule) for e in read_sink_files([location]).edges()]


def test_lockstep_s_own_0600_sink_is_no_path(shared) -> None:
    assert rules(sink(shared, 0o600)) == []


def test_a_file_others_may_read_is_a_path_from_any_local_user(shared) -> None:
    location = sink(shared, 0o644)
    [edge] = read_sink_files([location]).edges()
    assert (edge.source.kind, edge.source.name) == (NodeKind.ANYONE, ANY_LOCAL_USER)
    assert edge.destination.name == location and "-rw-r--r--" in edge.evidence


def test_a_readable_file_behind_a_closed_directory_is_no_path(shared) -> None:
    closed = shared / "closed"
    closed.mkdir(mode=0o700)
    assert rules(sink(closed, 0o644)) == []


def test_a_directory_others_may_write_lets_them_replace_the_sink(shared) -> None:
    open_dir = shared / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    assert (NodeKind.ANYONE, "sink.replaceable") in rules(sink(open_dir, 0o600))
    open_dir.chmod(0o1777)  # sticky, as /tmp: others may not rename what is not theirs
    assert rules(sink(open_dir, 0o600, "other.json")) == []


def test_a_group_readable_file_is_a_path_from_each_member_but_the_owner(shared) -> None:
    location = sink(shared, 0o640)
    path = Path(location.partition(":")[2])
    read = read_sink_files([location])
    members = dict(read.files[0].groups)[path.stat().st_gid]
    owner = read.files[0].file.owner if read.files[0].file else None
    sources = {e.source.name for e in read.edges()}
    assert sources == {f"os-user:{m}" for m in members if m != owner}


def test_a_sink_not_written_yet_has_only_its_directories(shared) -> None:
    read = read_sink_files([f"file:{shared / 'later.json'}"])
    assert read.files[0].file is None and list(read.edges()) == []
    assert os.fspath(shared) in [d.path for d in read.files[0].directories]
