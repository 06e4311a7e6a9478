"""The PostgreSQL entitlement grammar and role-name rules, with no server involved.

``lockstep validate`` runs offline, and a converged target must re-plan to nothing: so the
canonical text produced here from a policy and the text the connector renders from the
catalogs go through the same ``Entitlement.__str__``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from lockstep.connectors.base import GrammarError

# PostgreSQL silently truncates longer identifiers, so a longer name would never read back.
MAX_NAME_BYTES = 63
# CREATE ROLE refuses these whatever the quoting.
RESERVED_ROLE_NAMES = frozenset({"public", "none"})


class Kind(StrEnum):
    ROLE = "role"
    TABLE = "table"
    SCHEMA = "schema"
    DATABASE = "database"


PRIVILEGES: dict[Kind, tuple[str, ...]] = {
    Kind.TABLE: ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"),
    Kind.SCHEMA: ("USAGE", "CREATE"),
    Kind.DATABASE: ("CONNECT", "CREATE", "TEMPORARY"),
}
_OBJECT_KINDS = {kind.value: kind for kind in PRIVILEGES}
_ALIASES = {"TEMP": "TEMPORARY"}
# How many dotted parts name an object of each kind.
_NAME_PARTS = {Kind.TABLE: 2, Kind.SCHEMA: 1, Kind.DATABASE: 1}

ACCEPTED_FORMS = (
    "accepted forms: 'role:NAME' (membership), 'PRIV on table SCHEMA.TABLE' "
    "(PRIV one of SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER), "
    "'PRIV on schema NAME' (USAGE, CREATE), 'PRIV on database NAME' "
    "(CONNECT, CREATE, TEMPORARY); one privilege per entitlement"
)

_ROLE_PREFIX = "role:"
_SHAPE = re.compile(r"(?P<priv>\S+)\s+(?P<on>\S+)\s+(?P<kind>\S+)\s+(?P<object>\S.*)", re.DOTALL)
_BARE_CANONICAL = re.compile(r"[a-z_][a-z0-9_$]*")
# As PostgreSQL's scanner: any non-ASCII character may appear in an unquoted identifier.
_BARE = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_DOT = re.compile(r"\s*\.\s*")
# PostgreSQL folds only ASCII letters of unquoted identifiers in UTF-8 databases.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class Entitlement:
    """One parsed entitlement. ``names`` are exact identifiers: (role,), (schema, table),
    (schema,) or (database,). ``privilege`` is None for a role membership."""

    kind: Kind
    privilege: str | None
    names: tuple[str, ...]

    def __str__(self) -> str:
        if self.kind is Kind.ROLE:
            return _ROLE_PREFIX + self.names[0]
        rendered = ".".join(quote_ident(n) for n in self.names)
        return f"{self.privilege} on {self.kind} {rendered}"


def quote_ident(name: str) -> str:
    """Bare when PostgreSQL would read it back unchanged, else double-quoted."""
    if _BARE_CANONICAL.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def check_name(name: str, what: str) -> None:
    """What every role or object name must satisfy to be stored as written."""
    if not name:
        raise GrammarError(f"{what} cannot be empty")
    if "\x00" in name:
        raise GrammarError(f"{what} cannot contain a NUL byte")
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise GrammarError(
            f"{what} {name!r} is {size} bytes in UTF-8; PostgreSQL keeps at most "
            f"{MAX_NAME_BYTES} and would silently truncate it"
        )


def check_account(name: str) -> None:
    check_name(name, "an account name")
    if name.startswith("pg_"):
        raise GrammarError(f"account name {name!r}: names starting with 'pg_' are reserved")
    if name in RESERVED_ROLE_NAMES:
        raise GrammarError(f"account name {name!r} is reserved by PostgreSQL")


def parse(text: str) -> Entitlement:
    if text[: len(_ROLE_PREFIX)].lower() == _ROLE_PREFIX:
        return _parse_role(text[len(_ROLE_PREFIX) :])
    return _parse_privilege(text.strip())


def parse_entitlement(text: str) -> str:
    return str(parse(text))


def _parse_role(name: str) -> Entitlement:
    # The name is taken verbatim: it is an exact role name, not SQL.
    check_name(name, f"the role name in {_ROLE_PREFIX + name!r}")
    if name in RESERVED_ROLE_NAMES:
        raise GrammarError(f"role:{name} is not a role one can be a member of")
    return Entitlement(Kind.ROLE, None, (name,))


def _parse_privilege(text: str) -> Entitlement:
    if not text:
        raise GrammarError(f"an entitlement cannot be empty; {ACCEPTED_FORMS}")
    if re.match(r"[A-Za-z]+\s*,", text):
        raise GrammarError(f"{text!r}: one privilege per entitlement; {ACCEPTED_FORMS}")
    if re.match(r"all\b", text, re.IGNORECASE):
        raise GrammarError(
            f"{text!r}: ALL is not accepted, list each privilege as its own entitlement; "
            f"{ACCEPTED_FORMS}"
        )
    shape = _SHAPE.fullmatch(text)
    if shape is None or shape["on"].lower() != "on":
        raise GrammarError(f"cannot read {text!r}; {ACCEPTED_FORMS}")
    kind = _kind(shape["kind"], text)
    privilege = _privilege(shape["priv"], kind, text)
    names = _identifiers(shape["object"], text)
    if len(names) != _NAME_PARTS[kind]:
        expected = "SCHEMA.TABLE" if kind is Kind.TABLE else "one unqualified NAME"
        raise GrammarError(f"{text!r}: a {kind} is named {expected}")
    return Entitlement(kind, privilege, names)


def _kind(word: str, text: str) -> Kind:
    kind = _OBJECT_KINDS.get(word.lower())
    if kind is None:
        raise GrammarError(
            f"{text!r}: unknown object type {word!r} (accepted: table, schema, database); "
            f"{ACCEPTED_FORMS}"
        )
    return kind


def _privilege(word: str, kind: Kind, text: str) -> str:
    upper = word.upper()
    privilege = _ALIASES.get(upper, upper) if kind is Kind.DATABASE else upper
    accepted = PRIVILEGES[kind]
    if privilege not in accepted:
        raise GrammarError(
            f"{text!r}: {word!r} is not a privilege on a {kind} "
            f"(accepted on {kind}: {', '.join(accepted)})"
        )
    return privilege


def _identifiers(source: str, text: str) -> tuple[str, ...]:
    """A dotted list of bare (ASCII-folded) or double-quoted identifiers."""
    names: list[str] = []
    pos = 0
    while True:
        name, pos = _identifier(source, pos, text)
        check_name(name, "an identifier")
        names.append(name)
        if pos == len(source):
            return tuple(names)
        dot = _DOT.match(source, pos)
        if dot is None:
            raise GrammarError(f"{text!r}: unexpected {source[pos:]!r} after a name")
        pos = dot.end()


def _identifier(source: str, pos: int, text: str) -> tuple[str, int]:
    quoted = _QUOTED.match(source, pos)
    if quoted is not None:
        if not quoted[1]:
            raise GrammarError(f'{text!r}: "" is not a name')
        return quoted[1].replace('""', '"'), quoted.end()
    if source.startswith('"', pos):
        raise GrammarError(f"{text!r}: unterminated double quote")
    bare = _BARE.match(source, pos)
    if bare is None:
        raise GrammarError(
            f"{text!r}: expected a name at {source[pos:]!r} "
            '(double-quote names with other characters, "" for a quote)'
        )
    return bare[0].translate(_ASCII_LOWER), bare.end()
