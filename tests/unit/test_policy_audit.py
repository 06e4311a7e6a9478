"""The policy's `audit:` section: where `lockstep run` keeps its signed checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep.model import AuditSettings
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.load import load_policy

BASE = "version: 1\n"


def load(tmp_path: Path, text: str) -> AuditSettings:
    path = tmp_path / "lockstep.yaml"
    path.write_text(BASE + text)
    return load_policy(path, {}).policy.audit


def test_without_an_audit_section_no_checkpoint_is_written(tmp_path: Path) -> None:
    assert load(tmp_path, "") == AuditSettings()


def test_a_relative_directory_and_key_are_resolved_beside_the_policy(tmp_path: Path) -> None:
    audit = load(
        tmp_path,
        "audit:\n  checkpoints: file:evidence/checkpoints\n  signing_key: ../keys/sign.key\n"
        "  checkpoint_every: 50\n  checkpoint_interval: 10m\n",
    )
    assert audit.checkpoints == f"file:{tmp_path.resolve() / 'evidence' / 'checkpoints'}"
    assert audit.signing_key == str((tmp_path / ".." / "keys" / "sign.key").resolve())
    assert (audit.checkpoint_every, audit.checkpoint_interval_s) == (50, 600)


def test_an_s3_bucket_is_kept_as_written(tmp_path: Path) -> None:
    audit = load(tmp_path, "audit:\n  checkpoints: s3://evidence-bucket/lockstep/prod\n")
    assert audit.checkpoints == "s3://evidence-bucket/lockstep/prod"
    assert audit.checkpoint_interval_s == 3600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("audit:\n  checkpoints: /tmp/x\n", "write where checkpoints go as file:DIR or s3://"),
        ("audit:\n  checkpoints: s3://\n", "write where checkpoints go as file:DIR or s3://"),
        ("audit:\n  checkpoint_every: 0\n", "checkpoint_every"),
        ("audit:\n  checkpoints_to: file:x\n", "unknown key 'checkpoints_to'"),
    ],
)
def test_bad_audit_settings_are_errors_with_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        load(tmp_path, text)
    [error] = caught.value.errors
    assert message in str(error) and str(error).startswith(f"{tmp_path / 'lockstep.yaml'}:3:")


def test_an_audit_section_written_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BASE + "audit:\n  checkpoint_every: 5\n")
    (tmp_path / "b.yaml").write_text("audit:\n  checkpoint_every: 6\n")
    with pytest.raises(PolicyInvalid, match="'audit' is defined twice"):
        load_policy(tmp_path, {})
