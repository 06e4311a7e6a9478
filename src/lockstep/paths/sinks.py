"""``file:`` sinks on this host: who besides the file's owner can read the credential in it,
or replace it through a directory others may write. Pure: the modes, owners and groups are
read by ``lockstep.credentials.sink_files``.

- Others (mode ``o+r``) read the file when every directory above it lets others through
  (``o+x``); members of the file's group (``g+r``) when each directory lets them through.
- A directory on the way that others (or the group) may write, without the sticky bit, lets
  them rename the file away and put their own in its place: the next credential lockstep
  delivers is written where they choose, and the workload reads what they wrote.

Lockstep writes sinks 0600: these edges appear when something else loosened them.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass

from lockstep.paths.graph import Confidence, Edge, Node, NodeKind, NotAssessed, Principals

HOST = ""  # the target of nodes on this host
ANY_LOCAL_USER = "any local user"


@dataclass(frozen=True, slots=True)
class FileMode:
    path: str
    uid: int
    gid: int
    mode: int
    owner: str  # the owner's user name (or its uid, when it has none)


@dataclass(frozen=True, slots=True)
class SinkFile:
    sink: str  # file:PATH, as the node is named
    file: FileMode | None  # None: not written yet
    directories: tuple[FileMode, ...]  # from / down to the file's directory
    # The users of each group the file or a directory belongs to (members and those whose
    # primary group it is), by gid.
    groups: tuple[tuple[int, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class SinkFacts:
    files: tuple[SinkFile, ...]
    gaps: tuple[NotAssessed, ...] = ()
    target: str = HOST

    def account_node(self, account: str) -> Node:
        return Node(NodeKind.OS_USER, HOST, f"os-user:{account}")

    def entitlement_node(self, entitlement: str) -> Node | None:
        return None

    def principals(self) -> Principals:
        return Principals()

    def not_assessed(self) -> tuple[NotAssessed, ...]:
        return self.gaps

    def edges(self) -> Iterator[Edge]:
        for sink in self.files:
            yield from _file_edges(sink, self)


def _file_edges(sink: SinkFile, facts: SinkFacts) -> Iterator[Edge]:
    node = Node(NodeKind.SINK, HOST, sink.sink)
    anyone = Node(NodeKind.ANYONE, HOST, ANY_LOCAL_USER)
    members = dict(sink.groups)
    owner = sink.file.owner if sink.file else None
    reachable = _passable_by_others(sink.directories)
    if sink.file is not None:
        mode = sink.file.mode
        shown = f"{stat.filemode(mode)} {sink.file.owner}:{sink.file.gid} {sink.file.path}"
        if mode & stat.S_IROTH and reachable:
            yield Edge(
                anyone, node, "sink.readable", f"others may read it: {shown}", Confidence.PROVEN
            )
        if mode & stat.S_IRGRP:
            for user in members.get(sink.file.gid, ()):
                if user != owner and _passable_by_group(sink.directories, sink.file.gid):
                    yield Edge(
                        facts.account_node(user),
                        node,
                        "sink.readable",
                        f"its group may read it: {shown}",
                        Confidence.PROVEN,
                    )
    for directory in sink.directories:
        mode = directory.mode
        if mode & stat.S_ISVTX:
            continue  # sticky: others may not rename what they do not own
        shown = f"{stat.filemode(mode)} {directory.owner}:{directory.gid} {directory.path}"
        what = "may replace the sink (rename it away, write their own)"
        if mode & stat.S_IWOTH and reachable:
            yield Edge(anyone, node, "sink.replaceable", f"{what}: {shown}")
        if mode & stat.S_IWGRP:
            for user in members.get(directory.gid, ()):
                if user != directory.owner:
                    yield Edge(
                        facts.account_node(user), node, "sink.replaceable", f"{what}: {shown}"
                    )


def _passable_by_others(directories: tuple[FileMode, ...]) -> bool:
    return all(d.mode & stat.S_IXOTH for d in directories)


def _passable_by_group(directories: tuple[FileMode, ...], gid: int) -> bool:
    return all(
        d.mode & stat.S_IXOTH or (d.gid == gid and d.mode & stat.S_IXGRP) for d in directories
    )
