"""The Redis connector's optional capabilities against a real, private redis-server.

Two passwords at once (zero-downtime rotation), use observed from CLIENT LIST and ACL LOG, a
change token over ACL LIST, and one ACL user per lease. Effects are proven as Redis decides
them: logging in over the network, ACL DRYRUN, connections kept or closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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
    LEASES_KEY,
    RULES_KEY,
    RedisConnectorType,
    RedisSession,
    RedisSettings,
)
from lockstep.model import LEASE_PREFIX, Target
from lockstep.secret import Secret, generate_password

if TYPE_CHECKING:
    from services.redis_server import LocalRedis

pytest_plugins = ("services.redis_server",)

CT = RedisConnectorType()
NOBODY = Scope(declared=frozenset(), excluded=frozenset())
LEASE = LEASE_PREFIX + "3f9a"
IN_AN_HOUR = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


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


# ---------------------------------------------------------------- leases


def issue(
    session: RedisSession,
    name: str = LEASE,
    entitlements: frozenset[str] = frozenset({"~a:*", "+get", "+ping"}),
    expires_at: datetime = IN_AN_HOUR,
) -> Credential:
    return session.issue_lease(name, "svc", entitlements, generate_password(), expires_at)


def test_lease_account_names_pass_the_account_grammar() -> None:
    CT.check_account(LEASE)


def test_a_lease_logs_in_with_exactly_its_entitlements(session: RedisSession) -> None:
    credential = issue(session)
    assert credential.username == LEASE
    assert session.probe(credential) is ProbeResult.ACCEPTED
    assert session.dryrun(LEASE, "GET", "a:1")
    assert not session.dryrun(LEASE, "SET", "a:1", "v")
    assert not session.dryrun(LEASE, "GET", "b:1")
    account = session.read_account(LEASE)
    assert account is not None
    assert account.entitlements == {"~a:*", "+get", "+ping"}


def test_issued_leases_are_listed_with_their_expiry(session: RedisSession) -> None:
    create(session)  # an ordinary account is never a lease
    issue(session, LEASE_PREFIX + "one")
    issue(session, LEASE_PREFIX + "two", expires_at=IN_AN_HOUR + timedelta(minutes=5))
    listed = {lease.name: lease.expires_at for lease in session.list_leases(LEASE_PREFIX)}
    assert listed == {
        LEASE_PREFIX + "one": IN_AN_HOUR,
        LEASE_PREFIX + "two": IN_AN_HOUR + timedelta(minutes=5),
    }


def test_a_lease_whose_record_was_lost_is_still_listed_with_unknown_expiry(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    issue(session)
    with redis_server.admin() as admin:
        admin.delete(LEASES_KEY)
        # As if lockstep stopped between creating a lease account and recording it.
        admin.execute_command("ACL", "SETUSER", LEASE_PREFIX + "orphan", "on", ">pw-orphan")
    listed = {lease.name: lease.expires_at for lease in session.list_leases(LEASE_PREFIX)}
    assert listed == {LEASE: None, LEASE_PREFIX + "orphan": None}


def test_a_forged_expiry_reads_as_unknown(session: RedisSession, redis_server: LocalRedis) -> None:
    issue(session)
    with redis_server.admin() as admin:
        admin.hset(LEASES_KEY, LEASE, "never")
    [lease] = session.list_leases(LEASE_PREFIX)
    assert lease.expires_at is None


def test_renewing_moves_the_recorded_expiry(session: RedisSession) -> None:
    credential = issue(session)
    later = IN_AN_HOUR + timedelta(hours=1)
    session.renew_lease(LEASE, later)
    [lease] = session.list_leases(LEASE_PREFIX)
    assert lease.expires_at == later
    assert session.probe(credential) is ProbeResult.ACCEPTED


def test_renewing_a_lease_that_is_gone_fails_and_records_nothing(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    with pytest.raises(ActionFailed, match="no lease account"):
        session.renew_lease(LEASE, IN_AN_HOUR)
    with redis_server.admin() as admin:
        assert not admin.exists(LEASES_KEY)


def test_redis_has_no_native_expiry_so_a_lease_past_it_works_until_revoked(
    session: RedisSession,
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    credential = issue(session, expires_at=past)
    assert session.probe(credential) is ProbeResult.ACCEPTED  # the reaper's job
    [lease] = session.list_leases(LEASE_PREFIX)
    assert lease.expires_at is not None
    assert lease.expires_at < datetime.now(UTC)


def test_revoking_a_lease_refuses_it_and_closes_its_connections(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    credential = issue(session)
    connected = login(redis_server, credential)
    session.revoke_lease(LEASE)
    assert session.probe(credential) is ProbeResult.REFUSED
    assert not still_open(connected)
    assert session.list_leases(LEASE_PREFIX) == []
    with redis_server.admin() as admin:
        assert not admin.hexists(LEASES_KEY, LEASE)
        assert not admin.hexists(RULES_KEY, LEASE)


def test_revoking_a_lease_that_is_gone_succeeds(session: RedisSession) -> None:
    issue(session)
    session.revoke_lease(LEASE)
    session.revoke_lease(LEASE)
    assert session.read_account(LEASE) is None


def test_a_lease_is_never_issued_over_an_existing_account(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    first = issue(session)
    with pytest.raises(ActionFailed, match="already exists"):
        issue(session, entitlements=frozenset({"+@all", "~*"}))
    assert session.probe(first) is ProbeResult.ACCEPTED
    assert not session.dryrun(LEASE, "SET", "a:1", "v")
    assert passwords(redis_server, LEASE) == 1


@pytest.mark.parametrize("name", ["svc", "lease_svc", "Lockstep_lease_x", LEASE_PREFIX + "a b"])
def test_only_lease_accounts_are_issued_renewed_or_revoked(
    session: RedisSession, name: str
) -> None:
    ordinary = create(session)
    with pytest.raises(ActionFailed):
        issue(session, name)
    with pytest.raises(ActionFailed):
        session.renew_lease(name, IN_AN_HOUR)
    with pytest.raises(ActionFailed):
        session.revoke_lease(name)
    assert set(session.read().accounts) == {"svc"}
    assert session.probe(ordinary) is ProbeResult.ACCEPTED


@pytest.mark.parametrize("prefix", ["", "lockstep_", "svc"])
def test_listing_with_less_than_the_lease_prefix_is_refused(
    session: RedisSession, prefix: str
) -> None:
    create(session)
    with pytest.raises(ValueError, match="lease prefixes start with"):
        session.list_leases(prefix)


@pytest.mark.parametrize("entitlement", ["(~x:* +get)", "~a b", "-@all", "+get >pw"])
def test_an_entitlement_a_lease_cannot_hold_issues_nothing(
    session: RedisSession, redis_server: LocalRedis, entitlement: str
) -> None:
    with pytest.raises(ActionFailed):
        issue(session, entitlements=frozenset({"+get", entitlement}))
    assert session.read_account(LEASE) is None
    with redis_server.admin() as admin:
        assert not admin.exists(LEASES_KEY)


def test_a_naive_expiry_is_refused(session: RedisSession) -> None:
    with pytest.raises(ActionFailed, match="aware"):
        issue(session, expires_at=datetime(2030, 1, 1, 12, 0))
    assert session.read_account(LEASE) is None


def test_a_lease_the_server_refuses_leaves_nothing_behind(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    with redis_server.admin() as admin:
        admin.set(LEASES_KEY, "not a hash")  # the expiry cannot be recorded
    with pytest.raises(ActionFailed, match="WRONGTYPE"):
        issue(session)
    assert session.read_account(LEASE) is None


def test_leases_survive_a_reload_of_the_acl_file(redis_server: LocalRedis) -> None:
    from services.redis_server import start  # by now pytest has loaded it as a plugin

    server = start(aclfile=True)  # redis_server: skip where none can start
    target = target_at(server.url())
    session = open_session(target)
    try:
        kept, revoked = issue(session, LEASE_PREFIX + "kept"), issue(session)
        session.revoke_lease(LEASE)
        with server.admin() as admin:
            admin.execute_command("ACL", "LOAD")
        assert session.probe(kept) is ProbeResult.ACCEPTED
        assert session.probe(revoked) is ProbeResult.REFUSED
    finally:
        session.close()
        server.stop()


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
