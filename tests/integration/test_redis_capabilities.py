"""The Redis connector's optional capabilities against a real, private redis-server.

Two passwords at once (zero-downtime rotation), use observed from CLIENT LIST and ACL LOG and
a change token over ACL LIST (leases are in test_redis_leases.py). Effects are proven as Redis
decides them: logging in over the network, ACL DRYRUN, connections kept or closed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    ProbeResult,
    Scope,
)
from lockstep.connectors.redis.connector import (
    RULES_KEY,
    RedisSession,
)
from lockstep.model import LEASE_PREFIX, Target
from lockstep.secret import generate_password

if TYPE_CHECKING:
    from services.redis_server import LocalRedis

from support.redis_sessions import (
    CT,
    IN_AN_HOUR,
    LEASE,
    create,
    issue,
    login,
    open_session,
    passwords,
    still_open,
    target_at,
    wait_until,
)

pytest_plugins = ("services.redis_server", "support.redis_sessions")

# ---------------------------------------------------------------- two passwords at once


def test_retiring_the_old_password_refuses_it_and_keeps_the_new(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    old = create(session)
    new = session.add_credential("svc", generate_password())
    session.retire_credential("svc", old)
    assert session.probe(old) is ProbeResult.REFUSED
    assert session.probe(new) is ProbeResult.ACCEPTED
    assert passwords(redis_server, "svc") == 1


def test_rotation_keeps_the_rules_and_their_record(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    old = create(session, "svc", "~a:*", "+@hash", "-hdel")
    with redis_server.admin() as admin:
        record = admin.hget(RULES_KEY, "svc")
    session.add_credential("svc", generate_password())
    session.retire_credential("svc", old)
    account = session.read_account("svc")
    assert account is not None
    assert account.enabled
    assert account.entitlements == {"~a:*", "+@hash", "-hdel"}
    assert session.dryrun("svc", "HSET", "a:1", "f", "v")
    assert not session.dryrun("svc", "HDEL", "a:1", "f")
    with redis_server.admin() as admin:
        assert admin.hget(RULES_KEY, "svc") == record


def test_connections_opened_with_the_retired_password_stay_open(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    # What a workload sees: nothing breaks; it uses the new password when it reconnects.
    old = create(session, "svc", "+ping")
    connected = login(redis_server, old)
    session.add_credential("svc", generate_password())
    session.retire_credential("svc", old)
    assert still_open(connected)
    connected.close()


def test_retiring_a_password_the_user_no_longer_holds_changes_nothing(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    current = create(session)
    session.add_credential("svc", generate_password())
    never_held = Credential("svc", generate_password())
    session.retire_credential("svc", never_held)
    assert passwords(redis_server, "svc") == 2
    assert session.probe(current) is ProbeResult.ACCEPTED


def test_adding_to_a_suspended_account_is_refused_and_restores_nothing(
    session: RedisSession,
) -> None:
    create(session)
    session.suspend_account("svc", generate_password())
    attempted = generate_password()
    with pytest.raises(ActionFailed, match="restore it instead"):
        session.add_credential("svc", attempted)
    assert session.probe(Credential("svc", attempted)) is ProbeResult.REFUSED
    account = session.read_account("svc")
    assert account is not None
    assert not account.enabled


def test_excluded_accounts_get_no_new_password(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    admin = Credential(redis_server.admin_user, redis_server.password)
    with pytest.raises(ActionFailed, match="excluded"):
        session.add_credential(redis_server.admin_user, generate_password())
    with pytest.raises(ActionFailed, match="excluded"):
        session.retire_credential(redis_server.admin_user, admin)
    assert passwords(redis_server, redis_server.admin_user) == 1


def test_a_rotation_survives_a_reload_of_the_acl_file(redis_server: LocalRedis) -> None:
    from services.redis_server import start  # by now pytest has loaded it as a plugin

    server = start(aclfile=True)  # redis_server: skip where none can start
    target = target_at(server.url())
    session = open_session(target)
    try:
        old = create(session)
        new = session.add_credential("svc", generate_password())
        session.retire_credential("svc", old)
        with server.admin() as admin:
            admin.execute_command("ACL", "LOAD")  # what a restart does with the users
        assert session.probe(old) is ProbeResult.REFUSED
        assert session.probe(new) is ProbeResult.ACCEPTED
    finally:
        session.close()
        server.stop()


# ---------------------------------------------------------------- observed use


def test_an_account_nobody_connects_as_shows_no_use(session: RedisSession) -> None:
    create(session)
    assert session.observe_usage() == []


def test_an_open_connection_shows_when_it_last_ran_a_command(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    credential = create(session, "svc", "+ping")
    connected = login(redis_server, credential)
    last_command = datetime.now(UTC)
    connected.ping()

    def idle_for_two_seconds() -> bool:
        clients = redis_server.admin().client_list()
        return any(c["user"] == "svc" and int(c["idle"]) >= 2 for c in clients)

    wait_until(idle_for_two_seconds)
    [use] = session.observe_usage()
    assert use.account == "svc"
    assert use.entitlement is None
    assert use.source == "client-list"
    # Its last command, not the moment of sampling.
    assert last_command - timedelta(seconds=1) <= use.last_used
    assert use.last_used <= datetime.now(UTC) - timedelta(seconds=2)
    connected.close()


def test_a_denied_command_is_use_of_the_account(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    credential = create(session, "svc", "+get")
    before = datetime.now(UTC).replace(microsecond=0)
    client = redis.Redis(
        host=redis_server.host,
        port=redis_server.port,
        username="svc",
        password=credential.secret.reveal(),
        protocol=2,
        retry=Retry(NoBackoff(), 0),
    )
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("k", "v")
    client.close()  # gone from CLIENT LIST: only the log remembers it
    [use] = session.observe_usage()
    assert (use.account, use.source) == ("svc", "acl-log")
    assert before - timedelta(seconds=1) <= use.last_used <= datetime.now(UTC)


def test_a_failed_login_is_not_use(session: RedisSession, redis_server: LocalRedis) -> None:
    create(session)
    wrong = Credential("svc", generate_password())
    assert session.probe(wrong) is ProbeResult.REFUSED
    with redis_server.admin() as admin:
        reasons = [e["reason"] for e in admin.execute_command("ACL", "LOG")]
    assert "auth" in reasons  # Redis saw it ...
    assert session.observe_usage() == []  # ... and it is not use


def test_the_admin_and_excluded_accounts_are_never_reported(
    redis_target: Target, redis_server: LocalRedis
) -> None:
    with closing(open_session(redis_target)) as setup:
        robot = create(setup, "robot", "+ping")
    connected = login(redis_server, robot)
    session = open_session(redis_target, Scope(frozenset(), frozenset({"robot"})))
    with redis_server.admin() as admin:
        admin.ping()
        assert session.observe_usage() == []
    connected.close()
    session.close()


# ---------------------------------------------------------------- change token


def test_the_token_holds_while_nothing_changes_even_as_workloads_connect(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    credential = create(session, "svc", "~a:*", "+ping")
    token = session.change_token()
    connected = login(redis_server, credential)
    assert session.change_token() == token
    connected.close()
    session.observe_usage()
    session.read()  # reading uses a throw-away user, inside a transaction nobody sees
    assert session.change_token() == token


OUT_OF_BAND_CHANGES: dict[str, Callable[[redis.Redis], object]] = {
    "a user created": lambda r: r.execute_command("ACL", "SETUSER", "new", "on", ">pw-new"),
    "a rule granted": lambda r: r.execute_command("ACL", "SETUSER", "svc", "+set"),
    "a rule revoked": lambda r: r.execute_command("ACL", "SETUSER", "svc", "-get"),
    "a key pattern added": lambda r: r.execute_command("ACL", "SETUSER", "svc", "~b:*"),
    "the user switched off": lambda r: r.execute_command("ACL", "SETUSER", "svc", "off"),
    "a password added": lambda r: r.execute_command("ACL", "SETUSER", "svc", ">pw-extra"),
    "every password removed": lambda r: r.execute_command("ACL", "SETUSER", "svc", "resetpass"),
    "the user deleted": lambda r: r.execute_command("ACL", "DELUSER", "svc"),
    "the rule record edited": lambda r: r.hset(RULES_KEY, "svc", '["+get"]'),
    "the rule record lost": lambda r: r.delete(RULES_KEY),
}


@pytest.mark.parametrize("change", sorted(OUT_OF_BAND_CHANGES))
def test_each_kind_of_change_made_by_hand_moves_the_token(
    session: RedisSession, redis_server: LocalRedis, change: str
) -> None:
    create(session, "svc", "~a:*", "+get")
    token = session.change_token()
    with redis_server.admin() as admin:
        OUT_OF_BAND_CHANGES[change](admin)
    assert session.change_token() != token


def test_changes_to_excluded_accounts_leave_the_token_alone(
    redis_target: Target, redis_server: LocalRedis
) -> None:
    with closing(open_session(redis_target)) as setup:
        create(setup, "robot")
    session = open_session(redis_target, Scope(frozenset(), frozenset({"robot"})))
    token = session.change_token()
    with redis_server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", "robot", "+@all")
        admin.hset(RULES_KEY, "robot", '["+@all"]')
    assert session.change_token() == token
    session.close()


def test_a_record_key_of_another_type_does_not_stop_the_token(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    create(session)
    with redis_server.admin() as admin:
        admin.delete(RULES_KEY)
        admin.set(RULES_KEY, "not a hash")  # reads ignore it too
    assert session.change_token() == session.change_token()


# ---------------------------------------------------------------- permissions


def test_the_listed_capability_permissions_are_enough(
    redis_target: Target, redis_server: LocalRedis
) -> None:
    needed = sorted({p for perms in CT.capability_permissions.values() for p in perms})
    password = generate_password()
    with redis_server.admin() as admin:
        admin.execute_command(
            "ACL", "SETUSER", "least", "reset", "on", ">" + password.reveal(), *needed
        )
    url = f"redis://least:{password.reveal()}@{redis_server.host}:{redis_server.port}/0"
    target = target_at(url)
    with closing(open_session(redis_target)) as setup:
        svc = create(setup, "svc", "+ping")
    session = open_session(target)
    new = session.add_credential("svc", generate_password())
    session.retire_credential("svc", svc)
    login(redis_server, new).close()
    session.observe_usage()
    session.change_token()
    issue(session)
    session.renew_lease(LEASE, IN_AN_HOUR + timedelta(hours=1))
    assert [lease.name for lease in session.list_leases(LEASE_PREFIX)] == [LEASE]
    session.revoke_lease(LEASE)
    session.close()
