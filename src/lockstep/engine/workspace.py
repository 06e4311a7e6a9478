"""One run's world: the loaded policy and the state store with its journal, vault and
findings ledger. The CLI and the service open one; the passes over it are assembled in
``engine.reconcile`` and ``engine.audit``; the pure core knows nothing of it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from lockstep.credentials.vault import KEY_ENV, Vault, load_key
from lockstep.engine.desired import desired_state
from lockstep.engine.observe import Observer
from lockstep.engine.scope import narrowed
from lockstep.errors import LockstepError
from lockstep.governance.grants import GrantBook
from lockstep.journal import Journal
from lockstep.model import Desired, Policy
from lockstep.policy.load import LoadedPolicy, load_policy
from lockstep.store import Store
from lockstep.store.findings import FindingLedger
from lockstep.store.usage import UsageStore

STATE_ENV = "LOCKSTEP_STATE"
STATE_DIR = ".lockstep"
STATE_DIR_ENV = "LOCKSTEP_STATE_DIR"  # where the state directory is, instead of beside the policy
# Everything in the state directory is the run's own (the SQLite state, the vault key): a
# .gitignore keeps all of it out of the repository the policy lives in.
GITIGNORE = "# lockstep's state and key: never commit them\n*\n"


def state_dir(base_dir: Path) -> Path:
    """``$LOCKSTEP_STATE_DIR``, else ``.lockstep`` beside the policy."""
    chosen = os.environ.get(STATE_DIR_ENV)
    return Path(chosen).expanduser().resolve() if chosen else (base_dir / STATE_DIR).resolve()


def ensure_state_dir(path: Path) -> Path:
    """The state directory, created owner-only with its ``.gitignore`` if it is new."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return path
    except OSError as exc:
        raise StateDirError(f"cannot create the state directory {path}: {exc.strerror}") from None
    (path / ".gitignore").write_text(GITIGNORE)
    return path


class StateDirError(LockstepError):
    code = "state_dir_unusable"
    default_hint = f"set {STATE_DIR_ENV} to a directory lockstep may write, or --state"


class UnknownTarget(LockstepError):
    code = "unknown_target"
    default_hint = "the policy's targets section lists the names"


def utcnow() -> datetime:
    return datetime.now(UTC)


def state_key_dir(loaded: LoadedPolicy) -> Path:
    """Where the vault key file is (when ``LOCKSTEP_KEY`` does not give the key)."""
    if os.environ.get(KEY_ENV) is not None:
        return state_dir(loaded.base_dir)
    return ensure_state_dir(state_dir(loaded.base_dir))


def state_url(loaded: LoadedPolicy, explicit: str | None) -> str:
    url = explicit or os.environ.get(STATE_ENV)
    if url:
        return url
    return f"sqlite:///{ensure_state_dir(state_dir(loaded.base_dir)) / 'state.db'}"


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
            key = load_key(state_key_dir(loaded))
            yield cls(loaded, store, Journal(store), Vault(store, key), FindingLedger(store))
        finally:
            store.close()

    @property
    def policy(self) -> Policy:
        return self.loaded.policy

    def narrowed(self, targets: Iterable[str]) -> Workspace:
        """This workspace seeing only ``targets`` (``--target``), and the identities with
        access on them."""
        chosen = frozenset(targets)
        unknown = sorted(chosen - self.policy.targets.keys())
        if unknown:
            known = ", ".join(sorted(self.policy.targets)) or "(none)"
            raise UnknownTarget(f"unknown target {unknown[0]!r}; one of: {known}")
        return replace(self, loaded=replace(self.loaded, policy=narrowed(self.policy, chosen)))

    @cached_property
    def usage(self) -> UsageStore:
        return UsageStore(self.store)

    @cached_property
    def grants(self) -> GrantBook:
        return GrantBook(self.store, self.journal, self.clock)

    def desired(self, now: datetime) -> Desired:
        """The policy and the grants on its targets, at ``now``."""
        states = self.grants.states(self.policy.targets)
        return desired_state(self.policy, now, [s.grant for s in states])

    @contextmanager
    def observer_for(self, targets: Iterable[str] | None) -> Iterator[tuple[Workspace, Observer]]:
        """The workspace narrowed to ``targets`` (all when None or empty) and an observer
        of them."""
        chosen = list(targets or ())
        ws = self.narrowed(chosen) if chosen else self
        with ws.observer() as (observer, _):
            yield ws, observer

    @contextmanager
    def observer(self) -> Iterator[tuple[Observer, Desired]]:
        desired = self.desired(self.clock())
        with Observer(self.policy, desired) as observer:
            yield observer, desired
