"""The command line behaves as engineers expect of a CLI in CI: --version, -h, shell
completion, --debug and --no-color before or after the command, usage errors exit 64,
NO_COLOR and --no-color leave no escape code, --json is nothing but JSON, and help shows no
``<bool>`` for a flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lockstep import __version__

POLICY = """\
version: 1
targets:
  cache: {type: redis, url: "redis://127.0.0.1:1/0"}
owners:
  team: {contacts: [a@example.com]}
identities:
  app:
    owner: team
    purpose: Serve
    access: [{target: cache, account: app, entitlements: ["+get"]}]
"""
ESC = "\x1b"


def lockstep(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    base = {k: v for k, v in base.items() if not k.startswith("LOCKSTEP_")}
    return subprocess.run(
        [sys.executable, "-m", "lockstep", *args],
        cwd=cwd,
        env={**base, "COLUMNS": "100", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "lockstep.yaml").write_text(POLICY)
    return tmp_path


def test_version_and_short_help(project: Path) -> None:
    version = lockstep(project, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"lockstep {__version__}"
    for args in (("-h",), ("plan", "-h"), ("findings", "accept", "-h")):
        shown = lockstep(project, *args)
        assert shown.returncode == 0 and "Usage: lockstep" in shown.stdout, args


def test_shell_completion_is_offered(project: Path) -> None:
    assert "--install-completion" in lockstep(project, "-h").stdout
    script = lockstep(project, "--show-completion", "bash")
    assert script.returncode == 0 and "_LOCKSTEP_COMPLETE" in script.stdout


def test_help_shows_no_type_for_a_flag(project: Path) -> None:
    for args in (("-h",), ("plan", "-h"), ("verify", "-h"), ("findings", "-h")):
        shown = lockstep(project, *args).stdout
        assert "<bool>" not in shown and "<str>" not in shown, shown
    assert "--state" in (shown := lockstep(project, "plan", "-h").stdout) and "URL" in shown


@pytest.mark.parametrize(
    "args",
    [
        ("--bogus",),
        ("plan", "--bogus"),
        ("rotate",),  # a missing argument
        ("no-such-command",),
        ("plan", "--findings", "some"),  # a value not among the choices
        (),  # no command at all
    ],
)
def test_usage_errors_exit_64_never_2(project: Path, args: tuple[str, ...]) -> None:
    assert lockstep(project, *args).returncode == 64


def test_debug_and_no_color_work_after_the_command(project: Path) -> None:
    after = lockstep(project, "validate", "--debug", "--no-color", FORCE_COLOR="1")
    assert after.returncode == 0 and ESC not in after.stdout + after.stderr
    missing = lockstep(project, "plan", "-c", "nowhere.yaml", "--debug")
    assert missing.returncode == 1 and "no such policy file" in missing.stderr


@pytest.mark.parametrize(
    "args",
    [("-h",), ("validate",), ("plan",), ("--bogus",), ("findings",)],
)
def test_no_color_leaves_no_escape_code(project: Path, args: tuple[str, ...]) -> None:
    coloured = lockstep(project, *args, FORCE_COLOR="1")
    assert ESC in coloured.stdout + coloured.stderr  # forced colour does colour
    for plain in (
        lockstep(project, *args, FORCE_COLOR="1", NO_COLOR="1"),
        lockstep(project, "--no-color", *args, FORCE_COLOR="1"),
    ):
        assert ESC not in plain.stdout + plain.stderr, args


def test_json_is_nothing_but_json(project: Path) -> None:
    for args in (("plan", "--json"), ("verify", "--json"), ("findings", "--json")):
        ran = lockstep(project, *args, FORCE_COLOR="1")
        json.loads(ran.stdout)
        assert ran.stderr == "", (args, ran.stderr)
