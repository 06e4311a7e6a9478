"""One run's world: the loaded policy, the state store, journal, vault and findings ledger,
and the passes that connect them (plan, apply, verify). The CLI and the service use this;
the pure core knows nothing of it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from lockstep.connectors.base import ObservesUsage, TargetUnreachable
from lockstep.credentials.vault import Vault, load_key
from lockstep.engine.apply import Applier, action_fields
from lockstep.engine.audit import probe_checks, state_checks
from lockstep.engine.desired import desired_state
from lockstep.engine.observe import Observer
from lockstep.engine.plan import make_plan
from lockstep.engine.verify import propagation_window
from lockstep.journal import Journal
from lockstep.model import (
    Action,
    Check,
    Desired,
    Observation,
    Op,
    Plan,
    Policy,
    Result,
    Snapshot,
    Status,
)
from lockstep.policy import LoadedPolicy, load_policy
from lockstep.store import Store
from lockstep.store.findings import FindingLedger, FindingRecord, remediated_ids
from lockstep.store.identity_states import IdentityStates
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

    @cached_property
    def usage(self) -> UsageStore:
        return UsageStore(self.store)

    def observe(self, observer: Observer, desired: Desired) -> Pass:
        now = self.clock()
        observed = observer.observe()
        issued = self.vault.issued_times()
        self._record_usage(observer, observed, now)
        accepted = {r.id for r in self.ledger.current("accepted")}
        plan = make_plan(
            self.policy,
            desired,
            observed,
            now,
            issued,
            last_used=self.usage.last_used(),
            rotate_now=self._rotation_events(),
            accepted=accepted,
        )
        targets_read = [n for n, o in observed.items() if isinstance(o, Snapshot)]
        outcome = self.ledger.reconcile(plan.findings, targets_read, now)
        return Pass(desired, observed, plan, outcome.records)

    def _record_usage(
        self, observer: Observer, observed: Mapping[str, Observation], now: datetime
    ) -> None:
        for name, obs in observed.items():
            session = observer.sessions.get(name)
            if not isinstance(obs, Snapshot) or session is None:
                continue
            try:
                used = session.observe_usage() if isinstance(session, ObservesUsage) else []
            except TargetUnreachable:
                continue  # use unknown this pass: nothing is stamped, nothing concluded
            self.usage.record(name, used, obs.accounts, now)

    def _rotation_events(self) -> dict[tuple[str, str], str]:
        changed = IdentityStates(self.store).changed(self.policy.identities)
        return {
            (access.target, access.account): reason
            for name, reason in changed.items()
            for access in self.policy.identities[name].access
        }

    def settle_identity_states(self, plan: Plan, results: list[Result]) -> None:
        """Remember what was enforced, except for identities whose rotation did not happen
        (a failed rotation or an unreadable target): their event stays pending. In a
        workspace narrowed to some targets (the service's per-target passes), an identity
        with access beyond them is recorded when first seen, but a change of it stays
        pending until a pass covers all of its targets."""
        pending = {
            r.action.identity
            for r in results
            if r.action.op is Op.ROTATE_CREDENTIAL and r.status is not Status.VERIFIED
        }
        states = IdentityStates(self.store)
        uncovered = {
            name
            for name, identity in self.policy.identities.items()
            if any(a.target not in self.policy.targets for a in identity.access)
        }
        if uncovered:
            pending |= uncovered & states.changed(self.policy.identities).keys()
        unread = set(plan.unreachable)
        settled = {
            name: identity
            for name, identity in self.policy.identities.items()
            if name not in pending and not any(a.target in unread for a in identity.access)
        }
        states.save(settled, self.clock())

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
        now = self.clock()
        for key in {(r.action.target, r.action.account) for r in results}:
            self.vault.purge_retired(*key, keep=3)
        for r in results:
            if r.action.op is Op.DELETE_ACCOUNT and r.status is Status.VERIFIED:
                self.usage.forget(r.action.target, r.action.account)
        self.ledger.remediated(remediated_ids(results, plan.findings), now)
        self.settle_identity_states(plan, results)
        return results

    def rotation_plan(
        self, observed: Mapping[str, Observation], identity: str, target: str | None, reason: str
    ) -> Plan:
        """Rotate now every credential of ``identity`` (on ``target`` only, if given) held by
        an account that exists and is enabled."""
        if identity not in self.policy.identities:
            raise LookupError(f"unknown identity {identity!r}")
        accesses = [
            a
            for a in self.policy.identities[identity].access
            if target is None or a.target == target
        ]
        if not accesses:
            where = f" on target {target!r}" if target else ""
            raise LookupError(f"identity {identity!r} has no access{where}")
        actions = []
        for access in accesses:
            obs = observed.get(access.target)
            account = obs.accounts.get(access.account) if isinstance(obs, Snapshot) else None
            if account is not None and account.enabled:
                actions.append(
                    Action(
                        Op.ROTATE_CREDENTIAL,
                        access.target,
                        access.account,
                        None,
                        identity,
                        f"requested: {reason}",
                    )
                )
        unreachable = tuple(
            a.target for a in accesses if not isinstance(observed.get(a.target), Snapshot)
        )
        return Plan(tuple(actions), (), unreachable)

    def verify(self, observer: Observer, desired: Desired) -> tuple[bool, list[Check]]:
        observed = observer.observe()
        checks = state_checks(self.policy, desired, observed)
        windows = {
            n: propagation_window(self.policy.targets[n], c) for n, c in observer.connectors.items()
        }
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
