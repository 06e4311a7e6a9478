"""PostgreSQL's escalation facts and the edges they make. Pure.

- Membership (``pg_auth_members``): a member holds the role's privileges when it inherits
  them (PostgreSQL 16: the grant's ``inherit`` option; before: the member's ``rolinherit``)
  or may ``SET ROLE`` to it (16: the ``set`` option; before: always). ``ADMIN OPTION`` lets
  the member grant the role to anyone, itself included: that obtains it.
- A superuser can become, or reset the password of, any role.
- ``CREATEROLE`` before PostgreSQL 16 may alter any role that is not a superuser (so reset
  its password) and grant membership in it; from 16 only roles it holds with ADMIN OPTION,
  which the membership edges already say.
- ``pg_execute_server_program`` (``COPY ... TO PROGRAM``) and ``pg_write_server_files``
  act as the server's OS user, which owns the data directory: as good as a superuser.
  ``pg_read_server_files`` reads the data directory's table files, bypassing their ACLs.
- Tables that hold secrets (the target's ``secret_tables``) are read by whoever has SELECT,
  by ``pg_read_all_data``, and by their owner.
- A SECURITY DEFINER function owned by a privileged role runs as its owner for whoever may
  execute it (PUBLIC unless revoked).
- The owner of a table another role writes to can attach a trigger, which runs as the
  writer: it acts with the writer's privileges the next time the writer writes.

Each fact carries what the server's own check (``pg_has_role``, ``has_table_privilege``,
``has_function_privilege``) answered, so an edge the server confirms is ``proven``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lockstep.paths.graph import (
    Confidence,
    Edge,
    Holder,
    Node,
    NodeKind,
    NotAssessed,
    Principals,
)

PG16 = 160000
SUPERUSER_LIKE = ("pg_execute_server_program", "pg_write_server_files")
READS_FILES = "pg_read_server_files"
READS_ALL = "pg_read_all_data"
PUBLIC = ""  # the grantee PUBLIC


@dataclass(frozen=True, slots=True)
class PgRole:
    name: str
    login: bool
    superuser: bool = False
    createrole: bool = False
    bypassrls: bool = False


@dataclass(frozen=True, slots=True)
class PgMembership:
    member: str
    role: str
    admin: bool
    inherit: bool  # as in effect on this server version
    set: bool
    member_confirmed: bool  # pg_has_role(member, role, 'MEMBER')
    admin_confirmed: bool  # pg_has_role(member, role, 'MEMBER WITH ADMIN OPTION')


@dataclass(frozen=True, slots=True)
class PgGrantee:
    role: str  # PUBLIC for PUBLIC
    confirmed: bool  # the server's has_*_privilege for that role


@dataclass(frozen=True, slots=True)
class PgSecretTable:
    name: str  # schema.table as written in the settings
    owner: str
    readers: tuple[PgGrantee, ...]


@dataclass(frozen=True, slots=True)
class PgDefiner:
    function: str  # its signature
    owner: str
    executors: tuple[PgGrantee, ...]


@dataclass(frozen=True, slots=True)
class PgWrittenBy:
    """Tables ``owner`` owns that ``writer`` may insert into, update or delete from."""

    owner: str
    writer: str
    tables: int
    example: str


@dataclass(frozen=True, slots=True)
class PostgresFacts:
    target: str
    version: int  # server_version_num
    admin: str
    roles: tuple[PgRole, ...]
    memberships: tuple[PgMembership, ...] = ()
    secret_tables: tuple[PgSecretTable, ...] = ()
    definers: tuple[PgDefiner, ...] = ()
    written: tuple[PgWrittenBy, ...] = ()
    missing_tables: tuple[str, ...] = ()  # secret_tables the server does not have

    def account_node(self, account: str) -> Node:
        return Node(NodeKind.ACCOUNT, self.target, account)

    def entitlement_node(self, entitlement: str) -> Node | None:
        kind, _, name = entitlement.partition(":")
        return self.account_node(name) if kind == "role" and name else None

    def principals(self) -> Principals:
        return Principals(
            logins=frozenset(self.account_node(r.name) for r in self.roles if r.login),
            admins=frozenset({self.account_node(self.admin)}),
        )

    def not_assessed(self) -> tuple[NotAssessed, ...]:
        return tuple(
            NotAssessed(self.target, f"secret table {name}", "no such table on the server")
            for name in self.missing_tables
        )

    def edges(self) -> Iterator[Edge]:
        yield from self._memberships()
        yield from self._role_attributes()
        yield from self._secret_tables()
        yield from self._definers()
        yield from self._triggers()

    # ------------------------------------------------------------ rules

    def _node(self, role: str) -> Node:
        if role == PUBLIC:
            return Node(NodeKind.ANYONE, self.target, "any role that can log in")
        return self.account_node(role)

    def _hub(self, name: str) -> Node:
        return Node(NodeKind.CAPABILITY, self.target, name)

    def _memberships(self) -> Iterator[Edge]:
        for m in self.memberships:
            holder = Holder(m.member, f"role:{m.role}")
            if m.inherit or m.set:
                how = ", ".join(
                    w
                    for w, on in (("inherits its privileges", m.inherit), ("SET ROLE", m.set))
                    if on
                )
                yield Edge(
                    self.account_node(m.member),
                    self.account_node(m.role),
                    "pg.member",
                    f"member of {m.role} ({how}); pg_auth_members"
                    + ("; pg_has_role confirms" if m.member_confirmed else ""),
                    _sure(m.member_confirmed),
                    holder=holder,
                    obtains=False,
                )
            if m.admin:
                yield Edge(
                    self.account_node(m.member),
                    self.account_node(m.role),
                    "pg.admin_option",
                    f"holds {m.role} WITH ADMIN OPTION: may grant it to itself"
                    + ("; pg_has_role confirms" if m.admin_confirmed else ""),
                    _sure(m.admin_confirmed),
                    holder=holder,
                )

    def _role_attributes(self) -> Iterator[Edge]:
        superusers = self._hub("any superuser")
        createrole = self._hub("CREATEROLE (PostgreSQL before 16)")
        has_createrole = False
        for role in self.roles:
            if role.superuser:
                yield Edge(
                    self.account_node(role.name),
                    superusers,
                    "pg.superuser",
                    "rolsuper: a superuser",
                    Confidence.PROVEN,
                )
            elif role.createrole and self.version < PG16:
                has_createrole = True
                yield Edge(
                    self.account_node(role.name),
                    createrole,
                    "pg.createrole",
                    f"rolcreaterole on PostgreSQL {self.version // 10000}: may alter and grant "
                    "any role that is not a superuser",
                    Confidence.PROVEN,
                )
        for name in SUPERUSER_LIKE:
            what = "COPY TO PROGRAM" if "program" in name else "writing server files"
            yield Edge(
                self.account_node(name),
                superusers,
                "pg.server_os_user",
                f"{name}: {what} acts as the server's OS user, which owns the data directory",
            )
        for role in self.roles:
            if role.name.startswith("pg_"):
                continue
            yield Edge(
                superusers,
                self.account_node(role.name),
                "pg.superuser_alters",
                f"a superuser may SET ROLE {role.name} or reset its password",
                Confidence.PROVEN,
            )
            if has_createrole and not role.superuser:
                yield Edge(
                    createrole,
                    self.account_node(role.name),
                    "pg.createrole_alters",
                    f"CREATEROLE may reset the password of {role.name} or grant it",
                    Confidence.PROVEN,
                )

    def _secret_tables(self) -> Iterator[Edge]:
        for table in self.secret_tables:
            store = Node(NodeKind.SECRET, self.target, f"table {table.name}")
            yield Edge(
                self.account_node(table.owner),
                store,
                "pg.owner_reads",
                f"owns {table.name}",
                Confidence.PROVEN,
            )
            for reader in table.readers:
                via = "pg_read_all_data" if reader.role == READS_ALL else "SELECT"
                yield Edge(
                    self._node(reader.role),
                    store,
                    "pg.reads_secret_table",
                    f"{via} on {table.name}"
                    + ("; has_table_privilege confirms" if reader.confirmed else ""),
                    _sure(reader.confirmed),
                    holder=Holder(reader.role, f"SELECT on table {table.name}")
                    if reader.role not in (PUBLIC, READS_ALL)
                    else None,
                )
            yield Edge(
                self.account_node(READS_FILES),
                store,
                "pg.reads_table_files",
                f"pg_read_server_files reads {table.name}'s files in the data directory, "
                "bypassing its ACL",
            )

    def _definers(self) -> Iterator[Edge]:
        privileged = self._privileged()
        for fn in self.definers:
            if fn.owner not in privileged:
                continue
            for executor in fn.executors:
                yield Edge(
                    self._node(executor.role),
                    self.account_node(fn.owner),
                    "pg.security_definer",
                    f"may execute {fn.function}, SECURITY DEFINER owned by {fn.owner}: it runs "
                    "with the owner's privileges (what it does depends on its body)"
                    + ("; has_function_privilege confirms" if executor.confirmed else ""),
                )

    def _triggers(self) -> Iterator[Edge]:
        inheritors = self._inheritors()
        for w in self.written:
            # The trigger runs as whoever writes: the grantee, or a role inheriting its grant.
            for writer in sorted({w.writer, *inheritors.get(w.writer, ())} - {w.owner}):
                yield Edge(
                    self.account_node(w.owner),
                    self.account_node(writer),
                    "pg.owner_trigger",
                    f"owns {w.tables} table(s) {writer} may write to (e.g. {w.example}): a "
                    f"trigger added there runs as {writer} when it next writes",
                    Confidence.CONDITIONAL,
                    conditions=(f"{writer} writes to {w.example} (or another table of {w.owner})",),
                )

    def _inheritors(self) -> dict[str, set[str]]:
        """For each role written to, every role that inherits its privileges."""
        wanted = {w.writer for w in self.written}
        if not wanted:
            return {}
        members: dict[str, list[str]] = {}
        for m in self.memberships:
            if m.inherit:
                members.setdefault(m.role, []).append(m.member)
        found: dict[str, set[str]] = {}
        for role in wanted:
            seen: set[str] = set()
            stack = list(members.get(role, ()))
            while stack:
                member = stack.pop()
                if member not in seen:
                    seen.add(member)
                    stack.extend(members.get(member, ()))
            found[role] = seen
        return found

    def _privileged(self) -> set[str]:
        """Roles whose privileges go beyond ordinary grants."""
        strong = {r.name for r in self.roles if r.superuser or r.createrole or r.bypassrls}
        special = {*SUPERUSER_LIKE, READS_FILES, READS_ALL, "pg_write_all_data"}
        strong |= {m.member for m in self.memberships if m.role in special}
        strong |= {t.owner for t in self.secret_tables}
        return strong


def _sure(confirmed: bool) -> Confidence:
    return Confidence.PROVEN if confirmed else Confidence.INFERRED
