"""The keys of a ``type: postgres`` target, and how its DSN is read without ever quoting it."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lockstep.connectors.base import SecretValue
from lockstep.connectors.postgres import leases
from lockstep.secret import Secret, register

INVALID_DSN = (
    "the dsn is not a valid PostgreSQL connection string "
    "(expected postgresql://USER@HOST:PORT/DB or key=value pairs)"
)


class PostgresSettings(BaseModel):
    # The dsn holds a password: it must not be echoed by a validation error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    dsn: SecretValue
    probe_host: str | None = None
    probe_port: int | None = Field(default=None, ge=1, le=65535)
    # PBKDF2 rounds in lease verifiers: they dominate the cost of issuing a lease, and fewer
    # keep a 24+ character random secret just as unguessable; but pgjdbc refuses fewer
    # than 4096.
    lease_scram_iterations: int = Field(default=leases.DEFAULT_SCRAM_ITERATIONS, ge=1)
    # Tables where credentials are kept (SCHEMA.TABLE): whoever may read them is on a path to
    # those credentials (``lockstep paths``).
    secret_tables: list[str] = Field(default_factory=list)

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
