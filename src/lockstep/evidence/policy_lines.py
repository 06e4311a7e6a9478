"""Where in the policy each access and entitlement of an identity is written, and the git
commit of that line when the policy is kept in git (``git blame``, through the git command:
no git, or a policy outside a repository, is simply no commit)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lockstep.connectors.base import GrammarError
from lockstep.connectors.registry import connector_type
from lockstep.model import Location
from lockstep.policy.documents import Document, load_documents
from lockstep.policy.load import LoadedPolicy

_UNCOMMITTED = "0" * 40
_GIT_TIMEOUT_S = 20


@dataclass(frozen=True)
class AccessPlaces:
    access: Location
    entitlements: dict[str, Location]  # canonical entitlement -> where it is written


@dataclass(frozen=True)
class IdentityPlaces:
    identity: Location
    access: list[AccessPlaces]  # in the order of the identity's access entries


class PolicyDocuments:
    """The policy files parsed with their line tables, each once, remembered: what a
    long-running reader (the dashboard) keeps per policy it loaded."""

    def __init__(self) -> None:
        self._docs: dict[str, list[Document]] = {}

    def get(self, file: str) -> list[Document]:
        docs = self._docs.get(file)
        if docs is None:
            docs = self._docs[file] = load_documents([Path(file)], [])
        return docs


def identity_places(
    loaded: LoadedPolicy, name: str, documents: PolicyDocuments | None = None
) -> IdentityPlaces:
    declared = loaded.locations[("identities", name)]
    identity = loaded.policy.identities[name]
    docs = (documents or PolicyDocuments()).get(declared.file)
    raw: Any = docs[0].data.get("identities", {}).get(name, {}) if docs else {}
    items = raw.get("access", []) if isinstance(raw, dict) else []
    places = []
    for i, access in enumerate(identity.access):
        base = ("identities", name, "access", i)
        where = docs[0].locate(base) if docs else declared
        lines: dict[str, Location] = {}
        item = items[i] if i < len(items) and isinstance(items[i], dict) else {}
        connector = connector_type(loaded.policy.targets[access.target].type)
        for j, text in enumerate(item.get("entitlements", []) or []):
            try:
                canonical = connector.parse_entitlement(str(text))
            except GrammarError:
                continue  # written through ${VAR}: the access entry's line stands for it
            lines.setdefault(canonical, docs[0].locate((*base, "entitlements", j)))
        places.append(AccessPlaces(where, lines))
    return IdentityPlaces(declared, places)


class Blame:
    """``git blame`` of the policy files, one run per file, remembered."""

    def __init__(self) -> None:
        self._files: dict[str, dict[int, dict[str, Any]] | None] = {}

    def place(self, location: Location) -> dict[str, Any]:
        lines = self._files.get(location.file)
        if location.file not in self._files:
            lines = self._files[location.file] = _blame(Path(location.file))
        place: dict[str, Any] = {"file": location.file, "line": location.line, "commit": None}
        if lines is None:
            return place
        commit = lines.get(location.line)
        if commit is None or commit["id"] == _UNCOMMITTED:
            place["uncommitted"] = True
        else:
            place["commit"] = commit
        return place


def _blame(path: Path) -> dict[int, dict[str, Any]] | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        proc = subprocess.run(
            [git, "-C", str(path.parent), "blame", "--porcelain", "--", path.name],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None  # not in a repository, or the file is not tracked
    return _porcelain(proc.stdout)


def _porcelain(text: str) -> dict[int, dict[str, Any]]:
    commits: dict[str, dict[str, Any]] = {}
    lines: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.startswith("\t"):
            current = None
            continue
        head = line.split(" ")
        if current is None and len(head) >= 3 and len(head[0]) == 40:
            current = commits.setdefault(head[0], {"id": head[0]})
            lines[int(head[2])] = current
            continue
        if current is None:
            continue
        key, _, value = line.partition(" ")
        if key == "author":
            current["author"] = value
        elif key == "author-time" and value.isdigit():
            current["date"] = datetime.fromtimestamp(int(value), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif key == "summary":
            current["summary"] = value
    return lines


def last_change_mentioning(loaded: LoadedPolicy, text: str) -> dict[str, Any] | None:
    """The newest commit that added or removed ``text`` in the policy files (``git log -S``):
    for an orphan, typically the change that stopped declaring it."""
    git = shutil.which("git")
    if git is None or not text:
        return None
    files = [str(f) for f in loaded.files]
    argv = [git, "-C", str(loaded.base_dir), "log", "-1", "--format=%H%x1f%an%x1f%aI%x1f%s"]
    try:
        proc = subprocess.run(
            [*argv, f"-S{text}", "--", *files],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = proc.stdout.strip().split("\x1f")
    if proc.returncode != 0 or len(fields) != 4:
        return None
    return {"id": fields[0], "author": fields[1], "date": fields[2], "summary": fields[3]}
