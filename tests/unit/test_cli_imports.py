"""The CLI starts fast: a command loads only what it uses (no web stack, no SDK of a target
type the policy does not name), which is what makes `lockstep --help` and `validate` quick in a
pre-commit hook and the suite's many CLI subprocesses cheaper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

POLICY = """\
version: 1
targets:
  db:
    type: postgres
    dsn: ${DB_DSN}
owners:
  team: {contacts: [a@example.com]}
identities:
  app:
    owner: team
    purpose: test
    access: [{target: db, account: app, entitlements: ["role:r"]}]
"""
HEAVY = ("fastapi", "starlette", "uvicorn", "boto3", "botocore", "ldap3", "redis", "structlog")
PROBE = """\
import json, sys
from lockstep.cli.app import main
sys.argv = ["lockstep", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def _loaded(tmp_path: Path, *args: str) -> set[str]:
    (tmp_path / "lockstep.yaml").write_text(POLICY)
    env = {**os.environ, "DB_DSN": "postgresql://app@127.0.0.1:1/db"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [("--help",), ("validate",), ("plan",)])
def test_a_command_loads_no_web_stack_and_no_unused_sdk(tmp_path: Path, args: tuple[str]) -> None:
    assert _loaded(tmp_path, *args).isdisjoint(HEAVY)


def test_help_and_validate_do_not_load_the_state_store(tmp_path: Path) -> None:
    for args in (("--help",), ("validate",)):
        assert "sqlalchemy" not in _loaded(tmp_path, *args)
