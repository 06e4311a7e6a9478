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
from support.tls import TlsFiles

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
    tls_port: int | None = None  # where it speaks TLS too, when started with TLS files

    name = "redis-server"
    error = LocalRedisError

    def url(self) -> str:
        return f"redis://{self.admin_user}:{self.password.reveal()}@{self.host}:{self.port}/0"

    def tls_url(self, ca: Path | None) -> str:
        """The admin's rediss:// URL; ``ca``: the CA file the client trusts (None: the
        system's)."""
        trust = f"?ssl_ca_certs={ca}" if ca is not None else ""
        user = f"{self.admin_user}:{self.password.reveal()}"
        return f"rediss://{user}@{self.host}:{self.tls_port}/0{trust}"

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


def _config(
    directory: Path, port: int, password: Secret, aclfile: bool, tls: tuple[TlsFiles, int] | None
) -> str:
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
            *(
                [
                    f"tls-port {tls[1]}",
                    f"tls-cert-file {tls[0].cert}",
                    f"tls-key-file {tls[0].key}",
                    f"tls-ca-cert-file {tls[0].ca}",
                    "tls-auth-clients no",
                ]
                if tls is not None
                else []
            ),
            "",
        ]
    )


def start(aclfile: bool = False, tls: TlsFiles | None = None) -> LocalRedis:
    """Start a server; returns once the admin can run commands on it. With ``aclfile`` the
    users live in ``users.acl`` in the server's directory (else in its config file)."""
    binary = _binary()
    directory = temp_dir("redis")
    port = free_port()
    password = generate_password()
    config = directory / "redis.conf"
    config.touch(mode=0o600)
    tls_port = free_port() if tls is not None else None
    listening = (tls, tls_port) if tls is not None and tls_port is not None else None
    config.write_text(_config(directory, port, password, aclfile, listening))
    server = LocalRedis(
        directory, [binary, str(config)], port, ADMIN_USER, password, tls_port=tls_port
    )
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
