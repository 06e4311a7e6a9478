"""Loading policies: every error names its file and line, and all are reported at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lockstep.connectors.postgres.settings import PostgresSettings
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.load import load_policy
from lockstep.secret import Secret

ENV = {"DSN": "postgresql://admin:s3cret-pw@127.0.0.1:5432/orders"}

GOOD = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${DSN}
    environment: prod
    manage:
      exclude: [dba_alice]
owners:
  payments-team:
    contacts: [alice@example.com]
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    environment: prod
    access:
      - target: orders-db
        account: payments_api
        entitlements:
          - role:app_readonly
          - select ON TABLE public.orders
          - usage on schema billing
          - CONNECT on database orders
        expires: 2027-03-31T00:00:00Z
    credentials:
      rotate_every: 30d
      sink: file:/run/secrets/payments-api.json
rules:
  orphan_accounts: suspend
  mass_change_limit: 10%
"""


def write(tmp_path: Path, text: str, name: str = "lockstep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        load_policy(path, ENV if env is None else env)
    return [str(e) for e in info.value.errors]


def test_a_valid_policy_loads_with_canonical_entitlements(tmp_path):
    loaded = load_policy(write(tmp_path, GOOD), ENV)
    policy = loaded.policy
    [access] = policy.identities["payments-api"].access
    assert access.entitlements == {
        "role:app_readonly",
        "SELECT on table public.orders",
        "USAGE on schema billing",
        "CONNECT on database orders",
    }
    assert access.expires is not None and access.expires.tzinfo is not None
    assert policy.identities["payments-api"].credentials.rotate_every_s == 30 * 86400
    assert policy.rules.mass_change_limit == pytest.approx(0.10)
    target = policy.targets["orders-db"]
    assert {"dba_alice", "admin"} <= target.exclude  # the admin lockstep connects as, always
    assert isinstance(target.settings, PostgresSettings)  # the connector's own, typed
    assert isinstance(target.settings.dsn, Secret)
    assert "s3cret-pw" not in repr(loaded)


def test_malformed_yaml_points_at_the_line(tmp_path):
    path = write(tmp_path, "version: 1\ntargets:\n  db: [unclosed\n")
    [error] = errors_of(path)
    assert error.startswith(f"{path}:")
    assert "malformed YAML" in error


def test_a_duplicate_key_is_an_error_not_a_silent_overwrite(tmp_path):
    path = write(tmp_path, GOOD.replace("rules:\n", "rules:\n  orphan_accounts: delete\n"))
    [error] = errors_of(path)
    assert "duplicate key 'orphan_accounts'" in error


def test_every_error_is_reported_at_once_with_its_line(tmp_path):
    text = GOOD.replace("owner: payments-team", "owner: nobody").replace(
        "- target: orders-db", "- target: nowhere"
    )
    path = write(tmp_path, text)
    errors = errors_of(path)
    lines = GOOD.splitlines()
    owner_line = next(i for i, ln in enumerate(lines, 1) if "owner: payments-team" in ln)
    target_line = next(i for i, ln in enumerate(lines, 1) if "- target: orders-db" in ln)
    assert f"{path}:{owner_line}: unknown owner 'nobody' (known: payments-team)" in errors
    assert any(e.startswith(f"{path}:{target_line}: unknown target 'nowhere'") for e in errors)


def test_a_bad_entitlement_names_its_own_line(tmp_path):
    path = write(tmp_path, GOOD.replace("usage on schema billing", "FLY on schema billing"))
    [error] = errors_of(path)
    line = next(i for i, ln in enumerate(GOOD.splitlines(), 1) if "usage on schema" in ln)
    assert error.startswith(f"{path}:{line}: ")


def test_a_missing_environment_variable_is_named(tmp_path):
    [error] = errors_of(write(tmp_path, GOOD), env={})
    assert "environment variable DSN is not set" in error


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://admin:hunter22@db:5432/orders",
        "host=db user=admin password=hunter22",
    ],
)
def test_a_literal_password_is_refused(tmp_path, dsn):
    [error] = errors_of(write(tmp_path, GOOD.replace("${DSN}", f"'{dsn}'")))
    assert "literally" in error and "hunter22" not in error


def test_a_password_key_must_come_from_the_environment_or_a_file(tmp_path):
    text = GOOD.replace("    environment: prod\n    manage:", "    password: hunter22\n    manage:")
    errors = errors_of(write(tmp_path, text))
    assert any("'password' holds a literal secret" in e for e in errors)
    assert not any("hunter22" in e for e in errors)


def test_a_secret_may_come_from_a_file(tmp_path):
    (tmp_path / "dsn.txt").write_text(ENV["DSN"] + "\n")
    loaded = load_policy(write(tmp_path, GOOD.replace("${DSN}", "file:dsn.txt")), {})
    settings = loaded.policy.targets["orders-db"].settings
    assert isinstance(settings, PostgresSettings) and settings.dsn.reveal() == ENV["DSN"]


def test_a_directory_is_merged_and_a_name_defined_twice_names_both_places(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, "targets:\n  orders-db:\n    type: postgres\n    dsn: ${DSN}\n", "b.yaml")
    [error] = errors_of(tmp_path)
    assert error.startswith(f"{tmp_path / 'b.yaml'}:2: target 'orders-db' is defined twice")
    assert f"{tmp_path / 'a.yaml'}:3" in error


def test_unknown_keys_and_types_are_errors(tmp_path):
    text = GOOD.replace("    purpose:", "    purpse: typo\n    purpose:").replace(
        "rotate_every: 30d", "rotate_every: monthly"
    )
    errors = errors_of(write(tmp_path, text))
    assert any("unknown key 'purpse'" in e for e in errors)
    assert any("rotate_every" in e and "duration" in e for e in errors)


def test_an_unknown_target_type_lists_the_known_ones(tmp_path):
    [error] = errors_of(write(tmp_path, GOOD.replace("type: postgres", "type: oracle")))
    assert "unknown target type 'oracle'" in error and "postgres" in error


@pytest.mark.parametrize("name", ['a"b', "x; DROP ROLE y", "Robert'); --", "søren-ü", "a" * 63])
def test_hostile_but_legal_account_names_are_accepted(tmp_path, name):
    text = GOOD.replace("account: payments_api", f"account: {yaml_quote(name)}")
    [access] = load_policy(write(tmp_path, text), ENV).policy.identities["payments-api"].access
    assert access.account == name


def test_an_account_name_postgres_would_truncate_is_refused(tmp_path):
    text = GOOD.replace("account: payments_api", "account: " + "a" * 64)
    [error] = errors_of(write(tmp_path, text))
    assert "63" in error


def test_an_excluded_account_cannot_be_declared(tmp_path):
    [error] = errors_of(
        write(tmp_path, GOOD.replace("account: payments_api", "account: dba_alice"))
    )
    assert "excluded" in error


def test_several_targets_need_target_in_the_sink_path(tmp_path):
    text = GOOD.replace(
        "        expires: 2027-03-31T00:00:00Z\n",
        "        expires: 2027-03-31T00:00:00Z\n      - target: other-db\n        account: x\n",
    ).replace("owners:", "  other-db:\n    type: postgres\n    dsn: ${DSN}\nowners:")
    [error] = errors_of(write(tmp_path, text))
    assert "{target}" in error


def yaml_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def test_lockstep_schema_prints_a_json_schema_with_every_connectors_keys():
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "lockstep", "schema"], capture_output=True, text=True, check=True
    )
    schema = json.loads(proc.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    variants = schema["properties"]["targets"]["additionalProperties"]["oneOf"]
    kinds = {v["properties"]["type"]["const"]: v for v in variants}
    assert {"postgres", "ldap", "redis", "aws"} <= set(kinds)
    assert "dsn" in kinds["postgres"]["required"]
    assert "identities" in schema["properties"]
