"""The keys of a ``type: postgres`` target, how its DSN is read without ever quoting it, and
how a connection is made with exactly the DSN's parameters.

libpq fills every parameter a connection string leaves out from a ``PG*`` environment variable,
a service file (``PGSERVICE``) or the password file (``~/.pgpass``). Lockstep's connections
must not: a variable left over in a CI job or a developer's shell would silently point the
admin connection somewhere else, or log in with a password nobody gave lockstep. So each
parameter the DSN leaves out is set to libpq's compiled default, or left empty where empty
means "not given", and the password file is pointed at a path that cannot exist.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lockstep.connectors.base import SecretValue, TargetUnreachable
from lockstep.connectors.postgres import leases
from lockstep.secret import Secret, register

INVALID_DSN = (
    "the dsn is not a valid PostgreSQL connection string "
    "(expected postgresql://USER@HOST:PORT/DB or key=value pairs)"
)


class PostgresSettings(BaseModel):
    # The dsn holds a password: it must not be echoed by a validation error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    dsn: SecretValue = Field(
        description="The admin connection (${VAR} or file:PATH): postgresql://USER@HOST:PORT/DB"
    )
    probe_host: str | None = Field(
        default=None, description="Where probes log in over TCP (default: the dsn's host)"
    )
    probe_port: int | None = Field(
        default=None, ge=1, le=65535, description="The probes' port (default: the dsn's)"
    )
    # PBKDF2 rounds in lease verifiers: they dominate the cost of issuing a lease, and fewer
    # keep a 24+ character random secret just as unguessable; but pgjdbc refuses fewer
    # than 4096.
    lease_scram_iterations: int = Field(
        default=leases.DEFAULT_SCRAM_ITERATIONS,
        ge=1,
        description="PBKDF2 rounds of a lease's SCRAM verifier",
    )
    # The same for the passwords of the accounts lockstep creates, restores and rotates: each
    # login (a workload's, and the probe that proves a new credential) pays them too.
    scram_iterations: int = Field(
        default=leases.DEFAULT_SCRAM_ITERATIONS,
        ge=1,
        description="PBKDF2 rounds of the SCRAM verifiers of the accounts lockstep manages",
    )
    # Tables where credentials are kept (SCHEMA.TABLE): whoever may read them is on a path to
    # those credentials (``lockstep paths``).
    secret_tables: list[str] = Field(
        default_factory=list,
        description="SCHEMA.TABLE where credentials are kept (for lockstep paths)",
    )

    @field_validator("secret_tables")
    @classmethod
    def _schema_dot_table(cls, value: list[str]) -> list[str]:
        for name in value:
            schema, dot, table = name.partition(".")
            if not (dot and schema and table):
                raise ValueError(f"secret_tables: write {name!r} as SCHEMA.TABLE")
        return value

    def secret_table_names(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (schema, table) for schema, _, table in (n.partition(".") for n in self.secret_tables)
        )

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, value: Secret) -> Secret:
        params = parse_dsn(value.reveal())
        if params is None:
            raise ValueError(INVALID_DSN)
        if "service" in params:
            raise ValueError(
                "the dsn names a service: lockstep never reads a service file; "
                "write the connection parameters out in the dsn"
            )
        # A key=value DSN's password, as much as a URL's, may be quoted alone by a driver.
        if params.get("password"):
            register(str(params["password"]))
        return value

    def dsn_params(self) -> dict[str, Any]:
        """The DSN's parameters; validation made sure that it parses."""
        params = parse_dsn(self.dsn.reveal())
        assert params is not None
        return params

    @field_validator("probe_host")
    @classmethod
    def _probe_over_tcp(cls, value: str | None) -> str | None:
        if value is not None and is_socket(value):
            raise ValueError(
                "probe_host must be a TCP host: probes over a unix socket prove nothing"
            )
        return value


def parse_dsn(dsn: str) -> dict[str, Any] | None:
    """The DSN's parameters, or None. libpq's parse errors quote fragments of the string,
    which may hold the password, so they are never shown."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return None
    port = str(params.get("port", "0"))
    # A '/' in a URL password shifts the rest into the port, which libpq would then quote.
    if not all(p.isdigit() for p in port.split(",")):
        return None
    return params


def is_socket(host: str) -> bool:
    return host.startswith(("/", "@"))


# Parameters for which an empty value means "not given" to libpq (it then uses its built-in
# behaviour: the OS user name, the user's name as database, the default socket directory).
_EMPTY_IS_UNSET = frozenset(
    {
        "user",
        "password",
        "dbname",
        "host",
        "hostaddr",
        "client_encoding",
        "application_name",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "requirepeer",
        "gsslib",
    }
)
# A path stat() cannot succeed on (a file below /dev/null): libpq then reads no password file.
NO_PASSFILE = "/dev/null/lockstep-reads-no-password-file"


def exact_params(
    params: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``params`` completed so that libpq takes nothing from the environment, a service file
    or the password file. TargetUnreachable when a variable in ``environ`` would reach the
    connection anyway (``PGSERVICE``, or one without a neutral value), naming it."""
    environ = os.environ if environ is None else environ
    exact = dict(params)
    exact.setdefault("passfile", NO_PASSFILE)
    for option in pq.Conninfo.get_defaults():
        key = option.keyword.decode()
        var = option.envvar.decode() if option.envvar is not None else None
        if key in exact or var is None or var not in environ:
            continue
        if option.compiled is not None:
            exact[key] = option.compiled.decode()
        elif key in _EMPTY_IS_UNSET:
            exact[key] = ""
        else:
            raise TargetUnreachable(
                f"{var} is set in lockstep's environment and libpq would use it: lockstep "
                f"connects with exactly the dsn's parameters; unset {var}"
                + ("" if key == "service" else f" or give {key} in the dsn")
            )
    return exact
