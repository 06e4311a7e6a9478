"""OpenLDAP access rules (``olcAccess``, slapd.access(5)), parsed and evaluated. Pure.

    to <what> [by <who> [<access>] [<control>]]+

The rules of the database come first, then the frontend's; the first ``to`` whose ``<what>``
matches the entry and attribute is used, and within it the first ``by`` whose ``<who>``
matches the subject decides, unless its control is ``continue`` (the next ``by`` clauses are
tried too, privileges accumulating) or ``break`` (the next matching ``to`` is tried). When no
``by`` matches, access is none; when no ``to`` matches, none; with no rules at all slapd lets
everyone read everything. The database's rootDN is never subject to the rules.

What lockstep cannot decide (a filter beyond ``objectClass``, ``peername``, ``ssf``, sets) is
assumed to match and reported as a condition, never dropped.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

Dn = tuple[str, ...]  # normalized RDNs, leaf first

# Privilege letters of slapd.access(5): disclose, auth (x), compare, search, read, write,
# add (a), delete (z), manage; W is lockstep's for selfwrite (only the subject's own DN as a
# value: for a group's member attribute, joining it).
_LEVELS = {
    "none": "",
    "disclose": "d",
    "auth": "dx",
    "compare": "dxc",
    "search": "dxcs",
    "read": "dxcsr",
    "write": "dxcsrwaz",
    "add": "dxcsra",
    "delete": "dxcsrz",
    "manage": "dxcsrwazm",
}
_CONTROLS = ("stop", "continue", "break")
_UNDECIDED_WHO = ("peername", "sockname", "domain", "sockurl", "set", "aci", "ssf")


class AclSyntaxError(ValueError):
    """An olcAccess value lockstep cannot read."""


def norm_dn(text: str) -> Dn:
    """A DN compared as slapd compares the usual attributes: types lower-case, values folded
    (case and insignificant spaces), RDNs split on unescaped commas."""
    rdns, current, escaped = [], [], False
    for c in text:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            current.append(c)
            escaped = True
        elif c in ",;":
            rdns.append("".join(current))
            current = []
        else:
            current.append(c)
    if current or rdns:
        rdns.append("".join(current))
    return tuple(_norm_rdn(r) for r in rdns if r.strip())


def _norm_rdn(rdn: str) -> str:
    avas = []
    for ava in rdn.split("+"):
        kind, _, value = ava.partition("=")
        avas.append(f"{kind.strip().lower()}={re.sub(' +', ' ', value.strip()).casefold()}")
    return "+".join(sorted(avas))


def dn_text(dn: Dn) -> str:
    return ",".join(dn)


@dataclass(frozen=True, slots=True)
class What:
    style: str | None  # None: any entry; exact, regex, one, subtree, children
    dn: Dn = ()
    pattern: str = ""
    filter: str | None = None
    attrs: tuple[str, ...] | None = None  # lower-case; None: every attribute


@dataclass(frozen=True, slots=True)
class Who:
    kind: str  # *, anonymous, users, self, dn, group, dnattr
    style: str = "exact"
    dn: Dn = ()
    pattern: str = ""
    undecided: tuple[str, ...] = ()  # qualifiers lockstep cannot decide


@dataclass(frozen=True, slots=True)
class By:
    who: Who
    op: str  # "=" set, "+" add, "-" remove
    privileges: frozenset[str]
    control: str


@dataclass(frozen=True, slots=True)
class Access:
    index: int
    what: What
    bys: tuple[By, ...]
    text: str


def parse_rules(values: Iterable[str]) -> tuple[Access, ...]:
    """olcAccess values in their ``{n}`` order."""
    parsed = [parse_access(v) for v in values]
    return tuple(sorted(parsed, key=lambda a: a.index))


def parse_access(text: str) -> Access:
    index = 0
    body = text.strip()
    numbered = re.match(r"\{(\d+)\}", body)
    if numbered:
        index, body = int(numbered.group(1)), body[numbered.end() :]
    try:
        tokens = shlex.split(body, posix=True)
    except ValueError as exc:
        raise AclSyntaxError(f"olcAccess {text!r}: {exc}") from None
    if not tokens or tokens[0].lower() != "to":
        raise AclSyntaxError(f"olcAccess {text!r}: does not start with 'to'")
    split = [i for i, t in enumerate(tokens) if t.lower() == "by"]
    what_tokens = tokens[1 : split[0] if split else len(tokens)]
    bounds = [*split, len(tokens)]
    bys = tuple(_by(tokens[a + 1 : b], text) for a, b in pairwise(bounds))
    return Access(index, _what(what_tokens, text), bys, text)


def _what(tokens: Sequence[str], text: str) -> What:
    style: str | None = None
    dn: Dn = ()
    pattern = ""
    filter_: str | None = None
    attrs: tuple[str, ...] | None = None
    for token in tokens:
        key, eq, value = token.partition("=")
        key = key.lower()
        if token == "*":  # noqa: S105 - every entry
            continue
        if not eq:
            raise AclSyntaxError(f"olcAccess {text!r}: cannot read {token!r}")
        if key == "dn" or key.startswith("dn."):
            style = _dn_style(key)
            pattern, dn = value, norm_dn(value) if style != "regex" else ()
        elif key == "filter":
            filter_ = value
        elif key in ("attrs", "attr"):
            attrs = tuple(a.strip().lower() for a in value.split(",") if a.strip())
        elif key == "val" or key.startswith("val"):
            continue  # narrows to certain values: the attribute still matches
        else:
            raise AclSyntaxError(f"olcAccess {text!r}: unknown <what> {key!r}")
    return What(style, dn, pattern, filter_, attrs)


def _dn_style(key: str) -> str:
    style = key.partition(".")[2] or "exact"
    return {"base": "exact", "baseobject": "exact", "onelevel": "one", "sub": "subtree"}.get(
        style, style
    )


def _by(tokens: Sequence[str], text: str) -> By:
    control = "stop"
    if tokens and tokens[-1].lower() in _CONTROLS:
        control, tokens = tokens[-1].lower(), tokens[:-1]
    if not tokens:
        raise AclSyntaxError(f"olcAccess {text!r}: an empty 'by' clause")
    access = _access(tokens[-1])
    if access is None:
        op, privileges, who_tokens = "=", frozenset(_LEVELS["read"]), tokens  # default: read
    else:
        op, privileges = access
        who_tokens = tokens[:-1]
    return By(_who(who_tokens, text), op, privileges, control)


def _access(token: str) -> tuple[str, frozenset[str]] | None:
    word = token.lower()
    if word[:1] in "=+-" and re.fullmatch(r"[=+-][0dxcsrwazm]*", word):
        return word[0], frozenset(word[1:].replace("0", ""))
    self_only = False
    for prefix in ("realself", "self"):
        if word.startswith(prefix) and word[len(prefix) :] in _LEVELS:
            word, self_only = word[len(prefix) :], True
            break
    if word not in _LEVELS:
        return None
    letters = set(_LEVELS[word])
    if self_only and "w" in letters:
        letters -= {"w", "a", "z"}
        letters.add("W")
    return "=", frozenset(letters)


def _who(tokens: Sequence[str], text: str) -> Who:
    if not tokens:
        raise AclSyntaxError(f"olcAccess {text!r}: a 'by' clause names nobody")
    main = Who("*")
    undecided: list[str] = []
    for token in tokens:
        key, eq, value = token.partition("=")
        key = key.lower()
        if token in ("*", "anonymous", "users", "self") or token.lower().startswith("self."):
            main = Who(token.lower().split(".")[0])
        elif key == "dn" or key.startswith("dn."):
            style = _dn_style(key)
            main = Who("dn", style, norm_dn(value) if style != "regex" else (), value)
        elif key.startswith("group"):
            main = Who("group", "exact", norm_dn(value), value)
        elif key == "dnattr":
            main = Who("dnattr", pattern=value.lower())
        elif eq and key.split(".")[0].split("_")[-1] in _UNDECIDED_WHO:
            undecided.append(token)
        else:
            raise AclSyntaxError(f"olcAccess {text!r}: unknown <who> {token!r}")
    return Who(main.kind, main.style, main.dn, main.pattern, tuple(undecided))


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class Entry:
    dn: Dn
    object_classes: frozenset[str] = frozenset()  # lower-case
    members: frozenset[Dn] = frozenset()  # for dnattr=member


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks: ``anonymous``; ``bound`` (an entry that no clause names specifically);
    ``entry`` (the entry at ``dn``, a member of ``groups``); or ``group`` (the members of the
    group at ``dn``)."""

    kind: str
    dn: Dn = ()
    groups: frozenset[Dn] = frozenset()


@dataclass(frozen=True, slots=True)
class Rights:
    privileges: frozenset[str]
    conditions: tuple[str, ...]
    rule: str  # the rule that decided, for evidence

    def allows(self, letter: str) -> bool:
        return letter in self.privileges


def rights(rules: Sequence[Access], entry: Entry, attribute: str, subject: Subject) -> Rights:
    if not rules:
        return Rights(frozenset(_LEVELS["read"]), (), "no olcAccess: slapd's default read")
    held: set[str] = set()
    conditions: list[str] = []
    for access in rules:
        matched, why = _what_matches(access.what, entry, attribute.lower())
        if not matched:
            continue
        conditions.extend(why)
        decided, broke = False, False
        for by in access.bys:
            found, who_why = _who_matches(by.who, subject, entry)
            if not found:
                continue
            conditions.extend(who_why)
            held = _apply(held, by)
            if by.control == "stop":
                decided = True
                break
            if by.control == "break":
                broke = True
                break
        if decided or not broke:
            return Rights(frozenset(held), tuple(conditions), access.text)
    return Rights(frozenset(held), tuple(conditions), "no olcAccess rule matched: none")


def _apply(held: set[str], by: By) -> set[str]:
    if by.op == "=":
        return set(by.privileges)
    if by.op == "+":
        return held | by.privileges
    return held - by.privileges


def _dn_in(style: str, dn: Dn, base: Dn, pattern: str) -> bool:
    if style == "regex":
        return re.fullmatch(pattern, dn_text(dn), re.IGNORECASE) is not None
    below = len(dn) - len(base)
    under = below >= 0 and dn[below:] == base
    return {
        "exact": dn == base,
        "one": under and below == 1,
        "subtree": under,
        "children": under and below >= 1,
    }.get(style, False)


def _what_matches(what: What, entry: Entry, attribute: str) -> tuple[bool, list[str]]:
    if what.style is not None and not _dn_in(what.style, entry.dn, what.dn, what.pattern):
        return False, []
    if what.attrs is not None and attribute not in what.attrs:
        return False, []
    if what.filter is None:
        return True, []
    simple = re.fullmatch(r"\(?\s*objectclass\s*=\s*([^()]+?)\s*\)?", what.filter, re.I)
    if simple:
        return simple.group(1).lower() in entry.object_classes or simple.group(1) == "*", []
    return True, [f"filter {what.filter} matches {dn_text(entry.dn)}"]


def _who_matches(who: Who, subject: Subject, entry: Entry) -> tuple[bool, list[str]]:
    found = _who_kind(who, subject, entry)
    if not found:
        return False, []
    return True, [f"the bind meets {' '.join(who.undecided)}"] if who.undecided else []


def _who_kind(who: Who, subject: Subject, entry: Entry) -> bool:
    kind = subject.kind
    if who.kind == "*":
        return True
    if who.kind == "anonymous":
        return kind == "anonymous"
    if who.kind == "users":
        return kind != "anonymous"
    if who.kind == "self":
        return kind == "entry" and subject.dn == entry.dn
    if who.kind == "dn":
        return kind == "entry" and _dn_in(who.style, subject.dn, who.dn, who.pattern)
    if who.kind == "group":
        return (kind == "entry" and who.dn in subject.groups) or (
            kind == "group" and subject.dn == who.dn
        )
    if who.kind == "dnattr":
        return kind == "entry" and who.pattern == "member" and subject.dn in entry.members
    return False
