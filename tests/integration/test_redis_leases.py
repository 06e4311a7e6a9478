"""The Redis connector's leases against a real, private redis-server: one ACL user per
lease, its expiry recorded beside it (Redis has none of its own), renewed and revoked, proven
by logging in and by connections kept or closed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from lockstep.connectors.base import (
    ActionFailed,
    ProbeResult,
)
from lockstep.connectors.redis.connector import (
    LEASES_KEY,
    RULES_KEY,
    RedisSession,
)
from lockstep.model import LEASE_PREFIX

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
)

pytest_plugins = ("services.redis_server", "support.redis_sessions")


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
