"""One run's world: the loaded policy, the state store, journal, vault and findings ledger,
and the passes that connect them (plan, apply, verify). The CLI and the service use this;
the pure core knows nothing of it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lockstep.credentials.vault import Vault, load_key
from lockstep.engine.apply import Applier, action_fields
from lockstep.engine.audit import probe_checks, state_checks
from lockstep.engine.desired import desired_state
from lockstep.engine.observe import Observer
from lockstep.engine.plan import make_plan
from lockstep.findings_ledger import FindingLedger, FindingRecord
from lockstep.journal import Journal
from lockstep.model import Check, Desired, Observation, Plan, Policy, Result, Snapshot
from lockstep.policy import LoadedPolicy, load_policy
from lockstep.store import Store

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
class Pass:
    """What one observation of every target found."""

    desired: Desired
    observed: dict[str, Observation]
    plan: Plan
    findings: list[FindingRecord]

    @property
    def targets_read(self) -> list[str]:
        return [n for n, o in self.observed.items() if isinstance(o, Snapshot)]


@dataclass
class Workspace:
    loaded: LoadedPolicy
    store: Store
    journal: Journal
    vault: Vault
    ledger: FindingLedger
    clock: Callable[[], datetime] = utcnow

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

    def observe(self, observer: Observer, desired: Desired) -> Pass:
        now = self.clock()
        observed = observer.observe()
        issued = {
            key: cred.issued_at
            for key in desired.accounts
            if (cred := self.vault.current(*key)) is not None
        }
        plan = make_plan(self.policy, desired, observed, now, issued)
        findings = self.ledger.record(
            plan.findings, [n for n in observed if isinstance(observed[n], Snapshot)], now
        )
        return Pass(desired, observed, plan, findings)

    @contextmanager
    def observer(self) -> Iterator[tuple[Observer, Desired]]:
        desired = desired_state(self.policy, self.clock())
        with Observer(self.policy, desired) as observer:
            yield observer, desired

    def apply(
        self, observer: Observer, plan: Plan, progress: Callable[[Result], None]
    ) -> list[Result]:
        self.journal.append(
            "plan",
            {
                "actions": [action_fields(a) for a in plan.actions],
                "unreachable": list(plan.unreachable),
                "findings": len(plan.findings),
            },
        )
        applier = Applier(
            self.policy,
            observer.sessions,
            observer.connectors,
            self.journal,
            self.vault,
            self.clock,
            progress,
        )
        results = applier.apply(plan)
        for key in {(r.action.target, r.action.account) for r in results}:
            self.vault.purge_retired(*key, keep=3)
        return results

    def verify(self, observer: Observer, desired: Desired) -> tuple[bool, list[Check]]:
        observed = observer.observe()
        checks = state_checks(self.policy, desired, observed)
        windows = {n: c.propagation_window_s for n, c in observer.connectors.items()}
        checks += probe_checks(observer.sessions, self.vault, desired, observed, windows)
        in_sync = all(c.ok for c in checks)
        self.journal.append(
            "verification",
            {
                "in_sync": in_sync,
                "checks": len(checks),
                "failed": [
                    {
                        "target": c.target,
                        "account": c.account,
                        "entitlement": c.entitlement,
                        "expected": c.expected,
                        "actual": c.actual,
                    }
                    for c in checks
                    if not c.ok
                ],
            },
        )
        return in_sync, checks
