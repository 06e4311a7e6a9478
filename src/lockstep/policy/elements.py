"""The first stages of loading a policy, element by element: the files' sections merged into
named elements (one definition per name), each element's ``${VAR}`` expanded, and each
validated against its pydantic model, with every error at its file and line."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from lockstep.model import Location
from lockstep.policy.documents import Document, PathKey
from lockstep.policy.errors import PolicyError
from lockstep.policy.interpolate import expand

M = TypeVar("M", bound=BaseModel)

SECTIONS = ("targets", "owners", "identities")
# Sections written once, as one mapping of settings.
SINGLES = ("rules", "audit", "governance")
TOP_LEVEL = {"version", *SINGLES, *SECTIONS}


@dataclass
class Element:
    doc: Document
    path: PathKey
    raw: Any

    @property
    def location(self) -> Location:
        return self.doc.locate(self.path)


def merge(
    docs: list[Document], errors: list[PolicyError]
) -> tuple[dict[str, dict[str, Element]], dict[str, Element]]:
    sections: dict[str, dict[str, Element]] = {s: {} for s in SECTIONS}
    singles: dict[str, Element] = {}
    versions = 0
    for doc in docs:
        if not isinstance(doc.data, dict):
            errors.append(PolicyError(doc.locate(()), "a policy file is a mapping of sections"))
            continue
        for key, value in doc.data.items():
            here = doc.locate((str(key),))
            if key == "version":
                versions += 1
                if value != 1 or isinstance(value, bool):
                    errors.append(PolicyError(here, f"unsupported policy version {value!r}: use 1"))
            elif key in SINGLES:
                if key in singles:
                    first = singles[key].location
                    message = f"{key!r} is defined twice: here and at {first}"
                    errors.append(PolicyError(here, message))
                else:
                    singles[key] = Element(doc, (key,), value)
            elif key in SECTIONS:
                merge_section(doc, key, value, sections[key], errors)
            else:
                known = ", ".join(sorted(TOP_LEVEL))
                hint = did_you_mean(str(key), TOP_LEVEL)
                errors.append(PolicyError(here, f"unknown section {key!r}{hint} (known: {known})"))
    if docs and versions == 0:
        errors.append(PolicyError(Location(docs[0].file, 1), "missing 'version: 1'"))
    return sections, singles


def merge_section(
    doc: Document, section: str, value: Any, into: dict[str, Element], errors: list[PolicyError]
) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        errors.append(
            PolicyError(doc.locate((section,)), f"'{section}' must be a mapping of names")
        )
        return
    for name, body in value.items():
        element = Element(doc, (section, str(name)), body)
        if str(name) in into:
            first = into[str(name)].location
            kind = section.rstrip("s")
            errors.append(
                PolicyError(
                    element.location, f"{kind} {name!r} is defined twice: here and at {first}"
                )
            )
            continue
        into[str(name)] = element


def locator(el: Element) -> Callable[[PathKey], Location]:
    return lambda path: el.doc.locate((*el.path, *path))


def expand_element(
    el: Element,
    env: Mapping[str, str],
    errors: list[PolicyError],
    deferred: set[PathKey] | None = None,
) -> Element:
    sub = Document(el.doc.file, el.raw, dict(el.doc.lines_under(el.path)))
    sub.lines.setdefault((), el.doc.lines.get(el.path, 1))
    unread: set[PathKey] | None = set() if deferred is not None else None
    expanded = Element(el.doc, el.path, expand(sub, env, errors, unread))
    if deferred is not None and unread:
        deferred.update((*el.path, *p) for p in unread)
    return expanded


def locate_path(
    sections: Mapping[str, Mapping[str, Element]], singles: Mapping[str, Element], path: PathKey
) -> Location:
    """Where a path into the merged policy was written."""
    if str(path[0]) in singles:
        return singles[str(path[0])].doc.locate(path)
    el = sections[str(path[0])][str(path[1])]
    return el.doc.locate(path)


def validate_all(
    model: type[M], elements: Mapping[str, Element], errors: list[PolicyError]
) -> dict[str, M]:
    return {
        name: spec
        for name, el in elements.items()
        if (spec := validate(model, el, errors)) is not None
    }


def validate(
    model: type[M], el: Element | None, errors: list[PolicyError], also: Iterable[str] = ()
) -> M | None:
    """``also``: keys valid beside the model's at its top (a target's common keys, beside its
    connector's), offered as suggestions for an unknown one."""
    if el is None:
        return None
    raw = el.raw if el.raw is not None else {}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        failed = [tuple(err["loc"]) for err in exc.errors()]
        for err, loc in zip(exc.errors(), failed, strict=True):
            known = known_keys(model, loc[:-1]) | (set(also) if len(loc) == 1 else set())
            errors.append(pydantic_error(el, loc, err["msg"], err["type"], known))
    # The element without what failed, so that the checks after this stage (references,
    # grammar) still run on the rest of it; the errors above keep the policy refused.
    try:
        return model.model_validate(_without(raw, failed))
    except ValidationError:
        return None


def _without(raw: Any, paths: Iterable[PathKey]) -> Any:
    """A copy of ``raw`` without the values at ``paths``."""
    copy = _copy(raw)
    # Deepest and last first, so that removing one never shifts another's index.
    for path in sorted(paths, key=lambda p: (len(p), [str(x) for x in p]), reverse=True):
        node = copy
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node.pop(path[-1], None)
        elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
            del node[path[-1]]
    return copy


def _copy(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {k: _copy(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_copy(v) for v in raw]
    return raw


def pydantic_error(
    el: Element, loc: PathKey, msg: str, kind: str, known: Iterable[str] = ()
) -> PolicyError:
    where = el.doc.locate((*el.path, *loc))
    field = ".".join(str(p) for p in loc)
    if kind == "extra_forbidden":
        return PolicyError(where, f"unknown key {field!r}{did_you_mean(str(loc[-1]), known)}")
    if kind == "missing":
        return PolicyError(where, f"missing required key {field!r}")
    msg = msg.removeprefix("Value error, ")
    return PolicyError(where, f"{field}: {msg}" if field else msg)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``name``, if one is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def known_keys(model: type[BaseModel], prefix: PathKey) -> set[str]:
    """The keys of the model found at ``prefix`` inside ``model`` (list indexes and the
    names of a mapping's entries are passed through)."""
    current: type[BaseModel] | None = model
    for part in prefix:
        if current is None:
            return set()
        field = current.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is not None:
            current = _model_in(field.annotation)
    return set(current.model_fields) if current is not None else set()


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
