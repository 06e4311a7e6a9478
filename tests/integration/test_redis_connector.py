"""The Redis ACL connector against a real, private redis-server (no mocks).

Effects are proven the way Redis itself decides them: logging in over the network (probe),
``ACL DRYRUN`` for what a user may run, and connections that stay open or get closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    ProbeResult,
    TargetUnreachable,
)
from lockstep.connectors.redis.connector import (
    RULES_KEY,
    RedisSession,
)
from lockstep.demo.localpg import free_port
from lockstep.engine.apply import execute
from lockstep.model import Action, Op, Target
from lockstep.secret import Secret, generate_password
from support.redis_sessions import (
    CT,
    NOBODY,
    POLICY,
    create,
    grant,
    held,
    open_session,
    probe,
    target_at,
)

if TYPE_CHECKING:
    from services.redis_server import LocalRedis

# The redis_server and redis_target fixtures. Registered, not imported: pytest must load the
# module itself, first.
pytest_plugins = ("services.redis_server", "support.redis_sessions")


def login(server: LocalRedis, account: str, password: Secret) -> redis.Connection:
    connection = redis.Connection(
        host=server.host,
        port=server.port,
        username=account,
        password=password.reveal(),
        protocol=2,
        retry=Retry(NoBackoff(), 0),
    )
    connection.connect()
    return connection


def still_open(connection: redis.Connection) -> bool:
    try:
        connection.send_command("PING")
        connection.read_response()
    except redis.exceptions.ResponseError:
        return True  # NOPERM: refused, but by a server still talking on this connection
    except redis.exceptions.ConnectionError:
        return False
    return True


def sessions_of(session: RedisSession, account: str = "svc") -> int:
    found = session.read_account(account)
    assert found is not None
    return found.sessions


# ---------------------------------------------------------------- reading and creating


def test_a_server_without_users_reads_empty(session: RedisSession) -> None:
    snapshot = session.read()
    assert snapshot.target == "cache"
    assert snapshot.accounts == {}  # neither default nor the admin is ever read


def test_a_created_account_logs_in_and_holds_nothing(session: RedisSession) -> None:
    password = create(session).secret
    account = session.read().accounts["svc"]
    assert account.entitlements == frozenset()
    assert account.enabled
    assert account.sessions == 0
    assert probe(session, password) is ProbeResult.ACCEPTED
    assert probe(session, generate_password()) is ProbeResult.REFUSED
    assert not session.dryrun("svc", "GET", "k")


def test_a_user_without_a_password_is_not_enabled(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    with redis_server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", "open_door", "on", "nopass", "+get")
        admin.execute_command("ACL", "SETUSER", "no_password", "on", "+get")
    accounts = session.read().accounts
    assert not accounts["open_door"].enabled  # anyone may log in: no credential to manage
    assert not accounts["no_password"].enabled
    assert accounts["open_door"].entitlements == {"+get"}


@pytest.mark.parametrize(
    "rule",
    [
        "~orders:*",
        "%R~ro:*",
        "%W~wo:*",
        "%RW~rw:*",
        "~*",
        "&events:*",
        "&*",
        "+GET",
        "+config|get",
        "+@read",
        "+@all",
        "-flushall",
        "-config|set",
        "-@dangerous",
    ],
)
def test_each_rule_kind_reads_back_in_canonical_form(session: RedisSession, rule: str) -> None:
    create(session)
    grant(session, rule)
    assert held(session) == {CT.parse_entitlement(rule)}
    grant(session, rule)  # idempotent
    assert held(session) == {CT.parse_entitlement(rule)}


def test_a_whole_set_reads_back_exactly_whatever_acl_list_shows(
    session: RedisSession, redis_target: Target
) -> None:
    create(session)
    grant(session, *POLICY)
    desired = {CT.parse_entitlement(r) for r in POLICY}
    assert held(session) == desired
    # A fresh session (no memory of the grants) reads the same: it all comes from Redis.
    other = open_session(redis_target)
    assert other.read().accounts["svc"].entitlements == desired
    other.close()
    assert session.dryrun("svc", "GET", "orders:1")
    assert session.dryrun("svc", "HSET", "orders:1", "f", "v")
    assert session.dryrun("svc", "GET", "ro:1")
    assert not session.dryrun("svc", "SET", "ro:1", "v")
    assert not session.dryrun("svc", "GET", "other:1")
    assert not session.dryrun("svc", "FLUSHALL")
    assert not session.dryrun("svc", "KEYS", "*")
    assert session.dryrun("svc", "CONFIG", "GET", "maxmemory")  # specific beats -@dangerous
    assert not session.dryrun("svc", "CONFIG", "SET", "maxmemory", "1")


def test_the_order_of_grants_does_not_matter(session: RedisSession) -> None:
    create(session, "forward")
    create(session, "backward")
    rules = ("+@all", "-@dangerous", "+flushall", "+get", "-get", "~*")
    grant(session, *rules, account="forward")
    grant(session, *reversed(rules), account="backward")
    assert held(session, "forward") == held(session, "backward") == set(rules)
    for account in ("forward", "backward"):
        assert session.dryrun(account, "FLUSHALL")  # a command beats its category
        assert not session.dryrun(account, "KEYS", "*")
        assert not session.dryrun(account, "GET", "k")  # a denial beats a grant
        assert session.dryrun(account, "SET", "k", "v")


def test_rules_set_by_hand_read_back_as_a_set_that_reproduces_them(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    create(session, "by_hand")
    with redis_server.admin() as admin:
        admin.execute_command(
            "ACL", "SETUSER", "by_hand", "~a:*", "+@hash", "+@read", "-hgetall", "-@dangerous"
        )
        create(session, "copy")
        grant(session, *held(session, "by_hand"), account="copy")
        original, copy = (admin.execute_command("ACL", "GETUSER", u) for u in ("by_hand", "copy"))
    assert held(session, "copy") == held(session, "by_hand")
    for field in ("keys", "channels", "commands", "selectors"):
        assert original[field] == copy[field]


# ---------------------------------------------------------------- revoking


def test_revoking_one_key_pattern_keeps_the_others_and_the_password(
    session: RedisSession,
) -> None:
    password = create(session).secret
    grant(session, "~orders:*", "~carts:*", "+get", "+set")
    session.revoke("svc", "~orders:*")
    assert held(session) == {"~carts:*", "+get", "+set"}
    assert not session.dryrun("svc", "GET", "orders:1")
    assert session.dryrun("svc", "GET", "carts:1")
    assert probe(session, password) is ProbeResult.ACCEPTED
    assert session.read().accounts["svc"].enabled

    session.revoke("svc", "+set")
    assert held(session) == {"~carts:*", "+get"}
    assert not session.dryrun("svc", "SET", "carts:1", "v")
    assert probe(session, password) is ProbeResult.ACCEPTED


def test_revoking_a_denial_or_a_category_restores_or_removes_its_effect(
    session: RedisSession,
) -> None:
    create(session)
    grant(session, *POLICY)
    session.revoke("svc", "-@dangerous")
    assert session.dryrun("svc", "FLUSHALL")
    session.revoke("svc", "+@write")
    assert not session.dryrun("svc", "SET", "orders:1", "v")
    assert session.dryrun("svc", "HSET", "orders:1", "f", "v")  # +@hash still held
    expected = {CT.parse_entitlement(r) for r in POLICY} - {"-@dangerous", "+@write"}
    assert held(session) == expected


def test_revoking_what_is_not_held_changes_nothing(session: RedisSession) -> None:
    create(session)
    grant(session, "~a:*", "+get")
    session.revoke("svc", "+set")
    assert held(session) == {"~a:*", "+get"}


# ---------------------------------------------------------------- credentials and sessions


def test_suspend_kills_open_connections_and_refuses_old_and_new_passwords(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    password = create(session).secret
    grant(session, "~a:*", "+get")
    connection = login(redis_server, "svc", password)
    assert still_open(connection)
    assert sessions_of(session) == 1

    nobody_holds = generate_password()
    assert session.suspend_account("svc", nobody_holds) == Credential("svc", nobody_holds)

    assert not still_open(connection)
    assert probe(session, password) is ProbeResult.REFUSED
    assert probe(session, nobody_holds) is ProbeResult.REFUSED
    account = session.read().accounts["svc"]
    assert not account.enabled
    assert account.sessions == 0
    assert account.entitlements == {"~a:*", "+get"}  # suspension deletes nothing


def test_restore_accepts_only_the_new_credential(session: RedisSession) -> None:
    password = create(session).secret
    session.suspend_account("svc", generate_password())
    fresh = generate_password()
    assert session.restore_account("svc", fresh) == Credential("svc", fresh)
    assert probe(session, fresh) is ProbeResult.ACCEPTED
    assert probe(session, password) is ProbeResult.REFUSED
    assert session.read().accounts["svc"].enabled


def test_rotation_refuses_the_old_password_and_accepts_the_new(session: RedisSession) -> None:
    old = create(session).secret
    grant(session, "~a:*")
    new = generate_password()
    assert session.rotate_credential("svc", new) == Credential("svc", new)
    assert probe(session, old) is ProbeResult.REFUSED
    assert probe(session, new) is ProbeResult.ACCEPTED
    assert held(session) == {"~a:*"}


def test_end_sessions_closes_connections_and_keeps_the_account(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    password = create(session).secret
    connections = [login(redis_server, "svc", password) for _ in range(2)]
    assert sessions_of(session) == 2
    session.end_sessions("svc")
    assert sessions_of(session) == 0
    assert not any(still_open(c) for c in connections)
    assert probe(session, password) is ProbeResult.ACCEPTED


def test_delete_removes_the_user_its_connections_and_its_record(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    password = create(session).secret
    grant(session, "~a:*")
    connection = login(redis_server, "svc", password)
    session.delete_account("svc")
    assert session.read_account("svc") is None
    assert "svc" not in session.read().accounts
    assert probe(session, password) is ProbeResult.REFUSED
    assert not still_open(connection)
    with redis_server.admin() as admin:
        assert not admin.hexists(RULES_KEY, "svc")


@pytest.mark.parametrize(
    ("op", "entitlement"),
    [
        (Op.GRANT, "+get"),
        (Op.REVOKE, "+get"),
        (Op.SUSPEND_ACCOUNT, None),
        (Op.RESTORE_ACCOUNT, None),
        (Op.ROTATE_CREDENTIAL, None),
        (Op.END_SESSIONS, None),
    ],
)
def test_changing_a_missing_account_fails_and_never_creates_it(
    session: RedisSession, op: Op, entitlement: str | None
) -> None:
    with pytest.raises(ActionFailed):
        execute(session, Action(op, "cache", "ghost", entitlement), None)
    assert session.read_account("ghost") is None


# ---------------------------------------------------------------- unreachable and secrets


def test_a_closed_port_is_unreachable_not_empty(redis_server: LocalRedis) -> None:
    password = redis_server.password.reveal()
    url = f"redis://{redis_server.admin_user}:{password}@127.0.0.1:{free_port()}/0"
    target = target_at(url)
    with pytest.raises(TargetUnreachable, match="cannot reach redis"):
        CT.open(target, NOBODY)


def test_a_wrong_admin_password_is_unreachable(redis_server: LocalRedis) -> None:
    url = f"redis://{redis_server.admin_user}:wrong-{free_port()}@127.0.0.1:{redis_server.port}/0"
    target = target_at(url)
    with pytest.raises(TargetUnreachable):
        CT.open(target, NOBODY)


def test_a_server_that_goes_away_is_unreachable_for_every_call(redis_server: LocalRedis) -> None:
    from services.redis_server import start  # by now pytest has loaded it as a plugin

    server = start()  # a second server, of our own (redis_server: skip where none can start)
    target = target_at(server.url())
    session = open_session(target)
    password = create(session).secret
    server.stop()
    calls = [
        session.read,
        lambda: session.read_account("svc"),
        lambda: session.probe(Credential("svc", password)),
        lambda: session.rotate_credential("svc", generate_password()),
    ]
    for call in calls:
        with pytest.raises(TargetUnreachable) as caught:
            call()
        assert server.password.reveal() not in str(caught.value)
        assert password.reveal() not in str(caught.value)
    session.close()


def test_changes_survive_a_reload_of_the_acl_file(redis_server: LocalRedis) -> None:
    from services.redis_server import start  # by now pytest has loaded it as a plugin

    server = start(aclfile=True)  # redis_server: skip where none can start
    target = target_at(server.url())
    session = open_session(target)
    try:
        old = generate_password()
        with server.admin() as admin:  # a user already in the file, with its password
            admin.execute_command("ACL", "SETUSER", "svc", "on", ">" + old.reveal())
            admin.execute_command("ACL", "SAVE")
        grant(session, "~a:*", "+get")
        session.suspend_account("svc", generate_password())
        with server.admin() as admin:
            admin.execute_command("ACL", "LOAD")  # what a restart does with the users
        assert probe(session, old) is ProbeResult.REFUSED
        assert not session.read().accounts["svc"].enabled
        assert held(session) == {"~a:*", "+get"}
    finally:
        session.close()
        server.stop()
