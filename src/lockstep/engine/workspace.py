"""One run's world: the loaded policy and the state store with its journal, vault and
findings ledger. The CLI and the service open one; the passes over it are assembled in
``engine.reconcile`` and ``engine.audit``; the pure core knows nothing of it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from lockstep.credentials.vault import Vault, load_key
from lockstep.engine.desired import desired_state
from lockstep.engine.observe import Observer
from lockstep.journal import Journal
from lockstep.model import Desired, Policy
from lockstep.policy.load import LoadedPolicy, load_policy
from lockstep.store import Store
from lockstep.store.findings import FindingLedger
from lockstep.store.usage import UsageStore

STATE_ENV = "LOCKSTEP_STATE"
STATE_DIR = ".lockstep"


def utcnow() -> datetime:
    return datetime.now(UTC)


def state_url(loaded: LoadedPolicy, explicit: str | None) -> str:
    url = explicit or os.environ.get(STATE_ENV)
    if url:
        return url
    return f"sqlite:///{(loaded.base_dir / STATE_DIR / 'state.db').resolve()}"


@dataclass
class Workspace:
    loaded: LoadedPolicy
    store: Store
    journal: Journal
    vault: Vault
    ledger: FindingLedger
    clock: Callable[[], datetime] = utcnow
    # A pass over some of the policy's targets only: what it does not see again (an
    # escalation path through a target it did not read) is not concluded gone.
    partial: bool = False

    @classmethod
    @contextmanager
    def open(cls, config: Path, state: str | None = None) -> Iterator[Workspace]:
        loaded = load_policy(config)
        store = Store.open(state_url(loaded, state))
        try:
            key = load_key(loaded.base_dir / STATE_DIR)
            yield cls(loaded, store, Journal(store), Vault(store, key), FindingLedger(store))
        finally:
            store.close()

    @property
    def policy(self) -> Policy:
        return self.loaded.policy

    @cached_property
    def usage(self) -> UsageStore:
        return UsageStore(self.store)

    @contextmanager
    def observer(self) -> Iterator[tuple[Observer, Desired]]:
        desired = desired_state(self.policy, self.clock())
        with Observer(self.policy, desired) as observer:
            yield observer, desired
