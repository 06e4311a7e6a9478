"""The README's access reviews section: its policy keys load as written, and its commands
are the CLI's."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from lockstep.model import IdentityKind, RuleAction
from lockstep.policy.load import load_policy

ROOT = Path(__file__).resolve().parents[2]
SECTION = (ROOT / "README.md").read_text().split("## Access reviews and agents", 1)[1]
SECTION = SECTION.split("\n## ", 1)[0]

BASE = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
    environment: prod
owners:
  payments-team:
    contacts: [alice@example.com]
"""


def test_the_sections_policy_loads_as_written(tmp_path: Path) -> None:
    [block] = re.findall(r"```yaml\n(.*?)```", SECTION, re.S)
    (tmp_path / "lockstep.yaml").write_text(BASE + textwrap.dedent(block))
    env = {"ORDERS_DB_DSN": "postgresql://admin@127.0.0.1:1/orders"}
    policy = load_policy(tmp_path / "lockstep.yaml", env).policy
    assert policy.rules.review_every_s == {"prod": 90 * 86400, "default": 180 * 86400}
    assert policy.rules.unreviewed is RuleAction.SUSPEND
    agent = policy.identities["triage-agent"]
    assert agent.kind is IdentityKind.AGENT and agent.credentials.lease_max_ttl_s == 1800


def test_the_sections_commands_exist() -> None:
    from typer.main import get_command

    from lockstep.cli.app import app

    names = set(get_command(app).commands)  # type: ignore[attr-defined]
    [block] = re.findall(r"```sh\n(.*?)```", SECTION, re.S)
    for line in block.splitlines():
        for command in re.findall(r"lockstep (\w+)", line):
            assert command in names, command
