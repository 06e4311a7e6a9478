"""Redis ACL users as lockstep accounts (redis-py, Redis 7.0 or later).

An account is an ACL user; ``default`` and the admin lockstep connects as are never managed.
An entitlement is one ACL rule: a key pattern (``~p``, ``%R~p``, ``%W~p``), a channel pattern
(``&p``) or a command rule (``+cmd``, ``+cmd|sub``, ``+@category``, ``-cmd``, ``-@category``),
written the way Redis renders it (``%RW~p`` is ``~p``, commands in lower case).

Entitlements form a set, but Redis applies rules in order, so lockstep always writes a user's
whole set in one ``ACL SETUSER`` (atomic: all or nothing) that first resets keys, channels,
commands and selectors (never the passwords or the on/off flag), then applies the rules from
general to specific: key and channel patterns (``*`` last, as Redis requires), ``+@all``,
categories, commands, subcommands, and at each level grants before denials. So a denial wins
over a grant of the same breadth, and a specific rule over a general one.

Redis 7.0 does not keep the rules it is given: ``ACL LIST`` shows a description computed from
the resulting permissions (``+@hash +@read`` reads back as ``+@read +hset +hdel ...``), from
which the set cannot be recovered. lockstep therefore records each set it writes in the hash
``lockstep:acl-rules`` of the admin URL's database, and reports a recorded set only when
applying it to a throw-away user, inside one MULTI/EXEC that nobody else can observe, yields
exactly the permissions the real user has. Otherwise it reports the rules as Redis renders
them, checked the same way. The record only ever chooses between equivalent spellings, so a
lost or forged record cannot make lockstep report access that is not enforced. (Redis 7.2 and
later keep rules as given; the same check covers them, including hand-made orderings.)

A user whose rules no set reproduces (a key pattern that is not UTF-8, or on Redis 7.2+ a
hand-made ordering such as ``-get +@read``) is reported with its expressible rules plus one
``unexpressible ACL rules: ...`` entitlement that no policy can hold: it shows as excess and is
never taken for "in sync". Revoking it rewrites the user
from its expressible rules; other changes to that user are refused until then, rather than
silently dropping what lockstep cannot express. Selectors ``(...)`` set outside lockstep read
back as one opaque entitlement each: they are kept when other rules change and can be revoked,
but not granted.

Every ACL change is saved with ``ACL SAVE`` when the server keeps its users in an ACL file, so
a restart cannot bring back what lockstep removed. A server that defines users in redis.conf
instead loses runtime ACL changes on restart (lockstep does not rewrite its configuration):
the next read then shows the drift, and the next apply repairs it.

Sessions also offer the optional capabilities (see ``connectors.base``), each in its own
module: use sampled from ``CLIENT LIST`` and ``ACL LOG`` and a change token over ``ACL LIST``
(``observe``), zero-downtime rotation with two passwords (``credentials``), one
ACL user per lease, whose expiry lockstep enforces because Redis cannot (``leases``), and
batches of changes pipelined and read back together (``batches``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import ClassVar
from urllib.parse import urlsplit

import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lockstep.connectors.base import (
    ActionFailed,
    AppliesBatches,
    Credential,
    GrammarError,
    HoldsTwoCredentials,
    IssuesLeases,
    ObservesUsage,
    ProbeResult,
    ProbesInParallel,
    Scope,
    SecretValue,
    TargetUnreachable,
    WatchesChanges,
)
from lockstep.connectors.redis import transform
from lockstep.connectors.redis.acl import (
    MARKER_PREFIX,
    RESET_PERMISSIONS,
    RULES_KEY,
    SCRATCH_PREFIX,
    AclUser,
    apply_order,
    canonical_entitlement,
    check_account,
    parse_record,
    reproduces,
    user_from_line,
    user_from_reply,
)
from lockstep.connectors.redis.admin import (
    call,
    guard,
    parse_redis_url,
    probe_options,
    scrub,
)
from lockstep.connectors.redis.batches import RedisBatches
from lockstep.connectors.redis.credentials import RedisCredentials
from lockstep.connectors.redis.leases import LEASES_KEY, RedisLeases
from lockstep.connectors.redis.observe import RedisObserver
from lockstep.connectors.redis.paths import RedisPaths
from lockstep.model import Account, Op, Snapshot, Target
from lockstep.policy.hosts import is_loopback
from lockstep.secret import Secret

__all__ = [
    "LEASES_KEY",
    "MARKER_PREFIX",
    "RULES_KEY",
    "RedisConnectorType",
    "RedisSession",
    "RedisSettings",
    "canonical_entitlement",
    "check_account",
]

# Every operation is verified by reading back, and reading applies rule sets to a throw-away
# user (hence ACL SETUSER and DELUSER) and reads lockstep's record of them.
_READ = (
    "+ping", "+acl|list", "+acl|getuser", "+client|list", "+hmget", "+multi", "+exec",
    "+acl|setuser", "+acl|deluser", "+command|list", "+acl|cat", f"~{RULES_KEY}",
)  # fmt: skip
_RECORD = ("+hset", "+hdel")
_SAVE = ("+acl|save",)


# ---------------------------------------------------------------- session


class RedisSession(RedisObserver, RedisCredentials, RedisLeases, RedisPaths, RedisBatches):
    """One target's ACL users; the optional capabilities come from the mixins."""

    # ------------------------------------------------------------ reading

    granted: frozenset[str] = frozenset()  # the policy's entitlements here (Scope.entitlements)

    def read(self) -> Snapshot:
        lines = self._command("ACL LIST", "ACL", "LIST", failure=TargetUnreachable)
        users = transform.in_scope(map(user_from_line, lines), self._excluded)
        snapshot = self._snapshot(users)
        if not any(rule[:1] in "+-" for rule in self.granted):
            return snapshot
        with guard("COMMAND LIST", TargetUnreachable):
            # Not through call(): redis-py's COMMAND callback cannot parse every reply.
            commands = [str(c) for c in self._client.command_list()]
        categories = self._command("ACL CAT", "ACL", "CAT", failure=TargetUnreachable)
        unknown = transform.unknown_rules(self.granted, commands, categories)
        return replace(snapshot, unknown=unknown)

    def read_account(self, account: str) -> Account | None:
        reply = self._command(
            f"ACL GETUSER {account!r}", "ACL", "GETUSER", account, failure=TargetUnreachable
        )
        if reply is None:
            return None
        return self._snapshot([user_from_reply(account, reply)]).accounts.get(account)

    def dryrun(self, account: str, *command: str) -> bool:
        """Whether Redis would let ``account`` run ``command`` now (ACL DRYRUN), without
        running it: the proof of an entitlement's effect."""
        reply = self._command(f"ACL DRYRUN {account!r}", "ACL", "DRYRUN", account, *command)
        return bool(reply == "OK")

    def _snapshot(self, users: Sequence[AclUser]) -> Snapshot:
        checks = transform.rule_checks(users, self._records([u.name for u in users]))
        verdicts = self._equivalent(checks)
        client_list = self._command("CLIENT LIST", "CLIENT", "LIST", failure=TargetUnreachable)
        return transform.transform(self._target, users, checks, verdicts, str(client_list))

    def _equivalent(self, checks: Sequence[transform.Check]) -> list[bool | None]:
        # One transaction: the throw-away user never exists outside it, and every user is
        # compared with the state it has at that same moment.
        scratch = SCRATCH_PREFIX + secrets.token_hex(8)
        pipe = self._client.pipeline(transaction=True)
        for name, candidate in checks:
            call(pipe, "ACL", "GETUSER", name)
            call(pipe, "ACL", "SETUSER", scratch, *RESET_PERMISSIONS, *apply_order(candidate))
            call(pipe, "ACL", "GETUSER", scratch)
            call(pipe, "ACL", "DELUSER", scratch)
        with guard("ACL rule check", TargetUnreachable):
            replies = pipe.execute(raise_on_error=False)
        return [reproduces(replies[i], replies[i + 2]) for i in range(0, len(replies), 4)]

    def _records(self, names: Sequence[str]) -> dict[str, frozenset[str]]:
        if not names:
            return {}
        with guard(f"HMGET {RULES_KEY}", TargetUnreachable):
            try:
                raw = call(self._client, "HMGET", RULES_KEY, *names)
            except redis.exceptions.ResponseError:
                # Only a key of another type gets here. The check does not need the
                # records, so read on without them rather than fail the whole target.
                return {}
        parsed = {name: parse_record(text) for name, text in zip(names, raw, strict=True)}
        return {name: rules for name, rules in parsed.items() if rules is not None}

    # ------------------------------------------------------------ changing

    @contextmanager
    def _changing(self, account: str) -> Iterator[None]:
        """A change to a managed account, saved to the ACL file once made."""
        self._managed(account)
        yield
        self._save_acl()

    def create_account(self, account: str, secret: Secret) -> Credential:
        with self._changing(account):
            # reset gives the clean -@all baseline; resetchannels too, because reset grants
            # every channel on servers that run with acl-pubsub-default allchannels.
            self._setuser(
                account, "reset", "resetchannels", "on", ">" + secret.reveal(), secret=secret
            )
            self._record(account, [])
        return Credential(account, secret)

    def grant(self, account: str, entitlement: str) -> None:
        with self._changing(account):
            try:
                granted = canonical_entitlement(entitlement)
            except GrammarError as exc:
                raise ActionFailed(str(exc)) from None
            self._change_rules(account, add=frozenset({granted}))

    def revoke(self, account: str, entitlement: str) -> None:
        with self._changing(account):
            self._change_rules(account, remove=frozenset({entitlement}))

    def suspend_account(self, account: str, secret: Secret) -> Credential:
        with self._changing(account):
            # A password nobody holds, so restoring needs a fresh credential; off refuses new
            # logins but leaves open connections alone, hence the kill and the check.
            self._set_password(account, secret, "off")
            self._kill(account)
            remaining = self._sessions()[account]
            if remaining:
                raise ActionFailed(f"{remaining} connection(s) of {account!r} survived CLIENT KILL")
        return Credential(account, secret)

    def restore_account(self, account: str, secret: Secret) -> Credential:
        with self._changing(account):
            self._set_password(account, secret, "on")
        return Credential(account, secret)

    def rotate_credential(self, account: str, secret: Secret) -> Credential:
        # Replaces every password at once: the engine rotates with add_credential and
        # retire_credential instead whenever it knows the credential to retire.
        with self._changing(account):
            self._set_password(account, secret)
        return Credential(account, secret)

    def end_sessions(self, account: str) -> None:
        # Nothing in the ACL changes: nothing to save.
        self._managed(account)
        self._kill(account)

    def delete_account(self, account: str) -> None:
        with self._changing(account):
            # DELUSER also drops the user's connections.
            self._command(f"ACL DELUSER {account!r}", "ACL", "DELUSER", account)
            self._record(account, [])

    def _change_rules(
        self, name: str, add: frozenset[str] = frozenset(), remove: frozenset[str] = frozenset()
    ) -> None:
        account = self.read_account(name)
        if account is None:
            raise ActionFailed(f"no ACL user {name!r} on {self._target}")
        kept = account.entitlements - remove
        if any(t.startswith(MARKER_PREFIX) for t in kept):
            raise ActionFailed(
                f"{name!r} holds ACL rules lockstep cannot express; revoke the "
                f"'{MARKER_PREFIX.strip()}' entitlement (or fix the user by hand) first"
            )
        rules = apply_order(kept | add)
        # Rewrites keys, channels, commands and selectors only: passwords and on/off stay.
        self._setuser(name, *RESET_PERMISSIONS, *rules)
        self._record(name, rules)

    def _set_password(self, name: str, secret: Secret, *flags: str) -> None:
        # ACL SETUSER creates a missing user, which a rotation must never do.
        if self.read_account(name) is None:
            raise ActionFailed(f"no ACL user {name!r} on {self._target}")
        self._setuser(name, *flags, "resetpass", ">" + secret.reveal(), secret=secret)

    # ------------------------------------------------------------ probing

    def probe(self, credential: Credential) -> ProbeResult:
        options = probe_options(self._url, credential)
        connection = options.pop("connection_class", redis.Connection)(**options)
        try:
            connection.connect()
        except redis.exceptions.AuthenticationError:
            # Redis answers WRONGPASS both for a wrong password and for a disabled user.
            return ProbeResult.REFUSED
        except redis.exceptions.RedisError as exc:
            raise TargetUnreachable(
                f"probe of {credential.username!r}: {scrub(exc, credential.secret)}"
            ) from None
        finally:
            connection.disconnect()
        return ProbeResult.ACCEPTED


# ---------------------------------------------------------------- connector type


class RedisSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: SecretValue = Field(
        description="The admin connection (${VAR} or file:PATH): redis://USER:PASSWORD@HOST:PORT/DB"
    )
    # Key patterns where workloads keep credentials: whoever may read them is on a path to
    # those credentials (``lockstep paths``).
    secret_keys: list[str] = Field(
        default_factory=list,
        description="Key patterns where credentials are kept (for lockstep paths)",
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: Secret) -> Secret:
        # The message must not echo the value: it holds the admin password.
        if not value.reveal().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must be a redis://, rediss:// or unix:// URL")
        return value


class RedisConnectorType:
    name: ClassVar[str] = "redis"
    permissions: ClassVar[Mapping[Op, tuple[str, ...]]] = {
        Op.CREATE_ACCOUNT: (*_READ, *_RECORD, *_SAVE),
        Op.RESTORE_ACCOUNT: (*_READ, *_SAVE),
        Op.GRANT: (*_READ, *_RECORD, *_SAVE),
        Op.REVOKE: (*_READ, *_RECORD, *_SAVE),
        Op.ROTATE_CREDENTIAL: (*_READ, *_SAVE),
        Op.SUSPEND_ACCOUNT: (*_READ, "+client|kill", *_SAVE),
        Op.END_SESSIONS: (*_READ, "+client|kill"),
        Op.DELETE_ACCOUNT: (*_READ, *_RECORD, *_SAVE),
    }
    paths_permissions: ClassVar[tuple[str, ...]] = (
        "+acl|list",
        "+acl|dryrun",
        "+config|get (optional: enable-module-command, enable-debug-command)",
    )
    read_permissions: ClassVar[tuple[str, ...]] = _READ
    # What each optional capability of the sessions needs.
    capability_permissions: ClassVar[Mapping[type, tuple[str, ...]]] = {
        ObservesUsage: ("+client|list", "+acl|log"),
        WatchesChanges: ("+acl|list", "+hgetall", f"~{RULES_KEY}"),
        HoldsTwoCredentials: ("+acl|getuser", "+acl|setuser", *_SAVE),
        IssuesLeases: (*_READ, *_RECORD, *_SAVE, "+acl|users", f"~{LEASES_KEY}"),
        # The operations' own permissions, pipelined.
        AppliesBatches: (),
        ProbesInParallel: (),
    }

    def settings_model(self) -> type[BaseModel]:
        return RedisSettings

    def check_account(self, name: str) -> None:
        check_account(name)

    def parse_entitlement(self, text: str) -> str:
        return canonical_entitlement(text)

    def default_excluded(self, settings: BaseModel) -> frozenset[str]:
        url = RedisSettings.model_validate(settings).url.reveal()
        return frozenset({"default", parse_redis_url(url).get("username") or "default"})

    def insecure_transport(self, settings: BaseModel) -> str | None:
        url = RedisSettings.model_validate(settings).url.reveal()
        if not url.startswith("redis://"):
            return None  # rediss:// is TLS; unix:// never leaves the machine
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return None
        if is_loopback(host):
            return None
        return (
            f"redis:// to {host} sends the admin password and every ACL rule in clear: "
            "use rediss://"
        )

    def propagation_window(self, settings: BaseModel) -> float:
        # The server checks the ACL at every login: a removed password fails the next one.
        return 0.0

    def open(self, target: Target, scope: Scope) -> RedisSession:
        settings = RedisSettings.model_validate(target.settings)
        excluded = scope.excluded | self.default_excluded(settings)
        session = RedisSession(
            target.name, settings.url.reveal(), excluded, tuple(settings.secret_keys)
        )
        session.granted = frozenset(scope.entitlements)
        return session
