"""Signed checkpoints of the journal head, kept outside the state store.

A checkpoint says "entry N of this journal had hash H", signed with an Ed25519 key that
lives outside the store (``--key PATH``, ``LOCKSTEP_SIGNING_KEY``, or the service's
``audit.signing_key``). Whoever can rewrite the store can recompute every hash of the chain,
but not this signature: verifying the journal against a checkpoint, with the public key the
auditor trusts, catches a journal rewritten consistently or rolled back to before it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lockstep.errors import LockstepError
from lockstep.journal import ChainReport

KEY_ENV = "LOCKSTEP_SIGNING_KEY"
FORMAT = "lockstep-checkpoint"
VERSION = 1
_SIGNED = ("format", "version", "seq", "hash", "head_at", "signed_at", "public_key")


class CheckpointError(LockstepError):
    """A signing key or a checkpoint that cannot be used."""

    code = "checkpoint_unusable"
    default_hint = "a checkpoint is checked with the public key you trust (audit public-key)"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    head_at: str | None
    signed_at: str
    public_key: str  # PEM
    signature: str  # base64

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "seq": self.seq,
            "hash": self.hash,
            "head_at": self.head_at,
            "signed_at": self.signed_at,
            "public_key": self.public_key,
        }

    def to_json(self) -> str:
        return json.dumps({**self.body(), "signature": self.signature}, indent=2) + "\n"

    @property
    def name(self) -> str:
        """The file or object name the service gives it: in the order of the seq it covers."""
        return f"checkpoint-{self.seq:012d}.json"


def key_path(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    from_env = os.environ.get(KEY_ENV)
    if not from_env:
        raise CheckpointError(
            f"no signing key: give --key PATH or set {KEY_ENV} to a path outside the state store"
        )
    return Path(from_env).expanduser()


def load_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key at ``path``, created (mode 0600, never overwritten) when missing; and whether
    it was created now."""
    try:
        return _read_key(path), False
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_key(path), False  # another process made it first
    except OSError as exc:
        raise CheckpointError(f"cannot create the signing key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return key, True


def _read_key(path: Path) -> Ed25519PrivateKey:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CheckpointError(f"cannot read the signing key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if info.st_mode & 0o077:
            raise CheckpointError(
                f"the signing key {path} is accessible to group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )
        data = f.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CheckpointError(f"{path} does not hold a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} holds a key that is not Ed25519")
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_id(pem: str) -> str:
    """A short name for a public key: the start of the SHA-256 of its raw bytes."""
    raw = _public_key(pem).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(
    key: Ed25519PrivateKey, seq: int, digest: str, head_at: str | None, now: datetime
) -> Checkpoint:
    unsigned = Checkpoint(seq, digest, head_at, iso(now), public_pem(key), "")
    signature = key.sign(_message(unsigned.body()))
    return Checkpoint(**{**unsigned.__dict__, "signature": base64.b64encode(signature).decode()})


def read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint at ``path``; a directory stands for the newest checkpoint in it."""
    if path.is_dir():
        found = sorted(path.glob("checkpoint-*.json"))
        if not found:
            raise CheckpointError(f"no checkpoint-*.json in {path}")
        path = found[-1]
    try:
        return parse_checkpoint(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None


def parse_checkpoint(text: str, where: str) -> Checkpoint:
    try:
        data = json.loads(text)
    except ValueError:
        raise CheckpointError(f"{where} is not JSON: not a checkpoint") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a lockstep checkpoint")
    if set(data) != {*_SIGNED, "signature"} or data.get("version") != VERSION:
        raise CheckpointError(f"{where}: unexpected fields or version for a checkpoint")
    try:
        return Checkpoint(
            seq=_typed(data["seq"], int),
            hash=_typed(data["hash"], str),
            head_at=None if data["head_at"] is None else _typed(data["head_at"], str),
            signed_at=_typed(data["signed_at"], str),
            public_key=_typed(data["public_key"], str),
            signature=_typed(data["signature"], str),
        )
    except TypeError:
        raise CheckpointError(f"{where}: a field of the checkpoint has the wrong type") from None


def check_signature(checkpoint: Checkpoint, trusted_pem: str) -> None:
    """Raise CheckpointError unless ``checkpoint`` is signed by the trusted key."""
    trusted = _public_key(trusted_pem)
    if _public_key(checkpoint.public_key).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) != trusted.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw):
        raise CheckpointError(
            f"the checkpoint is signed by key {key_id(checkpoint.public_key)}, "
            f"not by the key you trust ({key_id(trusted_pem)})"
        )
    try:
        trusted.verify(base64.b64decode(checkpoint.signature), _message(checkpoint.body()))
    except (InvalidSignature, ValueError):
        raise CheckpointError(
            "the checkpoint's signature does not verify: it was altered after it was signed"
        ) from None


def against(report: ChainReport, checkpoint: Checkpoint) -> str | None:
    """Why a journal whose chain is intact (``report``, watched at the checkpoint's seq)
    contradicts the checkpoint, or None when it holds it."""
    if report.entries < checkpoint.seq:
        return (
            f"the journal was rolled back: it ends at entry {report.entries}, but the "
            f"checkpoint signed {checkpoint.signed_at} records entry {checkpoint.seq}"
        )
    if report.watched != checkpoint.hash:
        return (
            f"the journal was rewritten before the checkpoint: entry {checkpoint.seq} does not "
            f"match the hash the checkpoint signed {checkpoint.signed_at} records"
        )
    return None


def _public_key(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise CheckpointError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError("the public key is not an Ed25519 key")
    return key


def _message(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _typed(value: object, kind: type[Any]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(kind.__name__)
    return value


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
