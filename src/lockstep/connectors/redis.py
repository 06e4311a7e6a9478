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
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, assert_never

import redis
from pydantic import BaseModel, ConfigDict, field_validator
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.connection import parse_url
from redis.retry import Retry

from lockstep.connectors.base import (
    ActionFailed,
    ConnectorError,
    Credential,
    GrammarError,
    ProbeResult,
    Scope,
    Session,
    TargetUnreachable,
)
from lockstep.model import Account, Action, Op, Snapshot, Target
from lockstep.secrets import Secret, redact

RULES_KEY = "lockstep:acl-rules"
MARKER_PREFIX = "unexpressible ACL rules: "
_SCRATCH_PREFIX = "lockstep-scratch-"
_TIMEOUT_S = 10.0

# Every rewrite starts from these, so nothing of the previous rule set survives.
_RESET_PERMISSIONS = ("resetkeys", "resetchannels", "-@all", "clearselectors")
# What ACL LIST shows for a user that holds nothing: not entitlements.
_BASELINE = frozenset({"resetchannels", "-@all"})
# Any other word is taken for a rule, so one a later Redis adds shows up (as unexpressible)
# rather than being ignored.
_FLAGS = frozenset({"on", "off", "nopass", "sanitize-payload", "skip-sanitize-payload"})
_RULE_PREFIXES = ("~", "%", "&", "+", "-")

_ACCOUNT = re.compile(r"[A-Za-z0-9_.:@-]+")
_KEY_RULE = re.compile(r"(~|%R~|%W~|%RW~)(.+)", re.DOTALL)
_CHANNEL_RULE = re.compile(r"&(.+)", re.DOTALL)
_COMMAND_RULE = re.compile(r"[+-](?:@[a-z0-9_.-]+|[a-z0-9_.-]+(?:\|[a-z0-9_.-]+)?)")
_GRAMMAR = (
    "exactly one ACL rule: ~PATTERN, %R~PATTERN, %W~PATTERN, %RW~PATTERN, &PATTERN, "
    "+COMMAND, +COMMAND|SUB, +@CATEGORY, -COMMAND, -COMMAND|SUB or -@CATEGORY"
)

# Every operation is verified by reading back, and reading applies rule sets to a throw-away
# user (hence ACL SETUSER and DELUSER) and reads lockstep's record of them.
_READ = (
    "+ping", "+acl|list", "+acl|getuser", "+client|list", "+hmget", "+multi", "+exec",
    "+acl|setuser", "+acl|deluser", f"~{RULES_KEY}",
)  # fmt: skip
_RECORD = ("+hset", "+hdel")
_SAVE = ("+acl|save",)


# ---------------------------------------------------------------- grammar (no server)


def canonical_entitlement(text: str) -> str:
    """The entitlement as Redis renders it, or GrammarError."""
    if key := _KEY_RULE.fullmatch(text):
        prefix, pattern = key.groups()
        _check_pattern(text, pattern)
        return ("~" if prefix == "%RW~" else prefix) + pattern
    if channel := _CHANNEL_RULE.fullmatch(text):
        _check_pattern(text, channel.group(1))
        return text
    # Lower-casing non-ASCII could turn a look-alike (the Kelvin sign) into a real command.
    rule = text.lower() if text.isascii() else text
    if _COMMAND_RULE.fullmatch(rule):
        if rule == "-@all":
            raise GrammarError("-@all is where every Redis user starts, not an entitlement")
        return rule
    raise GrammarError(f"{text!r} is not {_GRAMMAR}")


def _check_pattern(text: str, pattern: str) -> None:
    # Whitespace or control characters would make the rule ambiguous where rules are written
    # one after another (ACL LIST, ACL files, policy review); quotes break ACL file parsing.
    if any(c.isspace() or not c.isprintable() or c in "\"'" for c in pattern):
        raise GrammarError(
            f"{text!r}: a pattern cannot contain whitespace, control characters or quotes "
            f"(an entitlement is {_GRAMMAR})"
        )


def check_account(name: str) -> None:
    if name == "default":
        raise GrammarError("'default' is Redis's built-in user and is never managed")
    # ASCII only: a look-alike letter would let an account pass for 'default' or the admin.
    if not _ACCOUNT.fullmatch(name):
        raise GrammarError(
            f"Redis account {name!r}: use ASCII letters, digits and _ . : @ - only "
            "(no spaces, quotes or control characters)"
        )


def _is_rule(token: str) -> bool:
    """A permission rule (never a flag or password) that lockstep can report and write back."""
    if _printable(token) != token:
        return False
    if token.startswith("("):
        return token.endswith(")")
    return token.startswith(_RULE_PREFIXES) and not any(c.isspace() for c in token)


def _printable(text: str) -> str:
    """Bytes that are not UTF-8 (decoded exactly, as lone surrogates) escaped as ``\\xff``:
    what leaves the session must be plain text."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _apply_order(rules: Iterable[str]) -> list[str]:
    return sorted(set(rules), key=_rank)


def _rank(rule: str) -> tuple[int, str]:
    """Where a rule goes in a rewrite (see the module docstring for why)."""
    if rule.startswith(("~", "%")):
        return (1 if rule == "~*" else 0, rule)
    if rule.startswith("&"):
        return (3 if rule == "&*" else 2, rule)
    if rule.startswith("("):
        return (10, rule)
    if rule == "+@all":
        return (4, rule)
    breadth = 0 if rule[1:2] == "@" else 2 if "|" in rule else 1
    return (5 + 2 * breadth + rule.startswith("-"), rule)


# ---------------------------------------------------------------- what Redis shows


@dataclass(frozen=True, slots=True)
class _AclUser:
    name: str
    flags: frozenset[str]
    passwords: int
    rules: tuple[str, ...]  # permission rules as rendered, baseline dropped, selectors whole

    @property
    def enabled(self) -> bool:
        # A nopass user is not guarded by any credential lockstep could manage.
        return "on" in self.flags and "nopass" not in self.flags and self.passwords > 0


def _user_from_line(line: str) -> _AclUser:
    """One ``ACL LIST`` line: ``user NAME flags... #hash... rules... (selector)...``."""
    _, name, *words = (w for w in line.split(" ") if w)
    # Only rules are grouped: a user may well be called "(x".
    rest = _merge_selectors(words)
    rules = tuple(w for w in rest if w not in _FLAGS and w not in _BASELINE and w[0] != "#")
    return _AclUser(
        name, frozenset(w for w in rest if w in _FLAGS), sum(w[0] == "#" for w in rest), rules
    )


def _merge_selectors(words: Iterable[str]) -> list[str]:
    # The same grouping Redis uses when it loads an ACL file.
    merged: list[str] = []
    for word in words:
        if merged and merged[-1].startswith("(") and not merged[-1].endswith(")"):
            merged[-1] += " " + word
        else:
            merged.append(word)
    return merged


def _user_from_reply(name: str, reply: Mapping[str, Any]) -> _AclUser:
    """An ``ACL GETUSER`` reply, as the same rules its ``ACL LIST`` line shows."""
    root = [w for w in _selector_words(reply) if w not in _BASELINE]
    selectors = ["(" + " ".join(_selector_words(s)) + ")" for s in reply["selectors"]]
    return _AclUser(name, frozenset(reply["flags"]), len(reply["passwords"]), (*root, *selectors))


def _selector_words(selector: Mapping[str, Any]) -> list[str]:
    # Mirrors how ACL LIST describes a selector: keys, channels, then commands.
    channels = str(selector["channels"]).split()
    channel_words = channels if channels == ["&*"] else ["resetchannels", *channels]
    return [*str(selector["keys"]).split(), *channel_words, *str(selector["commands"]).split()]


def _permissions(reply: Mapping[str, Any]) -> tuple[object, ...]:
    # Pattern order does not change what a user may touch; command order may (Redis 7.2+).
    return (
        frozenset(str(reply["keys"]).split()),
        frozenset(str(reply["channels"]).split()),
        str(reply["commands"]),
        frozenset(" ".join(_selector_words(s)) for s in reply["selectors"]),
    )


def _verdict(real: object, scratch: object) -> bool | None:
    """Whether the candidate set reproduces the user; None when the user is gone."""
    if not isinstance(real, Mapping):
        return None
    return isinstance(scratch, Mapping) and _permissions(real) == _permissions(scratch)


def _candidates(user: _AclUser, recorded: frozenset[str] | None) -> list[frozenset[str]]:
    rendered = frozenset(user.rules)
    options = [recorded] if recorded is not None and recorded != rendered else []
    if all(_is_rule(t) for t in rendered):
        options.append(rendered)
    return options


def _unexpressible(user: _AclUser) -> frozenset[str]:
    described = _printable(" ".join(user.rules))
    return frozenset({*filter(_is_rule, user.rules), MARKER_PREFIX + described})


def _parse_record(text: object) -> frozenset[str] | None:
    # Anyone who may write the key may write anything there: keep only permission rules.
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) and _is_rule(t) for t in value):
        return None
    return frozenset(value)


def _count_sessions(client_list: str) -> Counter[str]:
    return Counter(
        field[len("user=") :]
        for line in client_list.splitlines()
        for field in line.split(" ")
        if field.startswith("user=")
    )


# ---------------------------------------------------------------- connections


def _url(settings: Mapping[str, object]) -> str:
    value = settings.get("url")
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, str):
        return value
    raise ValueError("a redis target needs a url")


def _parse_url(url: str) -> dict[str, Any]:
    parse: Callable[[str], dict[str, Any]] = parse_url  # unannotated in redis-py
    return parse(url)


def _execute(client: redis.Redis | Pipeline, *args: str) -> Any:
    execute: Callable[..., Any] = client.execute_command  # unannotated in redis-py
    return execute(*args)


def _admin_client(url: str) -> redis.Redis:
    options = _parse_url(url)
    # parse_url's options would win over keyword arguments given to from_url, so set ours here.
    options.update(
        protocol=3,
        decode_responses=True,
        # Hand-made names and patterns need not be UTF-8. Decoding them exactly lets rules
        # compare and re-apply byte for byte (an escaped form could equal another pattern);
        # they are escaped only where they leave the session.
        encoding_errors="surrogateescape",
        socket_connect_timeout=_TIMEOUT_S,
        socket_timeout=_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
    )
    return redis.Redis(connection_pool=redis.ConnectionPool(**options))


def _probe_options(url: str, credential: Credential) -> dict[str, Any]:
    options = {
        k: v
        for k, v in _parse_url(url).items()
        # A probe proves authentication only: SELECT or CLIENT SETNAME need permissions a
        # workload may lack, and would turn an accepted login into a failure.
        if k not in {"username", "password", "db", "client_name", "protocol"}
    }
    options.update(
        username=credential.username,
        password=credential.secret.reveal(),
        protocol=2,
        socket_connect_timeout=_TIMEOUT_S,
        socket_timeout=_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    return options


def _scrub(exc: BaseException, secret: Secret | None) -> str:
    text = str(exc)
    if secret is not None:
        text = text.replace(secret.reveal(), "***")
    return redact(text)


@contextmanager
def _guard(
    what: str, failure: type[ConnectorError], secret: Secret | None = None
) -> Iterator[None]:
    """Redis errors become ``failure``, lost connections TargetUnreachable; no secret leaks."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        raise failure(f"redis {what}: {_scrub(exc, secret)}") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise TargetUnreachable(
            f"redis {what}: cannot reach redis: {_scrub(exc, secret)}"
        ) from None


# ---------------------------------------------------------------- session


class RedisSession:
    def __init__(self, target: str, url: str, excluded: frozenset[str]) -> None:
        self._target = target
        self._url = url
        self._excluded = excluded
        self._client = _admin_client(url)
        try:
            self._command("PING", "PING", failure=TargetUnreachable)
        except TargetUnreachable:
            self._client.close()
            raise

    # ------------------------------------------------------------ reading

    def read(self) -> Snapshot:
        lines = self._command("ACL LIST", "ACL", "LIST", failure=TargetUnreachable)
        users = [u for u in map(_user_from_line, lines) if u.name not in self._excluded]
        return Snapshot(self._target, self._accounts(users))

    def read_account(self, account: str) -> Account | None:
        reply = self._command(
            f"ACL GETUSER {account!r}", "ACL", "GETUSER", account, failure=TargetUnreachable
        )
        if reply is None:
            return None
        return self._accounts([_user_from_reply(account, reply)]).get(account)

    def dryrun(self, account: str, *command: str) -> bool:
        """Whether Redis would let ``account`` run ``command`` now (ACL DRYRUN), without
        running it: the proof of an entitlement's effect."""
        reply = self._command(f"ACL DRYRUN {account!r}", "ACL", "DRYRUN", account, *command)
        return bool(reply == "OK")

    def _accounts(self, users: Sequence[_AclUser]) -> dict[str, Account]:
        held = self._entitlements(users)
        sessions = self._sessions()
        return {
            # An escaped name cannot be acted on (Redis says no such user), but is never hidden.
            _printable(u.name): Account(
                _printable(u.name), held[u.name], u.enabled, sessions[u.name]
            )
            for u in users
            if u.name in held
        }

    def _entitlements(self, users: Sequence[_AclUser]) -> dict[str, frozenset[str]]:
        """Each user's rules as a set lockstep can write back; users gone meanwhile omitted."""
        recorded = self._records([u.name for u in users])
        checks = [(u.name, c) for u in users for c in _candidates(u, recorded.get(u.name))]
        matched: dict[str, frozenset[str]] = {}
        gone: set[str] = set()
        for (name, candidate), verdict in zip(checks, self._equivalent(checks), strict=True):
            if verdict is None:
                gone.add(name)
            elif verdict:
                matched.setdefault(name, candidate)
        return {
            u.name: matched[u.name] if u.name in matched else _unexpressible(u)
            for u in users
            if u.name not in gone
        }

    def _equivalent(self, checks: Sequence[tuple[str, frozenset[str]]]) -> list[bool | None]:
        # One transaction: the throw-away user never exists outside it, and every user is
        # compared with the state it has at that same moment.
        scratch = _SCRATCH_PREFIX + secrets.token_hex(8)
        pipe = self._client.pipeline(transaction=True)
        for name, candidate in checks:
            _execute(pipe, "ACL", "GETUSER", name)
            _execute(pipe, "ACL", "SETUSER", scratch, *_RESET_PERMISSIONS, *_apply_order(candidate))
            _execute(pipe, "ACL", "GETUSER", scratch)
            _execute(pipe, "ACL", "DELUSER", scratch)
        with _guard("ACL rule check", TargetUnreachable):
            replies = pipe.execute(raise_on_error=False)
        return [_verdict(replies[i], replies[i + 2]) for i in range(0, len(replies), 4)]

    def _records(self, names: Sequence[str]) -> dict[str, frozenset[str]]:
        if not names:
            return {}
        with _guard(f"HMGET {RULES_KEY}", TargetUnreachable):
            try:
                raw = _execute(self._client, "HMGET", RULES_KEY, *names)
            except redis.exceptions.ResponseError:
                # Only a key of another type gets here. The check does not need the
                # records, so read on without them rather than fail the whole target.
                return {}
        parsed = {name: _parse_record(text) for name, text in zip(names, raw, strict=True)}
        return {name: rules for name, rules in parsed.items() if rules is not None}

    def _sessions(self) -> Counter[str]:
        text = self._command("CLIENT LIST", "CLIENT", "LIST", failure=TargetUnreachable)
        return _count_sessions(str(text))

    # ------------------------------------------------------------ changing

    def execute(self, action: Action, secret: Secret | None) -> Credential | None:
        if action.account in self._excluded:
            raise ActionFailed(f"{action.account!r} is excluded from management on {self._target}")
        credential = self._carry_out(action, secret)
        if action.op is not Op.END_SESSIONS:
            self._save_acl()
        return credential

    def _carry_out(self, action: Action, secret: Secret | None) -> Credential | None:
        name = action.account
        match action.op:
            case Op.CREATE_ACCOUNT:
                return self._create(name, _required(secret, action))
            case Op.GRANT:
                self._change_rules(name, add=frozenset({_granted(action)}))
            case Op.REVOKE:
                self._change_rules(name, remove=frozenset({_entitlement(action)}))
            case Op.SUSPEND_ACCOUNT:
                self._suspend(name, _required(secret, action))
            case Op.RESTORE_ACCOUNT:
                return self._set_password(name, _required(secret, action), "on")
            case Op.ROTATE_CREDENTIAL:
                # Zero-downtime two-password rotation needs the old password, which a
                # session does not know; this one replaces it at once.
                return self._set_password(name, _required(secret, action))
            case Op.END_SESSIONS:
                self._kill(name)
            case Op.DELETE_ACCOUNT:
                # DELUSER also drops the user's connections.
                self._command(f"ACL DELUSER {name!r}", "ACL", "DELUSER", name)
                self._record(name, [])
            case _:
                assert_never(action.op)
        return None

    def _create(self, name: str, secret: Secret) -> Credential:
        # reset gives the clean -@all baseline; resetchannels too, because reset grants every
        # channel on servers that run with acl-pubsub-default allchannels.
        self._setuser(name, "reset", "resetchannels", "on", ">" + secret.reveal(), secret=secret)
        self._record(name, [])
        return Credential(name, secret)

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
        rules = _apply_order(kept | add)
        # Rewrites keys, channels, commands and selectors only: passwords and on/off stay.
        self._setuser(name, *_RESET_PERMISSIONS, *rules)
        self._record(name, rules)

    def _suspend(self, name: str, secret: Secret) -> None:
        # A password nobody holds, so restoring needs a fresh credential; off refuses new
        # logins but leaves open connections alone, hence the kill and the check.
        self._set_password(name, secret, "off")
        self._kill(name)
        remaining = self._sessions()[name]
        if remaining:
            raise ActionFailed(f"{remaining} connection(s) of {name!r} survived CLIENT KILL")

    def _set_password(self, name: str, secret: Secret, *flags: str) -> Credential:
        # ACL SETUSER creates a missing user, which a rotation must never do.
        if self.read_account(name) is None:
            raise ActionFailed(f"no ACL user {name!r} on {self._target}")
        self._setuser(name, *flags, "resetpass", ">" + secret.reveal(), secret=secret)
        return Credential(name, secret)

    def _save_acl(self) -> None:
        # ACL changes live in memory until saved: unsaved, a restart would restore the users
        # (and passwords) of the ACL file.
        try:
            self._command("ACL SAVE", "ACL", "SAVE")
        except ActionFailed as exc:
            if "not configured to use an ACL file" not in str(exc):
                raise

    def _kill(self, name: str) -> None:
        self._command(f"CLIENT KILL USER {name!r}", "CLIENT", "KILL", "USER", name)

    def _setuser(self, name: str, *rules: str, secret: Secret | None = None) -> None:
        self._command(f"ACL SETUSER {name!r}", "ACL", "SETUSER", name, *rules, secret=secret)

    def _record(self, name: str, rules: Sequence[str]) -> None:
        if rules:
            self._command(f"HSET {RULES_KEY}", "HSET", RULES_KEY, name, json.dumps(list(rules)))
        else:
            self._command(f"HDEL {RULES_KEY}", "HDEL", RULES_KEY, name)

    def _command(
        self,
        what: str,
        *args: str,
        failure: type[ConnectorError] = ActionFailed,
        secret: Secret | None = None,
    ) -> Any:
        # Each value is its own argument: Redis never splits it, so names and rules cannot
        # smuggle extra rules in.
        with _guard(what, failure, secret):
            return _execute(self._client, *args)

    # ------------------------------------------------------------ probing

    def probe(self, credential: Credential) -> ProbeResult:
        options = _probe_options(self._url, credential)
        connection = options.pop("connection_class", redis.Connection)(**options)
        try:
            connection.connect()
        except redis.exceptions.AuthenticationError:
            # Redis answers WRONGPASS both for a wrong password and for a disabled user.
            return ProbeResult.REFUSED
        except redis.exceptions.RedisError as exc:
            raise TargetUnreachable(
                f"probe of {credential.username!r}: {_scrub(exc, credential.secret)}"
            ) from None
        finally:
            connection.disconnect()
        return ProbeResult.ACCEPTED

    def close(self) -> None:
        self._client.close()


def _required(secret: Secret | None, action: Action) -> Secret:
    if secret is None:
        raise ActionFailed(f"{action.op} of {action.account!r} needs a generated secret")
    return secret


def _entitlement(action: Action) -> str:
    if action.entitlement is None:
        raise ActionFailed(f"{action.op} of {action.account!r} names no entitlement")
    return action.entitlement


def _granted(action: Action) -> str:
    try:
        return canonical_entitlement(_entitlement(action))
    except GrammarError as exc:
        raise ActionFailed(str(exc)) from None


# ---------------------------------------------------------------- connector type


class RedisSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str  # admin connection, e.g. redis://lockstep:PASSWORD@host:6379/0

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        # The message must not echo the value: it holds the admin password.
        if not value.startswith(("redis://", "rediss://", "unix://")):
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
    propagation_window_s: ClassVar[float] = 0.0

    def settings_model(self) -> type[BaseModel]:
        return RedisSettings

    def secret_fields(self) -> frozenset[str]:
        return frozenset({"url"})

    def check_account(self, name: str) -> None:
        check_account(name)

    def parse_entitlement(self, text: str) -> str:
        return canonical_entitlement(text)

    def default_excluded(self, settings: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({"default", _parse_url(_url(settings)).get("username") or "default"})

    def open(self, target: Target, scope: Scope) -> Session:
        excluded = scope.excluded | self.default_excluded(target.settings)
        return RedisSession(target.name, _url(target.settings), excluded)
