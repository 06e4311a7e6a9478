"""YAML documents as plain data, with the file and line of every node kept aside.

PyYAML builds node trees that know their marks; we build the Python values from the same
tree, so that any path into the data (``("identities", "api", "access", 0)``) maps back to
where it was written. Duplicate keys, which YAML loaders silently overwrite, are errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lockstep.model import Location
from lockstep.policy.errors import PolicyError

PathKey = tuple[str | int, ...]
# libyaml's parser when PyYAML was built with it (node marks are the same, parsing ~10x faster).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    # lines_under's index, per prefix length: built once, so that looking up every element
    # of a large policy stays linear in its size.
    _under: dict[int, dict[PathKey, dict[PathKey, int]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def lines_under(self, prefix: PathKey) -> dict[PathKey, int]:
        """The lines of every path below ``prefix``, keyed relative to it."""
        n = len(prefix)
        index = self._under.get(n)
        if index is None:
            index = {}
            for path, line in self.lines.items():
                if len(path) >= n:
                    index.setdefault(path[:n], {})[path[n:]] = line
            self._under[n] = index
        return index.get(prefix, {})

    def locate(self, path: PathKey) -> Location:
        """The line of ``path``, or of its nearest written ancestor (a missing key is
        reported where its parent mapping starts)."""
        while path:
            if path in self.lines:
                return Location(self.file, self.lines[path])
            path = path[:-1]
        return Location(self.file, self.lines.get((), 1))


def load_documents(paths: list[Path], errors: list[PolicyError]) -> list[Document]:
    docs = []
    for path in paths:
        doc = _load_one(path, errors)
        if doc is not None:
            docs.append(doc)
    return docs


def _load_one(path: Path, errors: list[PolicyError]) -> Document | None:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(PolicyError(Location(name, 1), f"cannot read policy file: {exc}"))
        return None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            errors.append(PolicyError(Location(name, 1), "the policy file is empty"))
            return None
        doc = Document(name, None)
        dup_errors = list(_check_and_mark(node, (), doc))
        if dup_errors:
            errors.extend(dup_errors)
            return None
        doc.data = loader.construct_document(node)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "malformed YAML"
        errors.append(PolicyError(Location(name, line), f"malformed YAML: {problem}"))
        return None
    except yaml.YAMLError as exc:
        errors.append(PolicyError(Location(name, 1), f"malformed YAML: {exc}"))
        return None
    finally:
        loader.dispose()


def _check_and_mark(node: yaml.Node, path: PathKey, doc: Document) -> Iterator[PolicyError]:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                yield PolicyError(
                    Location(doc.file, line), f"duplicate key {key!r} (first at line {seen[key]})"
                )
                continue
            seen[key] = line
            yield from _check_and_mark(value_node, (*path, key), doc)
            doc.lines[(*path, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _check_and_mark(item, (*path, i), doc)
