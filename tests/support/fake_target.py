"""An in-memory target behind the connector interface, for unit tests of the engine's effects
(apply, verify, audit): code of ours on both sides, so a fake is fair here. Real targets are
tested through the conformance suite."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from cryptography.fernet import Fernet
from pydantic import BaseModel

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    ProbeResult,
    Scope,
    Session,
    TargetUnreachable,
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
    down: bool = False  # every call raises TargetUnreachable
    # A removed password keeps working for this many probes (a provider's propagation).
    lingering: int = 0
    probes: int = 0
    _removed: dict[str, int] = field(default_factory=dict)

    def session(self) -> FakeSession:
        return FakeSession(self)

    def target(self) -> Target:
        return Target(self.name, "fake", None, frozenset(), False, NoSettings())

    def _check(self, op: Op | None = None) -> None:
        if self.down:
            raise TargetUnreachable(f"target {self.name}: connection refused")
        if op in self.fail:
            raise ActionFailed(f"{op} refused by {self.name}")

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
        return self._account(account) if account in self.t.accounts else None

    def read_paths(self, request: PathRequest) -> EmptyFacts:
        self.t._check()
        return EmptyFacts(self.t.name)

    def _account(self, name: str) -> Account:
        a = self.t.accounts[name]
        return Account(name, frozenset(a.entitlements), a.enabled, a.sessions)

    def create_account(self, account: str, secret: Secret) -> Credential | None:
        self.t._check(Op.CREATE_ACCOUNT)
        self.t.accounts[account] = FakeAccount([secret.reveal()])
        return Credential(account, secret)

    def grant(self, account: str, entitlement: str) -> None:
        self.t._check(Op.GRANT)
        self.t.accounts[account].entitlements.add(entitlement)

    def revoke(self, account: str, entitlement: str) -> None:
        self.t._check(Op.REVOKE)
        self.t.accounts[account].entitlements.discard(entitlement)

    def suspend_account(self, account: str, secret: Secret) -> Credential | None:
        self.t._check(Op.SUSPEND_ACCOUNT)
        self.t._set_password(account, secret)
        held = self.t.accounts[account]
        held.enabled, held.sessions = False, 0
        return Credential(account, secret)

    def restore_account(self, account: str, secret: Secret) -> Credential | None:
        self.t._check(Op.RESTORE_ACCOUNT)
        self.t._set_password(account, secret)
        self.t.accounts[account].enabled = True
        return Credential(account, secret)

    def rotate_credential(self, account: str, secret: Secret) -> Credential:
        self.t._check(Op.ROTATE_CREDENTIAL)
        self.t._set_password(account, secret)
        return Credential(account, secret)

    def end_sessions(self, account: str) -> None:
        self.t._check(Op.END_SESSIONS)
        self.t.accounts[account].sessions = 0

    def delete_account(self, account: str) -> None:
        self.t._check(Op.DELETE_ACCOUNT)
        for old in self.t.accounts.pop(account).passwords:
            self.t._removed[old] = self.t.lingering

    def probe(self, credential: Credential) -> ProbeResult:
        self.t._check()
        self.t.probes += 1
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


def kinds(journal: Journal) -> list[tuple[str, Mapping[str, Any]]]:
    return [(e.kind, e.payload) for e in journal.entries()]
