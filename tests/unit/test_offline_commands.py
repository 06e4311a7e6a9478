"""The commands a pre-commit hook and a laptop run need no secret: ``validate --offline``
accepts unset ``${VAR}``s and unread ``file:`` secrets and checks everything else;
``permissions`` and ``schema`` run with nothing set; ``-c DIR`` merges only visible
``*.yaml``/``*.yml`` files; the repository ships a pre-commit hook that runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
POLICY = """\
version: 1
targets:
  db:
    type: postgres
    dsn: ${UNSET_DSN}
  directory:
    type: ldap
    url: ldap://ldap.example.com
    bind_dn: cn=lockstep,dc=example,dc=com
    bind_password: file:secrets/ldap-password
    accounts_dn: ou=people,dc=example,dc=com
    groups_dn: ou=groups,dc=example,dc=com
owners:
  team: {contacts: [a@example.com]}
identities:
  app:
    owner: team
    purpose: Serve
    access:
      - {target: db, account: app, entitlements: ["role:readers"]}
      - {target: directory, account: app, entitlements: ["group:readers"]}
    credentials: {sink: "file:${UNSET_DIR}/app-{target}.json"}
"""


def lockstep(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNSET_", "LOCKSTEP_"))}
    return subprocess.run(
        [sys.executable, "-m", "lockstep", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "lockstep.yaml").write_text(POLICY)
    return tmp_path


def test_validate_offline_needs_no_variable_and_no_secret_file(project: Path) -> None:
    offline = lockstep(project, "validate", "--offline")
    assert offline.returncode == 0, offline.stderr
    assert "(offline)" in offline.stdout
    online = lockstep(project, "validate")
    assert online.returncode == 1
    assert "environment variable UNSET_DSN is not set" in online.stderr
    assert "cannot read secret file" in online.stderr


def test_validate_offline_still_checks_everything_else(project: Path) -> None:
    broken = POLICY.replace("owner: team", "owner: teem").replace(
        '"role:readers"', '"SELEC on table t"'
    )
    broken = broken.replace("url: ldap://ldap.example.com", "url: http://ldap.example.com")
    broken += "rules: {orphan_accounts: sometimes}\n"
    (project / "lockstep.yaml").write_text(broken)
    found = lockstep(project, "validate", "--offline")
    assert found.returncode == 1
    for line, what in [(8, "url"), (17, "unknown owner 'teem'"), (20, "SELEC"), (23, "orphan")]:
        assert f"lockstep.yaml:{line}: " in found.stderr and what in found.stderr, found.stderr
    assert "UNSET_DSN" not in found.stderr


def test_permissions_and_schema_run_with_nothing_set(project: Path) -> None:
    permissions = lockstep(project, "permissions", "--json")
    assert permissions.returncode == 0, permissions.stderr
    assert '"db"' in permissions.stdout and '"directory"' in permissions.stdout
    assert lockstep(project, "schema").returncode == 0


def test_a_directory_merges_only_visible_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "targets.yaml").write_text(POLICY.split("owners:")[0])
    (tmp_path / "people.yml").write_text("owners:" + POLICY.split("owners:")[1])
    for hidden in (".#targets.yaml", ".draft.yaml"):
        (tmp_path / hidden).write_text("version: 2\nnonsense: [")
    (tmp_path / "notes.txt").write_text("not yaml")
    found = lockstep(tmp_path, "validate", "--offline", "-c", str(tmp_path))
    assert found.returncode == 0, found.stderr
    assert "in 2 file(s)" in found.stdout


def test_the_repository_ships_a_pre_commit_hook_that_runs_offline(project: Path) -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "lockstep-validate" and hook["pass_filenames"] is False
    command, *args = hook["entry"].split()
    assert command == "lockstep" and args == ["validate", "--offline"]
    ran = lockstep(project, *args, "-c", str(project / "lockstep.yaml"))
    assert ran.returncode == 0, ran.stderr
