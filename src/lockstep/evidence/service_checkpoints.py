"""The service's checkpoints: ``lockstep run`` signs the journal head every
``audit.checkpoint_every`` entries, or every ``audit.checkpoint_interval`` while the journal
grows, and keeps each checkpoint at ``audit.checkpoints``. Each is signed only after the
entries since the last one were checked; on start, the whole chain is checked and the
newest checkpoint kept there must still hold, else the service says so loudly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.errors import LockstepError
from lockstep.evidence import checkpoints
from lockstep.evidence.destinations import Destination, destination_for
from lockstep.journal import GENESIS_HASH, check_chain, raw_entries, read_head
from lockstep.model import AuditSettings
from lockstep.service.logs import Log
from lockstep.store import Store
from lockstep.store.tables import journal


@dataclass
class _Config:
    settings: AuditSettings
    destination: Destination
    key: Ed25519PrivateKey


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Checkpointer:
    def __init__(self, store: Store, log: Log, clock: Callable[[], datetime] = _utcnow) -> None:
        self._store = store
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._config: _Config | None = None
        self._verified: tuple[int, str] | None = None  # the chain checked up to here
        self._last: tuple[int, datetime] | None = None  # the last checkpoint: seq, when

    def load(self, settings: AuditSettings) -> None:
        """Take the policy's settings; raises CheckpointError when they cannot be used (no
        signing key), so that a service never runs believing it checkpoints."""
        destination = destination_for(settings)
        if destination is None:
            with self._lock:
                self._config = None
            return
        explicit = Path(settings.signing_key) if settings.signing_key else None
        path = checkpoints.key_path(explicit)
        key, created = checkpoints.load_or_create_key(path)
        if created:
            self._log.info(
                "signing key created",
                target=None,
                op="checkpoint",
                status="created",
                path=str(path),
                key_id=checkpoints.key_id(checkpoints.public_pem(key)),
            )
        with self._lock:
            self._config = _Config(settings, destination, key)

    def reload(self, settings: AuditSettings) -> None:
        """A policy edit: new settings, or the previous ones kept (and said) when unusable."""
        try:
            self.load(settings)
        except LockstepError as exc:
            self._error("checkpoint settings not taken: the previous ones stay", exc)

    def tick(self) -> None:
        """Write a checkpoint if one is due; errors are logged, and retried next time."""
        with self._lock:
            config = self._config
        if config is None:
            return
        try:
            self._tick(config)
        except LockstepError as exc:
            self._error("checkpoint not written", exc)

    def _tick(self, config: _Config) -> None:
        now = self._clock()
        if self._last is None:
            self._last = self._recover(config, now)
        with self._store.reading() as conn:
            head = read_head(conn)
            if head is None or head[0] == self._last[0]:
                return
            appended = head[0] - self._last[0]
            interval = timedelta(seconds=config.settings.checkpoint_interval_s)
            if appended < config.settings.checkpoint_every and now - self._last[1] < interval:
                return
            start = self._verified or (0, GENESIS_HASH)
            report = check_chain(raw_entries(conn, start[0]), head, start=start)
            if not report.ok:
                raise checkpoints.CheckpointError(
                    f"journal broken at entry {report.first_bad}: {report.reason}; run "
                    "lockstep audit verify"
                )
            at: datetime = conn.execute(
                journal.select().with_only_columns(journal.c.at).where(journal.c.seq == head[0])
            ).scalar_one()
        signed = checkpoints.sign(config.key, head[0], head[1], checkpoints.iso(at), now)
        where = config.destination.write(signed)
        self._verified = report.last
        self._last = (head[0], now)
        self._log.info(
            "checkpoint written",
            target=None,
            op="checkpoint",
            status="written",
            seq=head[0],
            where=where,
        )

    def _recover(self, config: _Config, now: datetime) -> tuple[int, datetime]:
        """Where the last run left off: the newest checkpoint kept, checked against the
        journal as it is now."""
        latest = config.destination.latest()
        if latest is None:
            return (0, now - timedelta(seconds=config.settings.checkpoint_interval_s))
        with self._store.reading() as conn:
            report = check_chain(raw_entries(conn), read_head(conn), watch=latest.seq)
        problem = (
            f"journal broken at entry {report.first_bad}: {report.reason}"
            if not report.ok
            else checkpoints.against(report, latest)
        )
        if problem is not None:
            self._log.error(
                "the journal does not hold the last checkpoint",
                target=None,
                op="checkpoint",
                status="contradicted",
                seq=latest.seq,
                problem=problem,
            )
            raise checkpoints.CheckpointError(problem)
        self._verified = report.last
        return (latest.seq, _parsed(latest.signed_at) or now)

    def _error(self, message: str, exc: LockstepError) -> None:
        self._log.error(message, target=None, op="checkpoint", status="error", error=str(exc))


def _parsed(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
