"""Redis's escalation facts and the edges they make. Pure.

What each user may run is asked of the server itself (``ACL DRYRUN``), so these edges are
``proven`` where Redis answers:

- ``ACL SETUSER`` resets any user: its password, its rules, on or off.
- ``CONFIG GET`` reads ``requirepass``, the ``default`` user's password.
- ``CONFIG SET`` (``dir``, ``dbfilename``), ``MODULE LOAD`` and ``DEBUG`` act as the server's
  OS user or run code in the server, where the server enables them
  (``enable-module-command``, ``enable-debug-command``): control of the server.
- ``GET`` on the keys the target's ``secret_keys`` name reads the credentials kept there.
- ``default`` with ``nopass`` is anyone who can connect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from lockstep.paths.graph import (
    Confidence,
    Edge,
    Holder,
    Node,
    NodeKind,
    NotAssessed,
    Principals,
)

# The checks asked of ACL DRYRUN for every user: what each would let it do.
CHECKS: dict[str, tuple[str, ...]] = {
    "acl": ("ACL", "SETUSER", "lockstep-dryrun-probe"),
    "config_get": ("CONFIG", "GET", "requirepass"),
    "config_set": ("CONFIG", "SET", "dir", "/"),
    "module": ("MODULE", "LOAD", "/lockstep-dryrun-probe.so"),
    "debug": ("DEBUG", "SLEEP", "0"),
}
# Rules that let a user run ACL SETUSER: when a managed user holds exactly one of them,
# revoking it removes the edge.
_ACL_RULES = frozenset({"+@all", "+@admin", "+@dangerous", "+@slow", "+acl", "+acl|setuser"})
DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class RedisUser:
    name: str
    on: bool
    nopass: bool
    rules: tuple[str, ...]
    allowed: frozenset[str]  # the CHECKS ACL DRYRUN answered OK to
    reads: frozenset[str]  # the secret key patterns GET answered OK to


@dataclass(frozen=True, slots=True)
class RedisFacts:
    target: str
    admin: str
    users: tuple[RedisUser, ...]
    secret_keys: tuple[str, ...] = ()
    # "yes", "local" or "no", as CONFIG GET says; None when the admin may not read them.
    module_command: str | None = None
    debug_command: str | None = None

    def account_node(self, account: str) -> Node:
        return Node(NodeKind.ACCOUNT, self.target, account)

    def entitlement_node(self, entitlement: str) -> Node | None:
        return None  # an ACL rule is no group: nobody else holds "its" privileges

    def principals(self) -> Principals:
        return Principals(
            logins=frozenset(self.account_node(u.name) for u in self.users if u.on),
            admins=frozenset({self.account_node(self.admin)}),
        )

    def not_assessed(self) -> tuple[NotAssessed, ...]:
        return tuple(
            NotAssessed(self.target, f"{what} (CONFIG GET {setting})", "the admin may not read it")
            for what, setting, value in (
                ("MODULE LOAD", "enable-module-command", self.module_command),
                ("DEBUG", "enable-debug-command", self.debug_command),
            )
            if value is None
        )

    def edges(self) -> Iterator[Edge]:
        acl = Node(NodeKind.CAPABILITY, self.target, "ACL SETUSER")
        server = Node(NodeKind.CAPABILITY, self.target, "control of the server")
        names = {u.name for u in self.users}
        for user in self.users:
            node = self.account_node(user.name)
            if "acl" in user.allowed:
                yield Edge(
                    node,
                    acl,
                    "redis.acl_setuser",
                    "ACL DRYRUN: may run ACL SETUSER",
                    Confidence.PROVEN,
                    holder=self._holder(user, _ACL_RULES),
                )
            if "config_get" in user.allowed and DEFAULT in names and self._on(DEFAULT):
                yield Edge(
                    node,
                    self.account_node(DEFAULT),
                    "redis.config_get",
                    "ACL DRYRUN: may run CONFIG GET requirepass, the default user's password",
                    Confidence.PROVEN,
                )
            yield from self._server_control(user, node, server)
            for pattern in sorted(user.reads):
                yield Edge(
                    node,
                    Node(NodeKind.SECRET, self.target, f"keys {pattern}"),
                    "redis.reads_secret_keys",
                    f"ACL DRYRUN: may GET {pattern}",
                    Confidence.PROVEN,
                    holder=self._holder(user, self._key_rules(user, pattern)),
                )
            if user.name == DEFAULT and user.on and user.nopass:
                yield Edge(
                    Node(NodeKind.ANYONE, self.target, "anyone who can connect"),
                    node,
                    "redis.nopass_default",
                    "ACL LIST: default is on with nopass",
                    Confidence.PROVEN,
                )
        for user in self.users:
            yield Edge(
                acl,
                self.account_node(user.name),
                "redis.acl_resets",
                f"ACL SETUSER may reset {user.name}'s passwords",
                Confidence.PROVEN,
            )
        yield Edge(
            server,
            acl,
            "redis.server_controls_acl",
            "the server's OS user and code loaded into it can rewrite its users",
        )

    def _server_control(self, user: RedisUser, node: Node, server: Node) -> Iterator[Edge]:
        if "config_set" in user.allowed:
            yield Edge(
                node,
                server,
                "redis.config_set",
                "ACL DRYRUN: may run CONFIG SET (dir, dbfilename: files written as the "
                "server's OS user)",
                Confidence.PROVEN,
            )
        for check, setting, value in (
            ("module", "enable-module-command", self.module_command),
            ("debug", "enable-debug-command", self.debug_command),
        ):
            if check not in user.allowed or value == "no":
                continue
            command = "MODULE LOAD" if check == "module" else "DEBUG"
            if value is None:
                yield Edge(
                    node,
                    server,
                    f"redis.{check}",
                    f"ACL DRYRUN: may run {command}",
                    Confidence.CONDITIONAL,
                    conditions=(f"{setting} is not 'no' (the admin may not read it)",),
                )
            else:
                yield Edge(
                    node,
                    server,
                    f"redis.{check}",
                    f"ACL DRYRUN: may run {command}; {setting} is {value!r}",
                    Confidence.PROVEN,
                )

    def _on(self, name: str) -> bool:
        return any(u.on for u in self.users if u.name == name)

    @staticmethod
    def _key_rules(user: RedisUser, pattern: str) -> frozenset[str]:
        return frozenset(
            rule
            for rule in user.rules
            if rule in ("allkeys", "~*")
            or (
                rule.startswith(("~", "%R~", "%RW~"))
                and fnmatchcase(pattern, rule.split("~", 1)[1])
            )
        )

    @staticmethod
    def _holder(user: RedisUser, candidates: frozenset[str]) -> Holder | None:
        held = [r for r in user.rules if r in candidates]
        return Holder(user.name, held[0]) if len(held) == 1 else None
