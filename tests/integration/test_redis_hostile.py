"""The Redis connector against hostile input and what it cannot express: smuggled rules,
names made by hand with ACL metacharacters or bytes that are not UTF-8, the default user and
the admin, selectors and rules no set can express, forged records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from lockstep.connectors.base import (
    ActionFailed,
    GrammarError,
    ProbeResult,
    Scope,
)
from lockstep.connectors.redis.connector import (
    MARKER_PREFIX,
    RULES_KEY,
    RedisSession,
)
from lockstep.model import Target
from lockstep.secret import generate_password
from support.redis_sessions import (
    CT,
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


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "smuggled",
    ["~a ~b", "~a\t+@all", "+get >pw", "on", "nopass", "allkeys", "+@all\n", "resetpass", "-@all"],
)
def test_smuggled_rules_are_refused_and_change_nothing(
    session: RedisSession, smuggled: str
) -> None:
    password = create(session).secret
    grant(session, "~a:*", "+get")
    with pytest.raises(GrammarError):
        CT.parse_entitlement(smuggled)
    with pytest.raises(ActionFailed):
        session.grant("svc", smuggled)
    assert held(session) == {"~a:*", "+get"}
    assert probe(session, password) is ProbeResult.ACCEPTED
    assert not session.dryrun("svc", "SET", "a:1", "v")
    assert not session.dryrun("svc", "GET", "b:1")


# Names lockstep would never create, but which Redis accepts from someone else.
HOSTILE_NAMES = ['q"x;', "a;b", "é", ">pw", "(x", "#x", "~k", "svc*", "a=b"]


def test_hostile_names_made_by_hand_are_read_and_handled_verbatim(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    with redis_server.admin() as admin:
        for name in HOSTILE_NAMES:
            admin.execute_command("ACL", "SETUSER", name, "on", ">pw-" + str(len(name)), "+get")
    create(session, "svc")
    # Odd but valid: names are never parsed as rules or options.
    create(session, "on")
    create(session, "-svc")
    assert set(session.read().accounts) == {*HOSTILE_NAMES, "svc", "on", "-svc"}
    for name in HOSTILE_NAMES:
        with pytest.raises(GrammarError):
            CT.check_account(name)
        assert held(session, name) == {"+get"}
        session.suspend_account(name, generate_password())
        assert not session.read().accounts[name].enabled
        session.delete_account(name)
    assert set(session.read().accounts) == {"svc", "on", "-svc"}
    assert all(a.enabled for a in session.read().accounts.values())


def test_a_name_that_is_not_utf8_is_shown_escaped_never_hidden(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    with redis_server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", b"bad\xff", "on", ">pw-bad", "+get")
    account = session.read().accounts["bad\\xff"]
    assert account.enabled
    assert account.entitlements == {"+get"}
    with pytest.raises(ActionFailed):  # the escaped name is not the user's real name
        session.rotate_credential("bad\\xff", generate_password())


def test_default_and_the_admin_are_never_read_or_touched(
    redis_target: Target, redis_server: LocalRedis
) -> None:
    session = open_session(redis_target, Scope(frozenset(), frozenset({"svc"})))
    with redis_server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", "svc", "on", ">pw-svc")
    create(session, "other")
    assert set(session.read().accounts) == {"other"}
    for name in ("default", redis_server.admin_user, "svc"):
        with pytest.raises(ActionFailed, match="excluded"):
            session.delete_account(name)
    assert CT.default_excluded(redis_target.settings) == {"default", redis_server.admin_user}
    with redis_server.admin() as admin:
        assert admin.execute_command("ACL", "WHOAMI") == redis_server.admin_user
        assert "svc" in admin.acl_users()
    session.close()


# ---------------------------------------------------------------- what lockstep cannot express


def test_selectors_made_by_hand_read_back_opaque_are_kept_and_can_be_revoked(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    create(session)
    with redis_server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", "svc", "(~sel:* +get)")
    selector = "(~sel:* resetchannels -@all +get)"
    assert held(session) == {selector}
    grant(session, "~orders:*", "+set")
    assert held(session) == {selector, "~orders:*", "+set"}
    assert session.dryrun("svc", "GET", "sel:1")
    session.revoke("svc", selector)
    assert held(session) == {"~orders:*", "+set"}
    assert not session.dryrun("svc", "GET", "sel:1")
    assert session.dryrun("svc", "SET", "orders:1", "v")


def test_rules_no_set_can_express_are_flagged_never_in_sync(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    create(session)
    with redis_server.admin() as admin:
        # A key pattern that is not UTF-8: no entitlement can be written that way.
        admin.execute_command("ACL", "SETUSER", "svc", b"~\xffkey", "+get")
    found = held(session)
    [marker] = [e for e in found if e.startswith(MARKER_PREFIX)]
    assert found == {"+get", marker}
    assert "\\xffkey" in marker
    assert marker.isprintable()
    with pytest.raises(GrammarError):
        CT.parse_entitlement(marker)  # no policy can hold it: always excess
    with pytest.raises(ActionFailed, match="cannot express"):
        session.grant("svc", "+set")
    session.revoke("svc", marker)
    assert held(session) == {"+get"}


def test_forged_or_broken_records_never_claim_access(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    create(session)
    grant(session, "~a:*", "+get")
    with redis_server.admin() as admin:
        for forged in ('["~*", "+@all"]', '["on", ">pw", "+get", "~a:*"]', "{", '{"x": 1}'):
            admin.hset(RULES_KEY, "svc", forged)
            assert held(session) == {"~a:*", "+get"}
        admin.delete(RULES_KEY)
        admin.set(RULES_KEY, "not a hash")
        assert held(session) == {"~a:*", "+get"}
        with pytest.raises(ActionFailed, match="WRONGTYPE"):
            grant(session, "+set")
        assert held(session) == {"~a:*", "+get", "+set"}  # applied; only the record failed


def test_the_listed_admin_permissions_are_enough(
    redis_target: Target, redis_server: LocalRedis
) -> None:
    needed = sorted({p for perms in CT.permissions.values() for p in perms})
    password = generate_password()
    with redis_server.admin() as admin:
        admin.execute_command(
            "ACL", "SETUSER", "least", "reset", "on", ">" + password.reveal(), *needed
        )
    url = f"redis://least:{password.reveal()}@{redis_server.host}:{redis_server.port}/0"
    target = target_at(url)
    session = open_session(target)
    create(session)
    grant(session, *POLICY)
    session.revoke("svc", "+@write")
    session.rotate_credential("svc", generate_password())
    session.suspend_account("svc", generate_password())
    session.restore_account("svc", generate_password())
    session.end_sessions("svc")
    # This session's admin excludes itself; the suite's admin is an account like any other.
    assert set(session.read().accounts) == {"svc", redis_server.admin_user}
    session.delete_account("svc")
    assert set(session.read().accounts) == {redis_server.admin_user}
    session.close()
