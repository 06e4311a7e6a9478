"""The rows of the PostgreSQL catalog queries (``catalog.ACCOUNTS`` and ``catalog.GRANTS``) as
a snapshot: pure, so that what a read reports is tested with literal rows.

Which roles are in scope is decided by the queries themselves (``catalog.IN_SCOPE``, shared
with the usage query): on a server holding tens of thousands of roles, only the rows of the
accounts in scope travel. A row without a value the snapshot needs fails the whole read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lockstep.connectors.base import MalformedRead
from lockstep.connectors.postgres import grammar
from lockstep.model import Account, Snapshot


def transform(
    target: str, accounts: Iterable[Sequence[Any]], grants: Iterable[Sequence[Any]]
) -> Snapshot:
    """``accounts``: (rolname, rolcanlogin, past its VALID UNTIL, VALID UNTIL or None for
    never, open sessions, why it is privileged or None). ``grants``: (rolname, kind,
    privilege or None for a membership, schema or None, object name)."""
    held = _entitlements(target, grants)
    found: dict[str, Account] = {}
    for row in accounts:
        name, can_login, expired, valid_until, sessions, privileged = _row(
            target, row, "role", (0, 1, 2, 4), width=6
        )
        # NOLOGIN stops new logins, and so does a VALID UNTIL that has passed.
        enabled = bool(can_login) and not expired
        found[name] = Account(
            name, frozenset(held[name]), enabled, int(sessions), valid_until, privileged
        )
    return Snapshot(target, found)


def _entitlements(target: str, rows: Iterable[Sequence[Any]]) -> defaultdict[str, set[str]]:
    held: defaultdict[str, set[str]] = defaultdict(set)
    # Many accounts hold the same few grants: render each distinct one once.
    rendered: dict[tuple[Any, ...], str | None] = {}
    for row in rows:
        account, *grant = _row(target, row, "grant", (0, 1, 4))
        key = tuple(grant)
        if key not in rendered:
            rendered[key] = render(*key)
        text = rendered[key]
        if text is not None:
            held[account].add(text)
    return held


def render(kind: str, privilege: str | None, namespace: str | None, name: str) -> str | None:
    """A catalog row as the grammar writes it, so a converged target re-plans to nothing;
    None for what the grammar cannot express."""
    parsed = grammar.Kind(kind)
    if parsed is grammar.Kind.ROLE:
        return str(grammar.Entitlement(parsed, None, (name,)))
    # Privileges newer than the grammar (PostgreSQL 17's MAINTAIN) cannot be expressed.
    if privilege not in grammar.PRIVILEGES[parsed]:
        return None
    names = (str(namespace), name) if parsed is grammar.Kind.TABLE else (name,)
    return str(grammar.Entitlement(parsed, privilege, names))


def _row(
    target: str, row: Sequence[Any], what: str, needed: tuple[int, ...], width: int = 5
) -> Sequence[Any]:
    """``row`` when it has ``width`` columns and a value in each of ``needed``."""
    if len(row) != width or any(row[i] is None for i in needed):
        raise MalformedRead(f"target {target}: a {what} row without a value the read needs")
    return row


# A heap tuple's limit: the page less its header and one item pointer (MaxHeapTupleSize).
_PAGE_OVERHEAD = 32
# An ACL item is 12 bytes before compression; pglz shrinks runs of similar items, so the
# cost of the next one is taken from the ACL's own average, never below this.
_MIN_ITEM_BYTES = 4
_MARGIN = 0.99  # compression varies: warn a little before the page is full


def wanted_objects(entitlements: Iterable[str]) -> dict[str, grammar.Entitlement]:
    """The entitlements whose objects a read checks, parsed (the policy's are canonical)."""
    return {text: grammar.parse(text) for text in sorted(entitlements)}


def objects(
    wanted: Mapping[str, grammar.Entitlement], rows: Iterable[Sequence[Any]]
) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """``rows``: of ``catalog.OBJECTS`` (kind, schema, name, row size or 0 when it exists
    and None when it does not, bytes per ACL item, block size). What is missing, and for
    tables the grantees their ACL has room for."""
    found: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {
        (str(r[0]), str(r[1] or ""), str(r[2])): (r[3], r[4], r[5]) for r in rows
    }
    unknown: dict[str, str] = {}
    room: dict[str, tuple[str, int]] = {}
    for text, e in wanted.items():
        size, per_item, block = found.get(_key(e), (None, None, None))
        what = _object(e)
        if size is None:
            unknown[text] = f"no {what} on this target"
        elif e.kind is grammar.Kind.TABLE:
            limit = (int(block) - _PAGE_OVERHEAD) * _MARGIN
            cost = max(float(per_item or 12), _MIN_ITEM_BYTES)
            room[text] = (what, max(int((limit - int(size)) // cost), 0))
    return unknown, room


def object_params(wanted: Mapping[str, grammar.Entitlement]) -> dict[str, list[str]]:
    keys = sorted({_key(e) for e in wanted.values()})
    return {
        "kinds": [k[0] for k in keys],
        "nss": [k[1] for k in keys],
        "names": [k[2] for k in keys],
    }


def _key(e: grammar.Entitlement) -> tuple[str, str, str]:
    if e.kind is grammar.Kind.TABLE:
        return (str(e.kind), e.names[0], e.names[1])
    return (str(e.kind), "", e.names[0])


def _object(e: grammar.Entitlement) -> str:
    return f"{e.kind} " + ".".join(grammar.quote_ident(n) for n in e.names)
