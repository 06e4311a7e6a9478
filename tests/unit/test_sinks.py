"""File sinks hand a workload its credential: owner-only, atomically, in the documented JSON."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from lockstep.credentials.sinks import Delivery, SinkError, check_sink, deliver, sink_location
from lockstep.secret import generate_password

ISSUED = datetime(2026, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def delivery(target: str = "orders-db", expires: datetime | None = None) -> Delivery:
    return Delivery(target, "payments_api", "payments_api", generate_password(), ISSUED, expires)


def test_the_file_holds_the_documented_json(tmp_path: Path) -> None:
    d = delivery(expires=datetime(2026, 7, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    deliver(f"file:{tmp_path}/creds.json", d)
    assert json.loads((tmp_path / "creds.json").read_text()) == {
        "target": "orders-db",
        "account": "payments_api",
        "username": "payments_api",
        "password": d.secret.reveal(),
        "issued_at": "2026-06-01T12:00:00Z",
        "expires_at": "2026-07-01T12:00:00Z",
    }


def test_a_credential_without_expiry_has_null_expires_at(tmp_path: Path) -> None:
    deliver(f"file:{tmp_path}/creds.json", delivery())
    assert json.loads((tmp_path / "creds.json").read_text())["expires_at"] is None


def test_the_file_is_owner_only_and_missing_dirs_are_created_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        deliver(f"file:{tmp_path}/run/secrets/creds.json", delivery())
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "run/secrets/creds.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "run/secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700


def test_deliver_returns_the_location_and_never_the_secret(tmp_path: Path) -> None:
    d = delivery()
    location = deliver(f"file:{tmp_path}/{{target}}.json", d)
    assert location == f"file:{tmp_path}/orders-db.json"
    assert d.secret.reveal() not in location


def test_target_placeholder_gives_one_file_per_target(tmp_path: Path) -> None:
    sink = f"file:{tmp_path}/{{target}}/creds.json"
    for target in ("orders-db", "billing_db.eu"):
        deliver(sink, delivery(target))
    for target in ("orders-db", "billing_db.eu"):
        written = json.loads((tmp_path / target / "creds.json").read_text())
        assert written["target"] == target


@pytest.mark.parametrize("target", ["..", "../etc", "a/b", ".hidden", "", "a\\b", "x\x00y"])
def test_target_names_that_could_escape_the_directory_are_refused(
    tmp_path: Path, target: str
) -> None:
    sink = f"file:{tmp_path}/out/{{target}}.json"
    with pytest.raises(SinkError, match="cannot be used in a file name"):
        sink_location(sink, target)
    with pytest.raises(SinkError):
        deliver(sink, delivery(target))
    assert not (tmp_path / "out").exists()


def test_a_target_name_is_not_checked_when_the_path_does_not_use_it() -> None:
    assert sink_location("file:/run/secrets/x.json", "a/b") == "file:/run/secrets/x.json"


def test_replacing_keeps_the_old_file_whole_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "creds.json"
    first = delivery()
    deliver(f"file:{path}", first)
    before = path.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    second = delivery()
    with pytest.raises(SinkError, match="No space left on device") as caught:
        deliver(f"file:{path}", second)
    assert second.secret.reveal() not in str(caught.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["creds.json"]


def test_a_directory_in_the_way_is_a_sink_error_and_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "creds.json").mkdir()
    with pytest.raises(SinkError, match="cannot write the credential"):
        deliver(f"file:{tmp_path}/creds.json", delivery())
    assert [p.name for p in tmp_path.iterdir()] == ["creds.json"]


def test_a_new_credential_replaces_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    deliver(f"file:{path}", delivery())
    newer = delivery()
    deliver(f"file:{path}", newer)
    assert json.loads(path.read_text())["password"] == newer.secret.reveal()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_replacing_gives_the_file_to_lockstep_s_user_whoever_owned_it(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    deliver(f"file:{path}", delivery())
    os.chown(path, 65534, 65534)
    deliver(f"file:{path}", delivery())
    info = path.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o600)


def test_a_naive_time_is_refused(tmp_path: Path) -> None:
    d = Delivery("t", "a", "a", generate_password(), datetime(2026, 1, 1), None)
    with pytest.raises(SinkError, match="time zone"):
        deliver(f"file:{tmp_path}/c.json", d)


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ("aws-secrets:payments api", "not a secret name"),
        ("vault:secret/x", "unknown sink 'vault'"),
        ("/run/secrets/x.json", "unknown sink"),
        ("file:", "needs a file path"),
        ("file:/run/secrets/", "needs a file path"),
        ("file:/run/{identity}.json", r"unknown placeholder \{identity\}"),
    ],
)
def test_unusable_sinks_are_refused(sink: str, message: str) -> None:
    with pytest.raises(SinkError, match=message):
        check_sink(sink)
    with pytest.raises(SinkError, match=message):
        deliver(sink, delivery())


@pytest.mark.parametrize("sink", ["file:/run/secrets/x.json", "file:rel/{target}.json"])
def test_valid_sinks_pass_the_check(sink: str) -> None:
    check_sink(sink)


def test_the_temp_file_is_created_owner_only_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_open = os.open

    def spying_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777, **kw: int) -> int:
        if flags & os.O_CREAT:
            modes.append(mode)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", spying_open)
    deliver(f"file:{tmp_path}/c.json", delivery())
    assert modes == [0o600]
