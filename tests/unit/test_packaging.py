"""What ships besides the code: a LICENSE that is the one pyproject names, and deploy/ files
for ``lockstep run`` (a Dockerfile, a systemd unit) that run it as an unprivileged user, keep
its state in one directory and hold no secret."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_the_license_file_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", dockerfile)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in joined.splitlines())
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_runs_the_service_unprivileged_with_a_health_check() -> None:
    steps = _instructions((DEPLOY / "Dockerfile").read_text())
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    ops = dict(final)
    assert ops["USER"] == "lockstep"
    assert ops["ENTRYPOINT"] == '["lockstep"]' and ops["CMD"].startswith('["run"')
    assert "/healthz" in ops["HEALTHCHECK"] and ops["EXPOSE"] == "8787"
    assert "LOCKSTEP_STATE_DIR=/var/lib/lockstep" in ops["ENV"]
    assert ops["STOPSIGNAL"] == "SIGTERM"
    secrets = re.compile(r"(LOCKSTEP_KEY|LOCKSTEP_API_TOKEN|PASSWORD|DSN)\s*=", re.IGNORECASE)
    assert not any(secrets.search(args) for op, args in steps if op in ("ENV", "ARG"))


def _unit() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "lockstep.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_the_systemd_unit_runs_the_service_unprivileged_and_confined() -> None:
    unit = _unit()
    (start,) = unit["ExecStart"]
    assert start.split()[:2] == ["/opt/lockstep/bin/lockstep", "run"]
    assert unit["User"] == ["lockstep"] and unit["KillSignal"] == ["SIGTERM"]
    assert "LOCKSTEP_STATE_DIR=/var/lib/lockstep" in unit["Environment"]
    assert unit["StateDirectory"] == ["lockstep"] and unit["UMask"] == ["0077"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["EnvironmentFile"] == ["/etc/lockstep/lockstep.env"]  # secrets stay out of it


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_finds_nothing_wrong_with_the_unit_but_the_missing_install() -> None:
    checked = subprocess.run(
        ["systemd-analyze", "verify", str(DEPLOY / "lockstep.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (checked.stdout + checked.stderr).splitlines()
        if line.strip() and "/opt/lockstep/bin/lockstep is not executable" not in line
    ]
    assert problems == []
