"""The admin connection to a Redis server: how it is opened, how its errors become
lockstep's without ever letting a secret through, and the primitives every part of a session
builds on (``RedisAdmin``).
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.connection import parse_url
from redis.retry import Retry

from lockstep.connectors.base import ActionFailed, ConnectorError, Credential, TargetUnreachable
from lockstep.connectors.redis.acl import RULES_KEY, AclUser, count_sessions, user_from_reply
from lockstep.secret import Secret, redact

TIMEOUT_S = 10.0
# A probe sends no CLIENT SETINFO after the login (a workload may not be allowed it either)
# and looks up no package metadata for it, which alone took most of a probe's time: redis-py
# 8 says so with driver_info=None, earlier versions with lib_name=None.
_NO_CLIENT_INFO: dict[str, None] = (
    {"driver_info": None}
    if importlib.util.find_spec("redis.driver_info") is not None
    else {"lib_name": None, "lib_version": None}
)


def parse_redis_url(url: str) -> dict[str, Any]:
    parse: Callable[[str], dict[str, Any]] = parse_url  # unannotated in redis-py
    return parse(url)


def call(client: redis.Redis | Pipeline, *args: str) -> Any:
    """One command, each value its own argument: Redis never splits it, so names and rules
    cannot smuggle extra rules in."""
    execute: Callable[..., Any] = client.execute_command  # unannotated in redis-py
    return execute(*args)


def admin_client(url: str) -> redis.Redis:
    options = parse_redis_url(url)
    # parse_url's options would win over keyword arguments given to from_url, so set ours here.
    options.update(
        protocol=3,
        decode_responses=True,
        # Hand-made names and patterns need not be UTF-8. Decoding them exactly lets rules
        # compare and re-apply byte for byte (an escaped form could equal another pattern);
        # they are escaped only where they leave the session.
        encoding_errors="surrogateescape",
        socket_connect_timeout=TIMEOUT_S,
        socket_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
    )
    return redis.Redis(connection_pool=redis.ConnectionPool(**options))


def probe_options(url: str, credential: Credential) -> dict[str, Any]:
    options = {
        k: v
        for k, v in parse_redis_url(url).items()
        # A probe proves authentication only: SELECT or CLIENT SETNAME need permissions a
        # workload may lack, and would turn an accepted login into a failure.
        if k not in {"username", "password", "db", "client_name", "protocol"}
    }
    options.update(
        username=credential.username,
        password=credential.secret.reveal(),
        protocol=2,
        socket_connect_timeout=TIMEOUT_S,
        socket_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        **_NO_CLIENT_INFO,
    )
    return options


def scrub(exc: BaseException, secret: Secret | None) -> str:
    text = str(exc)
    if secret is not None:
        text = text.replace(secret.reveal(), "***")
    return redact(text)


@contextmanager
def guard(what: str, failure: type[ConnectorError], secret: Secret | None = None) -> Iterator[None]:
    """Redis errors become ``failure``, lost connections TargetUnreachable; no secret leaks."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        raise failure(f"redis {what}: {scrub(exc, secret)}") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise TargetUnreachable(f"redis {what}: cannot reach redis: {scrub(exc, secret)}") from None


class RedisAdmin:
    """An authenticated admin connection to one target. Used from one thread at a time."""

    def __init__(
        self, target: str, url: str, excluded: frozenset[str], secret_keys: tuple[str, ...] = ()
    ) -> None:
        self._target = target
        self._url = url
        self._excluded = excluded
        self._secret_keys = secret_keys  # key patterns where credentials are kept
        self._client = admin_client(url)
        try:
            self._command("PING", "PING", failure=TargetUnreachable)
        except TargetUnreachable:
            self._client.close()
            raise

    def close(self) -> None:
        self._client.close()

    def _managed(self, name: str) -> None:
        if name in self._excluded:
            raise ActionFailed(f"{name!r} is excluded from management on {self._target}")

    def _user(self, name: str) -> AclUser | None:
        reply = self._command(
            f"ACL GETUSER {name!r}", "ACL", "GETUSER", name, failure=TargetUnreachable
        )
        return None if reply is None else user_from_reply(name, reply)

    def _sessions(self) -> Counter[str]:
        text = self._command("CLIENT LIST", "CLIENT", "LIST", failure=TargetUnreachable)
        return count_sessions(str(text))

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
        with guard(what, failure, secret):
            return call(self._client, *args)
