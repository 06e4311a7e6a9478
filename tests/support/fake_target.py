"""An in-memory target behind the connector interface, for unit tests of the engine's effects
(apply, verify, audit): code of ours on both sides, so a fake is fair here. Real targets are
tested through the conformance suite."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.fernet import Fernet
from pydantic import BaseModel

from lockstep.connectors.base import (
    ActionFailed,
    Change,
    Credential,
    Outcome,
    ProbeResult,
    Scope,
    Session,
    TargetUnreachable,
    apply_each,
)
from lockstep.credentials.vault import Vault
from lockstep.journal import Journal
from lockstep.model import Account, Op, Snapshot, Target
from lockstep.paths.graph import EmptyFacts, PathRequest
from lockstep.secret import Secret
from lockstep.store import Store

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class NoSettings(BaseModel):
    pass


@dataclass
class FakeAccount:
    passwords: list[str]
    entitlements: set[str] = field(default_factory=set)
    enabled: bool = True
    sessions: int = 0


@dataclass
class FakeTarget:
    """The target's state, and the faults a test injects into it."""

    name: str = "db"
    accounts: dict[str, FakeAccount] = field(default_factory=dict)
    fail: set[Op] = field(default_factory=set)  # operations the target refuses
    refuse: set[str] = field(default_factory=set)  # accounts every operation on fails
    down: bool = False  # every call raises TargetUnreachable
    # A removed password keeps working for this many probes (a provider's propagation).
    lingering: int = 0
    probes: int = 0
    probe_delay_s: float = 0.0  # each probe takes this long (to see how many overlap)
    most_at_once: int = 0  # the most probes that were under way together
    reads: int = 0  # reads of one or more accounts
    _removed: dict[str, int] = field(default_factory=dict)
    _probing: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self) -> FakeSession:
        return FakeSession(self)

    def batching_session(self, slots: int = 4) -> BatchingSession:
        return BatchingSession(self, slots)

    def target(self) -> Target:
        return Target(self.name, "fake", None, frozenset(), False, NoSettings())

    def _check(self, op: Op | None = None, account: str | None = None) -> None:
        if self.down:
            raise TargetUnreachable(f"target {self.name}: connection refused")
        if op in self.fail:
            raise ActionFailed(f"{op} refused by {self.name}")
        if op is not None and account in self.refuse:
            raise ActionFailed(f"{op} {account!r} refused by {self.name}")

    def _set_password(self, account: str, secret: Secret) -> None:
        held = self.accounts[account]
        for old in held.passwords:
            self._removed[old] = self.lingering
        held.passwords = [secret.reveal()]


class FakeSession:
    def __init__(self, target: FakeTarget) -> None:
        self.t = target

    def read(self) -> Snapshot:
        self.t._check()
        return Snapshot(self.t.name, {n: self._account(n) for n in self.t.accounts})

    def read_account(self, account: str) -> Account | None:
        self.t._check()
        self.t.reads += 1
        return self._account(account) if account in self.t.accounts else None

    def read_paths(self, request: PathRequest) -> EmptyFacts:
        self.t._check()
        return EmptyFacts(self.t.name)

    def _account(self, name: str) -> Account:
        a = self.t.accounts[name]
        return Account(name, frozenset(a.entitlements), a.enabled, a.sessions)

    def create_account(self, account: str, secret: Secret) -> Credential | None:
        self.t._check(Op.CREATE_ACCOUNT, account)
        self.t.accounts[account] = FakeAccount([secret.reveal()])
        return Credential(account, secret)

    def grant(self, account: str, entitlement: str) -> None:
        self.t._check(Op.GRANT, account)
        self.t.accounts[account].entitlements.add(entitlement)

    def revoke(self, account: str, entitlement: str) -> None:
        self.t._check(Op.REVOKE, account)
        self.t.accounts[account].entitlements.discard(entitlement)

    def suspend_account(self, account: str, secret: Secret) -> Credential | None:
        self.t._check(Op.SUSPEND_ACCOUNT, account)
        self.t._set_password(account, secret)
        held = self.t.accounts[account]
        held.enabled, held.sessions = False, 0
        return Credential(account, secret)

    def restore_account(self, account: str, secret: Secret) -> Credential | None:
        self.t._check(Op.RESTORE_ACCOUNT, account)
        self.t._set_password(account, secret)
        self.t.accounts[account].enabled = True
        return Credential(account, secret)

    def rotate_credential(self, account: str, secret: Secret) -> Credential:
        self.t._check(Op.ROTATE_CREDENTIAL, account)
        self.t._set_password(account, secret)
        return Credential(account, secret)

    def end_sessions(self, account: str) -> None:
        self.t._check(Op.END_SESSIONS, account)
        self.t.accounts[account].sessions = 0

    def delete_account(self, account: str) -> None:
        self.t._check(Op.DELETE_ACCOUNT, account)
        for old in self.t.accounts.pop(account).passwords:
            self.t._removed[old] = self.t.lingering

    def probe(self, credential: Credential) -> ProbeResult:
        self.t._check()
        with self.t._lock:
            self.t.probes += 1
            self.t._probing += 1
            self.t.most_at_once = max(self.t.most_at_once, self.t._probing)
        time.sleep(self.t.probe_delay_s)
        with self.t._lock:
            self.t._probing -= 1
        value = credential.secret.reveal()
        held = self.t.accounts.get(credential.username)
        if held is not None and held.enabled and value in held.passwords:
            return ProbeResult.ACCEPTED
        if self.t._removed.get(value, 0) > 0:
            self.t._removed[value] -= 1
            return ProbeResult.ACCEPTED
        return ProbeResult.REFUSED

    def close(self) -> None:
        pass


class BatchingSession(FakeSession):
    """The same target, with the batch capabilities: changes a batch at a time (counted),
    accounts read back many at once, and ``slots`` probes at a time."""

    def __init__(self, target: FakeTarget, slots: int) -> None:
        super().__init__(target)
        self.slots = slots
        self.batches: list[list[Change]] = []

    def apply_batch(self, changes: Sequence[Change]) -> list[Outcome]:
        self.batches.append(list(changes))
        return apply_each(self, changes)

    def read_accounts(self, accounts: Collection[str]) -> dict[str, Account | None]:
        self.t._check()
        self.t.reads += 1
        return {n: self._account(n) if n in self.t.accounts else None for n in accounts}

    def probe_slots(self) -> int:
        return self.slots


class FakeConnector:
    """Just what the engine's effects ask of a connector type."""

    name: ClassVar[str] = "fake"

    def __init__(self, window_s: float = 0.0) -> None:
        self.window_s = window_s

    def propagation_window(self, settings: BaseModel) -> float:
        return self.window_s

    def open(self, target: Target, scope: Scope) -> Session:
        raise NotImplementedError


@dataclass
class FakeClock:
    """Monotonic time that moves only when code sleeps."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def state(tmp_path: Path) -> tuple[Store, Journal, Vault]:
    """A real state store (SQLite in ``tmp_path``) with its journal and vault."""
    store = Store.open(f"sqlite:///{tmp_path}/state.db")
    return store, Journal(store, clock=lambda: NOW), Vault(store, Fernet.generate_key())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Store, Journal, Vault]]:
    """``state`` for one test, closed after it (use with ``pytest_plugins``)."""
    store, journal, vault = state(tmp_path)
    yield store, journal, vault
    store.close()


def kinds(journal: Journal) -> list[tuple[str, Mapping[str, Any]]]:
    return [(e.kind, e.payload) for e in journal.entries()]
