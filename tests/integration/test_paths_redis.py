"""The Redis session's escalation facts against a real redis-server, every answer from
ACL DRYRUN: one test per kind of edge, each with the case that must not be a path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from lockstep.connectors.base import Scope
from lockstep.connectors.redis.connector import RedisConnectorType, RedisSettings
from lockstep.model import Target
from lockstep.paths.graph import Confidence, Edge, NodeKind, PathRequest
from lockstep.paths.redis import RedisFacts, RedisUser

if TYPE_CHECKING:
    from services.redis_server import LocalRedis

pytest_plugins = ("services.redis_server",)

CT = RedisConnectorType()
NOBODY = Scope(declared=frozenset(), excluded=frozenset())


def facts(target: Target, **settings: object) -> RedisFacts:
    if settings:
        current = RedisSettings.model_validate(target.settings)
        target = replace(target, settings=current.model_copy(update=settings))
    session = CT.open(target, NOBODY)
    try:
        read = session.read_paths(PathRequest())
    finally:
        session.close()
    assert isinstance(read, RedisFacts)
    return read


def edges(read: RedisFacts, rule: str) -> dict[tuple[str, str], Edge]:
    return {(e.source.name, e.destination.name): e for e in read.edges() if e.rule == rule}


def users(server: LocalRedis, *definitions: tuple[str, ...]) -> None:
    with server.admin() as admin:
        for rules in definitions:
            admin.execute_command("ACL", "SETUSER", *rules)


@contextmanager
def default_user(server: LocalRedis, *rules: str) -> Iterator[None]:
    """The default user changed for one test, and put back as the fixture made it."""
    with server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", "default", *rules)
        try:
            yield
        finally:
            admin.execute_command("ACL", "SETUSER", "default", "reset", "off", "resetpass")


def test_acl_setuser_resets_every_user_and_a_plain_reader_nothing(
    redis_target, redis_server
) -> None:
    users(
        redis_server,
        ("ops", "on", ">pw-ops-1", "+acl|setuser"),
        ("reader", "on", ">pw-reader-1", "~*", "+get"),
        ("svc", "on", ">pw-svc-1", "~orders:*", "+@read"),
    )
    read = facts(redis_target)
    setuser = edges(read, "redis.acl_setuser")
    assert setuser["ops", "ACL SETUSER"].confidence is Confidence.PROVEN
    assert setuser["ops", "ACL SETUSER"].holder is not None
    assert ("reader", "ACL SETUSER") not in setuser
    assert ("ACL SETUSER", "svc") in edges(read, "redis.acl_resets")
    assert not [e for e in read.edges() if e.source.name == "reader"]


def test_config_get_reads_the_default_password_only_when_default_is_on(
    redis_target, redis_server
) -> None:
    users(redis_server, ("peek", "on", ">pw-peek-1", "+config|get"))
    assert ("peek", "default") not in edges(facts(redis_target), "redis.config_get")
    with default_user(redis_server, "on", ">pw-default-1"):
        found = edges(facts(redis_target), "redis.config_get")
    assert found["peek", "default"].confidence is Confidence.PROVEN


def test_a_nopass_default_user_is_anyone(redis_target, redis_server) -> None:
    assert not edges(facts(redis_target), "redis.nopass_default")
    with default_user(redis_server, "on", "nopass"):
        found = [e for e in facts(redis_target).edges() if e.rule == "redis.nopass_default"]
    assert [(e.source.kind, e.destination.name) for e in found] == [(NodeKind.ANYONE, "default")]


def test_config_set_controls_the_server_but_module_load_is_disabled_here(
    redis_target, redis_server
) -> None:
    users(
        redis_server,
        ("conf", "on", ">pw-conf-1", "+config|set"),
        ("mods", "on", ">pw-mods-1", "+module"),
    )
    read = facts(redis_target)
    assert read.module_command == "no"
    assert ("conf", "control of the server") in edges(read, "redis.config_set")
    assert not edges(read, "redis.module")


def test_readers_of_secret_keys_and_not_of_others(redis_target, redis_server) -> None:
    users(
        redis_server,
        ("tokens", "on", ">pw-tokens-1", "~tok:*", "+get"),
        ("orders", "on", ">pw-orders-1", "~orders:*", "+get"),
        ("writer", "on", ">pw-writer-1", "~*", "+set"),
    )
    found = edges(facts(redis_target, secret_keys=["tok:*"]), "redis.reads_secret_keys")
    edge = found["tokens", "keys tok:*"]
    assert edge.confidence is Confidence.PROVEN
    assert edge.holder is not None and edge.holder.entitlement == "~tok:*"
    assert ("orders", "keys tok:*") not in found
    assert ("writer", "keys tok:*") not in found


def test_logins_and_the_admin(redis_target, redis_server) -> None:
    users(redis_server, ("svc", "on", ">pw-svc-2"), ("old", "off", ">pw-old-2"))
    read = facts(redis_target)
    logins = {n.name for n in read.principals().logins}
    assert "svc" in logins and "old" not in logins
    assert {n.name for n in read.principals().admins} == {redis_server.admin_user}


def test_module_load_where_the_server_enables_it_or_cannot_say() -> None:
    mods = RedisUser("mods", True, False, ("+module",), frozenset({"module"}), frozenset())
    enabled = RedisFacts("cache", "admin", (mods,), module_command="local", debug_command="no")
    unknown = RedisFacts("cache", "admin", (mods,))
    assert [e.confidence for e in enabled.edges() if e.rule == "redis.module"] == [
        Confidence.PROVEN
    ]
    assert [e.confidence for e in unknown.edges() if e.rule == "redis.module"] == [
        Confidence.CONDITIONAL
    ]
    assert {n.what.split(" (")[0] for n in unknown.not_assessed()} == {"MODULE LOAD", "DEBUG"}
