"""Redis's answers as a snapshot: pure, so that what a read reports is tested with literal
replies.

A read is ``ACL LIST`` (or ``ACL GETUSER`` for one user), lockstep's rule records
(``HMGET``), one check per candidate rule set (does applying it to a throw-away user yield
exactly the user's permissions? see the connector's docstring) and ``CLIENT LIST``. Which
candidates to check is decided here, and so is what the checks' verdicts make of each user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from lockstep.connectors.redis.acl import (
    AclUser,
    candidates,
    count_sessions,
    printable,
    unexpressible,
)
from lockstep.model import Account, Snapshot

Check = tuple[str, frozenset[str]]  # (user, candidate rule set)


def in_scope(users: Iterable[AclUser], excluded: frozenset[str]) -> list[AclUser]:
    """The users a read reports: all but ``default``, the admin and the policy's exclusions
    (all of them in ``excluded``)."""
    return [user for user in users if user.name not in excluded]


def privileged(user: AclUser) -> str | None:
    """Why a user holds the keys to the whole server: every command on every key (what the
    admin itself needs, and what a stand-in for it would hold)."""
    if "+@all" in user.rules and "~*" in user.rules:
        return "full access (+@all ~*)"
    return None


def rule_checks(users: Iterable[AclUser], recorded: Mapping[str, frozenset[str]]) -> list[Check]:
    """The candidate rule sets to check, for each user in order of preference: the set
    lockstep recorded writing (when it is not how Redis renders the rules), then the rules
    as Redis renders them (when they can be written back)."""
    return [(user.name, c) for user in users for c in candidates(user, recorded.get(user.name))]


def transform(
    target: str,
    users: Sequence[AclUser],
    checks: Sequence[Check],
    verdicts: Sequence[bool | None],
    client_list: str,
) -> Snapshot:
    """``verdicts``: one per check, whether the candidate reproduces the user (None: the user
    is gone since it was listed, and is left out). A user no candidate reproduces is reported
    with its expressible rules and the marker entitlement of ``unexpressible``, which no
    policy can hold. Names that are not UTF-8 are escaped, never hidden."""
    matched: dict[str, frozenset[str]] = {}
    gone: set[str] = set()
    for (name, candidate), verdict in zip(checks, verdicts, strict=True):
        if verdict is None:
            gone.add(name)
        elif verdict:
            matched.setdefault(name, candidate)
    sessions = count_sessions(client_list)
    accounts = {
        printable(user.name): Account(
            printable(user.name),
            matched[user.name] if user.name in matched else unexpressible(user),
            user.enabled,
            sessions[user.name],
            privileged=privileged(user),
        )
        for user in users
        if user.name not in gone
    }
    return Snapshot(target, accounts)


def unknown_rules(
    granted: Iterable[str], commands: Iterable[str], categories: Iterable[str]
) -> dict[str, str]:
    """The command rules of ``granted`` (``+cmd``, ``-cmd|sub``, ``+@cat``) naming a command,
    subcommand or category this server does not have (``COMMAND LIST``, ``ACL CAT``):
    Redis would refuse the whole ACL SETUSER for one of them."""
    known_commands = {c.lower() for c in commands}
    # Commands with subcommands; for the others, Redis 7.0 reads "cmd|arg" as a first-arg rule.
    parents = {c.split("|", 1)[0] for c in known_commands if "|" in c}
    known_categories = {c.lower() for c in categories} | {"all"}
    unknown = {}
    for rule in granted:
        if rule[:1] not in ("+", "-"):
            continue
        name = rule[1:]
        if name.startswith("@"):
            if name[1:] not in known_categories:
                unknown[rule] = f"no ACL category {name} on this server (ACL CAT)"
        elif "|" in name:
            base = name.split("|", 1)[0]
            if base not in known_commands:
                unknown[rule] = f"no command {base} on this server (COMMAND LIST)"
            elif base in parents and name not in known_commands:
                unknown[rule] = f"no subcommand {name} on this server (COMMAND LIST)"
        elif name not in known_commands:
            unknown[rule] = f"no command {name} on this server (COMMAND LIST)"
    return unknown
