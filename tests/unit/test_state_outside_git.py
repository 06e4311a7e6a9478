"""Secrets stay out of git: the state directory is created with a ``.gitignore`` of ``*``,
``LOCKSTEP_STATE_DIR`` moves it, and ``validate`` warns of a ``file:`` sink that git would
not ignore."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lockstep.engine.workspace import GITIGNORE, ensure_state_dir

POLICY = """\
version: 1
targets:
  db: {type: redis, url: "redis://127.0.0.1:1/0"}
owners:
  team: {contacts: [a@example.com]}
identities:
  app:
    owner: team
    purpose: Serve
    access: [{target: db, account: app, entitlements: ["+get"]}]
    credentials:
      sink: file:SINK
"""
# .ci/run installs git: under CI a missing git fails rather than skips.
needs_git = pytest.mark.skipif(
    shutil.which("git") is None and os.environ.get("CI") != "true", reason="git is not installed"
)


def lockstep(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
    return subprocess.run(
        [sys.executable, "-m", "lockstep", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_new_state_directory_ignores_everything_in_it(tmp_path: Path) -> None:
    state = ensure_state_dir(tmp_path / ".lockstep")
    assert (state / ".gitignore").read_text() == GITIGNORE
    assert GITIGNORE.splitlines()[-1] == "*"
    assert state.stat().st_mode & 0o777 == 0o700
    (state / ".gitignore").write_text("# mine\n")
    ensure_state_dir(state)  # an existing directory is left as it is
    assert (state / ".gitignore").read_text() == "# mine\n"


def test_the_state_dir_can_be_moved_and_its_files_stay_out_of_the_repo(tmp_path: Path) -> None:
    (tmp_path / "lockstep.yaml").write_text(POLICY.replace("SINK", "/tmp/x.json"))
    elsewhere = tmp_path / "persisted"
    # findings opens the store and the vault key, and reads the target (unreachable here)
    ran = lockstep(tmp_path, "findings", "--json", LOCKSTEP_STATE_DIR=str(elsewhere))
    assert ran.returncode == 0, ran.stderr
    assert {p.name for p in elsewhere.iterdir()} >= {".gitignore", "state.db", "key"}
    assert not (tmp_path / ".lockstep").exists()
    beside = lockstep(tmp_path, "findings", "--json")
    assert beside.returncode == 0, beside.stderr
    assert (tmp_path / ".lockstep" / ".gitignore").read_text() == GITIGNORE


@needs_git
def test_validate_warns_of_a_file_sink_git_would_not_ignore(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "lockstep.yaml").write_text(POLICY.replace("SINK", ".secrets/app.json"))
    warned = lockstep(tmp_path, "validate")
    assert warned.returncode == 0
    assert "lockstep.yaml:12: warning: the sink" in warned.stderr
    assert "git does not ignore it" in warned.stderr
    (tmp_path / ".gitignore").write_text(".secrets/\n")
    quiet = lockstep(tmp_path, "validate")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_a_sink_outside_any_work_tree_is_no_warning(tmp_path: Path) -> None:
    (tmp_path / "lockstep.yaml").write_text(POLICY.replace("SINK", str(tmp_path / "app.json")))
    ran = lockstep(tmp_path, "validate")
    assert ran.returncode == 0 and "warning" not in ran.stderr
