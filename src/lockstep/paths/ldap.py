"""An LDAP directory's escalation facts and the edges they make. Pure.

- Whoever the directory's ``olcAccess`` rules let write an account's ``userPassword`` can set
  it, and log in as the account; whoever they let read it has the hash to guess offline.
- Whoever they let write a group's ``member`` can join it (``selfwrite`` too), and so obtains
  what the group grants: to the identities it is an entitlement of, that is their privilege.
- A group's members hold it (read from the directory); a rule ``by group=G`` is theirs.
- The database's rootDN is above the rules.

Rules are evaluated in slapd's first-match order (``ldap_acl``) for every subject that can
bind: anonymous, any bound entry, each entry with a password, each group's members. When the
bind DN may not read ``cn=config`` the rules are not assessed, and said so.
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
from lockstep.paths.ldap_acl import (
    Access,
    AclSyntaxError,
    Dn,
    Entry,
    Rights,
    Subject,
    dn_text,
    parse_rules,
    rights,
)

PASSWORD = "userpassword"  # noqa: S105 - the attribute's name
PEOPLE = frozenset({"person", "organizationalperson", "inetorgperson"})
ANONYMOUS = "anyone (anonymous bind)"
_ASKED = (
    ("w", "ldap.write_password", "may write userPassword: set it, then bind"),
    ("r", "ldap.read_password_hash", "may read the userPassword hash (offline guessing)"),
)
BOUND = "any entry that can bind"


@dataclass(frozen=True, slots=True)
class LdapEntry:
    dn: Dn
    uid: str | None  # the account name, for an entry directly under accounts_dn
    object_classes: frozenset[str]  # lower-case


@dataclass(frozen=True, slots=True)
class LdapGroup:
    dn: Dn
    cn: str | None  # the entitlement's name, for a group directly under groups_dn
    members: frozenset[Dn]


@dataclass(frozen=True, slots=True)
class LdapFacts:
    target: str
    bind_dn: Dn
    entries: tuple[LdapEntry, ...]  # the entries that can bind (they have a password)
    groups: tuple[LdapGroup, ...]
    rules: tuple[str, ...] | None  # olcAccess values, database then frontend; None: unread
    root_dn: Dn | None = None
    unread_because: str = ""

    # ------------------------------------------------------------ nodes

    def account_node(self, account: str) -> Node:
        return Node(NodeKind.ACCOUNT, self.target, account)

    def entitlement_node(self, entitlement: str) -> Node | None:
        kind, _, cn = entitlement.partition(":")
        return Node(NodeKind.GROUP, self.target, f"group:{cn}") if kind == "group" else None

    def _entry_node(self, dn: Dn) -> Node:
        entry = self._by_dn().get(dn)
        if entry is not None and entry.uid is not None:
            return self.account_node(entry.uid)
        return self.account_node(dn_text(dn))

    def _group_node(self, group: LdapGroup) -> Node:
        name = f"group:{group.cn}" if group.cn is not None else dn_text(group.dn)
        return Node(NodeKind.GROUP, self.target, name)

    def _by_dn(self) -> dict[Dn, LdapEntry]:
        return {e.dn: e for e in self.entries}

    def principals(self) -> Principals:
        roots = [self.root_dn] if self.root_dn else []
        return Principals(
            logins=frozenset(self._entry_node(d) for d in [*(e.dn for e in self.entries), *roots]),
            people=frozenset(
                self._entry_node(e.dn)
                for e in self.entries
                if e.uid is None and e.object_classes & PEOPLE
            ),
            admins=frozenset({self._entry_node(self.bind_dn)}),
        )

    def _parsed(self) -> tuple[tuple[Access, ...] | None, str]:
        if self.rules is None:
            return None, self.unread_because or "the bind DN may not read cn=config"
        try:
            return parse_rules(self.rules), ""
        except AclSyntaxError as exc:
            return None, str(exc)

    def not_assessed(self) -> tuple[NotAssessed, ...]:
        rules, why = self._parsed()
        return () if rules is not None else (NotAssessed(self.target, "olcAccess rules", why),)

    # ------------------------------------------------------------ edges

    def edges(self) -> Iterator[Edge]:
        by_dn = self._by_dn()
        for group in self.groups:
            node = self._group_node(group)
            for member in sorted(group.members):
                entry = by_dn.get(member)
                if entry is None:
                    continue
                yield Edge(
                    self._entry_node(member),
                    node,
                    "ldap.member",
                    f"member of {dn_text(group.dn)}",
                    Confidence.PROVEN,
                    holder=Holder(entry.uid, f"group:{group.cn}")
                    if entry.uid is not None and group.cn is not None
                    else None,
                    obtains=False,
                )
        if self.root_dn is not None:
            root = self._entry_node(self.root_dn)
            for target in [*(self._entry_node(e.dn) for e in self.entries if e.uid)] + [
                self._group_node(g) for g in self.groups
            ]:
                yield Edge(
                    root,
                    target,
                    "ldap.root_dn",
                    "the database's rootDN: above olcAccess",
                    Confidence.PROVEN,
                )
        rules, _ = self._parsed()
        if rules is not None:
            yield from self._rule_edges(rules)

    def _subjects(self) -> list[tuple[Subject, Node]]:
        memberships: dict[Dn, set[Dn]] = {}
        for group in self.groups:
            for member in group.members:
                memberships.setdefault(member, set()).add(group.dn)
        subjects = [
            (Subject("entry", e.dn, frozenset(memberships.get(e.dn, ()))), self._entry_node(e.dn))
            for e in self.entries
        ]
        subjects += [(Subject("group", g.dn), self._group_node(g)) for g in self.groups]
        return subjects

    def _rule_edges(self, rules: tuple[Access, ...]) -> Iterator[Edge]:
        anyone = [
            (Subject("anonymous"), Node(NodeKind.ANYONE, self.target, ANONYMOUS)),
            (Subject("bound"), Node(NodeKind.ANYONE, self.target, BOUND)),
        ]
        subjects = self._subjects()
        asks: list[tuple[Entry, str, str, Node, str, str]] = []
        for account in (e for e in self.entries if e.uid is not None):
            entry = Entry(account.dn, account.object_classes)
            node = self.account_node(str(account.uid))
            asks += [(entry, PASSWORD, letter, node, rule, what) for letter, rule, what in _ASKED]
        for group in self.groups:
            entry = Entry(group.dn, frozenset({"groupofnames"}), group.members)
            node, name = self._group_node(group), dn_text(group.dn)
            asks += [
                (entry, "member", "w", node, "ldap.write_member", f"may write member of {name}"),
                (entry, "member", "W", node, "ldap.write_member", f"may join {name} (selfwrite)"),
            ]
        for entry, attribute, letter, node, rule, what in asks:
            yield from self._grants(
                rules, (entry, attribute, letter), (node, rule, what), anyone, subjects
            )

    def _grants(
        self,
        rules: tuple[Access, ...],
        asked: tuple[Entry, str, str],
        made: tuple[Node, str, str],
        anyone: list[tuple[Subject, Node]],
        subjects: list[tuple[Subject, Node]],
    ) -> Iterator[Edge]:
        """Edges to ``made`` (node, rule, evidence) from every subject the rules give the
        privilege ``letter`` on ``attribute`` of ``entry``; subjects covered by "any entry
        that can bind" are not repeated."""
        entry, attribute, letter = asked
        target, rule, what = made
        general: Rights | None = None
        for subject, node in anyone:
            found = rights(rules, entry, attribute, subject)
            if found.allows(letter):
                yield self._edge(node, target, rule, what, found)
                if subject.kind == "bound":
                    general = found
        for subject, node in subjects:
            if subject.kind == "entry" and subject.dn == entry.dn:
                continue  # an account changing its own password is not an escalation
            found = rights(rules, entry, attribute, subject)
            if found.allows(letter) and general is None:
                yield self._edge(node, target, rule, what, found)

    def _edge(self, source: Node, target: Node, rule: str, what: str, found: Rights) -> Edge:
        return Edge(
            source,
            target,
            rule,
            f"{what}: olcAccess {found.rule}",
            Confidence.CONDITIONAL if found.conditions else Confidence.INFERRED,
            conditions=found.conditions,
        )
