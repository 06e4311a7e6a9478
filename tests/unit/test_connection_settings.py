"""An empty or missing connection setting is an error at its file and line, and a PostgreSQL
connection takes nothing from the environment: no PG* variable, service file or password
file fills in what the DSN leaves out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lockstep.connectors.base import TargetUnreachable
from lockstep.connectors.postgres.settings import NO_PASSFILE, exact_params
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.load import load_policy

POLICY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: {dsn}
  directory:
    type: ldap
    url: ldap://127.0.0.1:389
    bind_dn: {bind_dn}
    bind_password: ${{LDAP_PASSWORD}}
    accounts_dn: ou=people,dc=example,dc=test
    groups_dn: ou=groups,dc=example,dc=test
  cache:
    type: redis
    url: {url}
"""


def errors(tmp_path: Path, env: dict[str, str], **values: str) -> list[str]:
    fields = {"dsn": "${DSN}", "bind_dn": "cn=admin,dc=example,dc=test", "url": "${URL}"}
    path = tmp_path / "lockstep.yaml"
    path.write_text(textwrap.dedent(POLICY.format(**{**fields, **values})))
    full = {"DSN": "postgresql://a:${PW}@db/x", "URL": "redis://h", "LDAP_PASSWORD": "p", **env}
    with pytest.raises(PolicyInvalid) as info:
        load_policy(path, full)
    return [str(e) for e in info.value.errors]


def test_a_variable_set_to_the_empty_string_is_an_error_at_its_line(tmp_path: Path) -> None:
    found = errors(tmp_path, {"DSN": "", "URL": " "})
    assert any(
        e.endswith(
            ":5: environment variable DSN is set but empty: an empty setting is never a default"
        )
        for e in found
    ), found
    assert any(":15: environment variable URL is set but empty" in e for e in found), found


@pytest.mark.parametrize(
    ("values", "line", "message"),
    [
        ({"dsn": '""'}, 5, "dsn: must not be empty"),
        ({"url": "''"}, 15, "url: must not be empty"),
        ({"bind_dn": '""'}, 9, "bind_dn: must not be empty"),
        ({"dsn": "'service=orders'"}, 5, "lockstep never reads a service file"),
    ],
)
def test_an_empty_setting_or_a_service_is_refused(
    tmp_path: Path, values: dict[str, str], line: int, message: str
) -> None:
    found = errors(tmp_path, {}, **values)
    assert any(f":{line}: " in e and message.split(": ", 1)[-1] in e for e in found), found


DSN = {"host": "db.internal", "port": "5432", "user": "lockstep", "dbname": "orders"}


def test_what_the_dsn_gives_is_kept_and_the_password_file_is_never_read() -> None:
    exact = exact_params({**DSN, "password": "pw"}, {})
    assert exact == {**DSN, "password": "pw", "passfile": NO_PASSFILE}


def test_variables_are_neutralised_for_every_parameter_the_dsn_leaves_out() -> None:
    environ = {
        "PGHOST": "elsewhere",
        "PGPORT": "6543",
        "PGUSER": "intruder",
        "PGPASSWORD": "not-ours",
        "PGDATABASE": "other",
        "PGSSLMODE": "disable",
        "PGPASSFILE": "/home/me/.pgpass",
    }
    exact = exact_params({"host": "db.internal"}, environ)
    assert exact["host"] == "db.internal"
    assert exact["port"] == "5432"  # libpq's compiled default, not PGPORT
    assert exact["user"] == exact["password"] == exact["dbname"] == ""
    assert exact["sslmode"] == "prefer"
    assert exact["passfile"] == NO_PASSFILE


def test_a_service_in_the_environment_is_refused_by_name() -> None:
    with pytest.raises(TargetUnreachable, match="PGSERVICE is set in lockstep's environment"):
        exact_params(DSN, {"PGSERVICE": "orders"})
