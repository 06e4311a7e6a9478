"""Redis sessions for the capability and lease tests: a session on the suite's server with
its ACL log reset, and logins as workloads do them (one connection, no retry)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockstep.connectors.base import Credential, ProbeResult, Scope
from lockstep.connectors.redis.connector import (
    RedisConnectorType,
    RedisSession,
    RedisSettings,
)
from lockstep.model import LEASE_PREFIX, Target
from lockstep.secret import Secret, generate_password

if TYPE_CHECKING:
    from services.redis_server import LocalRedis


CT = RedisConnectorType()
NOBODY = Scope(declared=frozenset(), excluded=frozenset())
LEASE = LEASE_PREFIX + "3f9a"
IN_AN_HOUR = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
# A realistic mix of every rule kind, as one service would be granted it.
POLICY = (
    "~orders:*",
    "%R~ro:*",
    "&events:*",
    "+@read",
    "+@write",
    "+@hash",
    "-@dangerous",
    "+config|get",
    "+ping",
)


def open_session(target: Target, scope: Scope = NOBODY) -> RedisSession:
    session = CT.open(target, scope)
    assert isinstance(session, RedisSession)
    return session


@pytest.fixture
def session(redis_target: Target, redis_server: LocalRedis) -> Iterator[RedisSession]:
    with redis_server.admin() as admin:
        admin.execute_command("ACL", "LOG", "RESET")  # the log outlives the users of past tests
    opened = open_session(redis_target)
    yield opened
    opened.close()


def target_at(url: str) -> Target:
    return Target("cache", "redis", None, frozenset(), False, RedisSettings(url=Secret(url)))


def create(session: RedisSession, account: str = "svc", *rules: str) -> Credential:
    credential = session.create_account(account, generate_password())
    for rule in rules:
        session.grant(account, CT.parse_entitlement(rule))
    return credential


def login(server: LocalRedis, credential: Credential) -> redis.Redis:
    client = redis.Redis(
        host=server.host,
        port=server.port,
        username=credential.username,
        password=credential.secret.reveal(),
        protocol=2,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )
    client.ping()
    return client


def still_open(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        return False
    return True


def passwords(server: LocalRedis, account: str) -> int:
    with server.admin() as admin:
        return len(admin.execute_command("ACL", "GETUSER", account)["passwords"])


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def issue(
    session: RedisSession,
    name: str = LEASE,
    entitlements: frozenset[str] = frozenset({"~a:*", "+get", "+ping"}),
    expires_at: datetime = IN_AN_HOUR,
) -> Credential:
    return session.issue_lease(name, "svc", entitlements, generate_password(), expires_at)


def grant(session: RedisSession, *rules: str, account: str = "svc") -> None:
    for rule in rules:
        session.grant(account, CT.parse_entitlement(rule))


def held(session: RedisSession, account: str = "svc") -> frozenset[str]:
    """What the account holds, after checking that the full read and the single read agree."""
    one = session.read_account(account)
    assert one is not None
    assert session.read().accounts[account] == one
    return one.entitlements


def probe(session: RedisSession, password: Secret, account: str = "svc") -> ProbeResult:
    return session.probe(Credential(account, password))
