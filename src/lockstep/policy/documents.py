"""YAML documents as plain data, with the file and line of every node kept aside.

PyYAML builds node trees that know their marks; we build the Python values from the same
tree, so that any path into the data (``("identities", "api", "access", 0)``) maps back to
where it was written. Duplicate keys, which YAML loaders silently overwrite, are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lockstep.model import Location
from lockstep.policy.errors import PolicyError

PathKey = tuple[str | int, ...]
# libyaml's parser when PyYAML was built with it (node marks are the same, parsing ~10x faster).
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader, but a timestamp that is no date (2027-13-01) is an error at its
    line, collected in ``errors``, and the text is kept as written instead."""

    errors: list[tuple[int, str]]

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> object:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            self.errors.append(
                (node.start_mark.line + 1, f"{node.value!r} is not a valid date or time: {exc}")
            )
            return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


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
    loader.errors = []
    try:
        node = loader.get_single_node()
        if node is None:
            errors.append(PolicyError(Location(name, 1), "the policy file is empty"))
            return None
        doc = Document(name, None)
        marker = _Marker(doc)
        marker.mark(node, ())
        errors.extend(marker.errors)
        if marker.refused:
            return None
        doc.data = loader.construct_document(node)
        errors.extend(PolicyError(Location(name, line), message) for line, message in loader.errors)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "malformed YAML"
        if "\t" in "".join(text.splitlines()[line - 1 : line]):
            problem += " (the line holds a tab: YAML indents with spaces only)"
        errors.append(PolicyError(Location(name, line), f"malformed YAML: {problem}"))
        return None
    except yaml.YAMLError as exc:
        errors.append(PolicyError(Location(name, 1), f"malformed YAML: {exc}"))
        return None
    finally:
        loader.dispose()


# An alias repeats a subtree it names; these bound how much a file may repeat (an "alias
# bomb" of nested aliases grows exponentially) and how deep it may nest, so that validate and
# the service's reload stay linear in the file's size.
ALIAS_BUDGET = 100_000  # nodes reached again through aliases, in all
MAX_DEPTH = 200


class _Marker:
    """Walks a node tree recording each path's line; refuses duplicate keys (dropping the
    later ones, so that the first definition is the one used), recursive aliases, and more
    alias repetition or nesting than the bounds above."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.errors: list[PolicyError] = []
        self.refused = False
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._repeated = 0
        self._replaying = 0  # how many repeated collections the walk is inside

    def _refuse(self, node: yaml.Node, message: str) -> None:
        self.errors.append(PolicyError(Location(self.doc.file, node.start_mark.line + 1), message))
        self.refused = True

    def mark(self, node: yaml.Node, path: PathKey) -> None:
        if self.refused:
            return
        # Only collections multiply what an alias repeats: scalars are not tracked (a
        # repeated scalar costs one alias token of the file), but every node reached inside
        # a repeated collection counts against the budget.
        collection = isinstance(node, yaml.MappingNode | yaml.SequenceNode)
        again = collection and id(node) in self._seen
        if again or self._replaying:
            self._repeated += 1
            if self._repeated > ALIAS_BUDGET:
                self._refuse(
                    node,
                    f"aliases repeat more than {ALIAS_BUDGET} nodes (an alias bomb?): "
                    "write the repeated parts out, or repeat less",
                )
                return
        if len(path) > MAX_DEPTH:
            self._refuse(node, f"nested deeper than {MAX_DEPTH} levels")
            return
        self.doc.lines[path] = node.start_mark.line + 1
        if not collection:
            return
        if id(node) in self._open:
            self._refuse(node, "an alias refers to a node that contains it (a recursive alias)")
            return
        self._seen.add(id(node))
        self._open.add(id(node))
        self._replaying += again
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, path)
        else:
            for i, item in enumerate(node.value):
                self.mark(item, (*path, i))
        self._replaying -= again
        self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> None:
        seen: dict[str, int] = {}
        kept = []
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                message = f"duplicate key {key!r} (first at line {seen[key]}, which is used)"
                self.errors.append(PolicyError(Location(self.doc.file, line), message))
                continue
            seen[key] = line
            kept.append((key_node, value_node))
            self.mark(value_node, (*path, key))
            self.doc.lines[(*path, key)] = line
        node.value = kept
