"""A private, throw-away redis-server on 127.0.0.1, and the pytest fixtures built on it.

The admin is a dedicated ACL user, as in a real deployment; ``default`` is disabled. Its
password reaches the server only as a SHA-256 hash in a 0600 config file: never on the
command line, where ``ps`` would show it.

Use the fixtures from a test module with ``pytest_plugins = ("services.redis_server",)``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from lockstep.connectors.redis.connector import RedisSettings
from lockstep.model import Target
from lockstep.secret import Secret, generate_password
from services.process import (
    ServerProcess,
    ServerUnavailable,
    free_port,
    start_or_unavailable,
    temp_dir,
)

ADMIN_USER = "lockstep_admin"


class LocalRedisError(ServerUnavailable):
    pass


@dataclass
class LocalRedis(ServerProcess):
    """A running server. ``url()`` holds the admin password: treat it as a secret."""

    port: int
    admin_user: str
    password: Secret
    host: str = "127.0.0.1"

    name = "redis-server"
    error = LocalRedisError

    def url(self) -> str:
        return f"redis://{self.admin_user}:{self.password.reveal()}@{self.host}:{self.port}/0"

    def admin(self) -> redis.Redis:
        # Tests make users whose names are not UTF-8; cleaning up must still name them exactly.
        return redis.Redis.from_url(
            self.url(), decode_responses=True, encoding_errors="surrogateescape"
        )

    def answers(self) -> bool:
        try:
            with self.admin() as client:
                client.ping()
        except redis.exceptions.ConnectionError:
            return False
        return True


def _binary() -> str:
    found = os.environ.get("LOCKSTEP_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise LocalRedisError("no redis-server binary (apt-get install redis-server)")
    return found


def _users(password: Secret) -> list[str]:
    digest = hashlib.sha256(password.reveal().encode()).hexdigest()
    return ["user default off resetpass", f"user {ADMIN_USER} on #{digest} ~* &* +@all"]


def _config(directory: Path, port: int, password: Secret, aclfile: bool) -> str:
    if aclfile:
        acl = directory / "users.acl"
        acl.touch(mode=0o600)
        acl.write_text("\n".join([*_users(password), ""]))
    # Redis refuses users in both places; an ACL file is where ACL SAVE writes.
    users = [f"aclfile {directory / 'users.acl'}"] if aclfile else _users(password)
    return "\n".join(
        [
            "bind 127.0.0.1",
            f"port {port}",
            f"dir {directory}",
            f"unixsocket {directory / 'redis.sock'}",
            "unixsocketperm 700",
            'save ""',
            "appendonly no",
            "daemonize no",
            *users,
            "",
        ]
    )


def start(aclfile: bool = False) -> LocalRedis:
    """Start a server; returns once the admin can run commands on it. With ``aclfile`` the
    users live in ``users.acl`` in the server's directory (else in its config file)."""
    binary = _binary()
    directory = temp_dir("redis")
    port = free_port()
    password = generate_password()
    config = directory / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(_config(directory, port, password, aclfile))
    server = LocalRedis(directory, [binary, str(config)], port, ADMIN_USER, password)
    server.launch()
    return server


def reset(server: LocalRedis) -> None:
    """Delete every ACL user but ``default`` and the admin (which drops their connections),
    and every key."""
    with server.admin() as client:
        users = [u for u in client.acl_users() if u not in {"default", server.admin_user}]
        if users:
            client.acl_deluser(*users)
        client.flushall()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    server = start_or_unavailable(start)
    yield server
    server.stop()


@pytest.fixture
def redis_target(redis_server: LocalRedis) -> Iterator[Target]:
    """A lockstep target on the shared server, free of test users before and after."""
    reset(redis_server)
    yield Target(
        name="cache",
        type="redis",
        environment=None,
        exclude=frozenset(),
        legacy=False,
        settings=RedisSettings(url=Secret(redis_server.url())),
    )
    reset(redis_server)
