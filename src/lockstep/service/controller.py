"""The reconcile loop of `lockstep run`.

Every target has a worker thread of its own, so a slow or unreachable target never delays
another's schedule. A worker starts a pass when the target's interval is up, when its
doorbell rings (a policy edit, `lockstep reconcile`, the target's lease arriving), when an
access on it expires, and when the target's change token moves (targets that offer one are
asked about every second). A pass reads the target, plans, applies what the rules allow
(never a plan the blast-radius guard stopped), records the findings, and notes the pass in
the store. A pass that changes nothing writes only the target's pass time and the heartbeat.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from lockstep.credentials.vault import Vault
from lockstep.engine.desired import desired_state
from lockstep.engine.observe import Observer
from lockstep.errors import EXPECTED_ERRORS
from lockstep.findings_ledger import FindingLedger, FindingRecord
from lockstep.identity_states import IdentityStates
from lockstep.journal import Journal, JournalError
from lockstep.model import Desired, Op, Plan, Policy, Result, Status, Unreachable
from lockstep.policy import LoadedPolicy
from lockstep.service.events import (
    SKIPPED,
    Doorbell,
    PolicyChange,
    PolicySource,
    TargetWorker,
)
from lockstep.service.logs import Log
from lockstep.service.metrics import Metrics
from lockstep.service.scaleout import TargetLeases, note_pass
from lockstep.store import Store
from lockstep.workspace import Workspace

POLICY_POLL_S = 1.0  # how often the policy files are checked for edits
LEASE_ROUND_S = 1.0  # how often leases are claimed, renewed and rebalanced
LEASE_INTERVALS = 3  # a lease row reads as held for this many of the target's intervals
CHORE_PERIOD_S = 10.0  # how often the service that leads runs the chores (the lease reaper)
LOOP_STOP_S = 10.0  # what a stopping service grants its loops to finish their round


class Outcome(StrEnum):
    UNCHANGED = "unchanged"  # read; nothing to do
    REMEDIATED = "remediated"  # every action verified
    FAILED = "failed"  # some action not verified
    BLOCKED = "blocked"  # the blast-radius guard stopped the plan: nothing applied
    UNREACHABLE = "unreachable"  # not read: no verdict
    ERROR = "error"  # the state store, journal or vault failed
    INTERRUPTED = "interrupted"  # the service stopped between two actions
    SKIPPED = SKIPPED  # another service holds the target


@dataclass
class TargetState:
    """What this service knows of one target it reconciles."""

    last_pass: datetime | None = None
    up: bool = False
    outcome: Outcome | None = None
    passes: int = 0


@dataclass
class PassReport:
    scope: frozenset[str]
    reasons: frozenset[str]
    started: datetime
    read: set[str] = field(default_factory=set)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    findings: int = 0


@dataclass(frozen=True)
class Ticket:
    target: str
    bell: Doorbell
    number: int


class UnknownTarget(LookupError):
    pass


class Stopping(Exception):
    """Raised between two actions when the service is stopping: the action under way has
    finished and been journaled; the rest wait for the next start."""


class Controller:
    def __init__(
        self,
        source: PolicySource,
        loaded: LoadedPolicy,
        store: Store,
        vault: Vault,
        leases: TargetLeases,
        metrics: Metrics,
        log: Log,
        interval_cap_s: float | None = None,
        on_policy: Callable[[LoadedPolicy], None] = lambda loaded: None,
        chore: Callable[[], None] = lambda: None,
    ) -> None:
        self.instance = leases.instance
        self.leases = leases
        self.metrics = metrics
        self.store = store
        self.journal = Journal(store)
        self.ledger = FindingLedger(store)
        self._vault = vault
        self._source = source
        self._log = log
        self._cap = interval_cap_s
        self._on_policy = on_policy  # told of the policy at start and of every edit loaded
        self._chore = chore
        self._lock = threading.Lock()  # guards the policy, the workers and their states
        self._loaded = loaded
        self._generation = 0
        self._workers: dict[str, TargetWorker] = {}
        self._states: dict[str, TargetState] = {}
        # Outlive workers: a target dropped from the policy and added back must not get a
        # second pass while the first worker's last one still runs.
        self._pass_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._passes = 0
        self._stopping = threading.Event()
        self._loops: list[threading.Thread] = []

    # ------------------------------------------------------------ life cycle

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def holds(self, target: str) -> bool:
        return self.leases.holds(target)

    def start(self) -> None:
        loaded, _ = self.current()
        self.journal.append(
            "service_started",
            {"instance": self.instance, **_policy_fields(loaded, self._source.fingerprint)},
        )
        self._on_policy(loaded)
        self._lease_round()  # before the workers start, so that held targets pass at once
        self._sync_workers()
        loops = (
            ("policy", self._policy_loop),
            ("leases", self._lease_loop),
            ("chores", self._chore_loop),
        )
        for name, loop in loops:
            thread = threading.Thread(target=loop, name=f"lockstep-{name}", daemon=True)
            thread.start()
            self._loops.append(thread)

    def stop(self, grace_s: float) -> bool:
        """Stop scheduling, let running actions finish; False if some did not in time."""
        self._stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.bell.close()
        deadline = time.monotonic() + grace_s
        for worker in workers:
            worker.thread.join(max(deadline - time.monotonic(), 0))
        finished = not any(w.thread.is_alive() for w in workers)
        for thread in self._loops:  # the lease loop is done with the lease connection after
            thread.join(max(deadline - time.monotonic(), LOOP_STOP_S))
        self.leases.close()
        try:
            self.journal.append("service_stopped", {"instance": self.instance, "clean": finished})
        except JournalError as exc:
            self._log.error(
                "stop not journaled", target=None, op="stop", status="error", error=str(exc)
            )
        return finished

    def current(self) -> tuple[LoadedPolicy, int]:
        with self._lock:
            return self._loaded, self._generation

    # ------------------------------------------------------------ requests (API)

    def request(self, target: str | None, reason: str) -> tuple[list[Ticket], list[str]]:
        """Ring for a pass of ``target`` (of every target when None). Returns tickets for the
        targets this service reconciles, and the names of those another service holds."""
        with self._lock:
            if target is not None and target not in self._workers:
                raise UnknownTarget(target)
            workers = [self._workers[target]] if target else list(self._workers.values())
        tickets = [
            Ticket(w.name, w.bell, w.bell.ring(reason))
            for w in workers
            if self.leases.holds(w.name)
        ]
        held = {t.target for t in tickets}
        return tickets, sorted(w.name for w in workers if w.name not in held)

    @staticmethod
    def await_passes(tickets: Iterable[Ticket], timeout_s: float) -> dict[str, str | None]:
        deadline = time.monotonic() + timeout_s
        return {t.target: t.bell.await_pass(t.number, deadline - time.monotonic()) for t in tickets}

    def states(self) -> dict[str, TargetState]:
        """A copy of what this service knows of each target it reconciles."""
        with self._lock:
            return {n: replace(state) for n, state in self._states.items() if self.holds(n)}

    def interval_s(self, target: str) -> float:
        loaded, _ = self.current()
        return self._interval(loaded, target)

    def findings(self, status: Collection[str] | None) -> list[FindingRecord]:
        return self.ledger.current(status)

    # ------------------------------------------------------------ policy and leases

    def _policy_loop(self) -> None:
        while not self._stopping.wait(POLICY_POLL_S):
            change = self._source.poll()
            if change is not None:
                self._reload(change)

    def _reload(self, change: PolicyChange) -> None:
        if change.loaded is None:
            self.metrics.policy_reloads.labels(result="invalid").inc()
            self._log.error(
                "policy invalid: the last valid policy stays in force",
                target=None,
                op="policy_reload",
                status="invalid",
                errors=[str(e) for e in change.errors],
            )
            return
        try:
            self.journal.append("policy_loaded", _policy_fields(change.loaded, change.fingerprint))
        except JournalError as exc:
            # Passes journal their intents and fail closed on their own; the edit still
            # takes effect, so that a fix is never held back by the journal.
            self._log.error(
                "policy load not journaled",
                target=None,
                op="policy_reload",
                status="error",
                error=str(exc),
            )
        with self._lock:
            self._loaded = change.loaded
            self._generation += 1
        self._on_policy(change.loaded)
        self.metrics.policy_reloads.labels(result="loaded").inc()
        self._log.info(
            "policy loaded",
            target=None,
            op="policy_reload",
            status="loaded",
            files=[str(f) for f in change.loaded.files],
            fingerprint=change.fingerprint,
        )
        self._sync_workers()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.bell.ring("policy")

    def _sync_workers(self) -> None:
        loaded, _ = self.current()
        with self._lock:
            gone = [w for n, w in self._workers.items() if n not in loaded.policy.targets]
            for worker in gone:
                del self._workers[worker.name]
                del self._states[worker.name]
            new = [
                TargetWorker(name, self)
                for name in sorted(loaded.policy.targets)
                if name not in self._workers
            ]
            self._workers.update((w.name, w) for w in new)
            self._states.update((w.name, TargetState()) for w in new)
        for worker in gone:
            worker.retire()
            self.metrics.forget(worker.name)
        for worker in new:
            worker.thread.start()

    def _chore_loop(self) -> None:
        while not self._stopping.is_set():
            if self.leases.leads():
                self._chore()
            self._stopping.wait(CHORE_PERIOD_S)

    def _lease_loop(self) -> None:
        while not self._stopping.wait(LEASE_ROUND_S):
            self._lease_round()

    def _lease_round(self) -> None:
        loaded, _ = self.current()
        names = sorted(loaded.policy.targets)
        wanted = {n: LEASE_INTERVALS * self._interval(loaded, n) for n in names}
        before = {n for n in names if self.leases.holds(n)}
        for name in self.leases.rebalance(wanted):
            lock = self._pass_lock(name)
            if lock.acquire(blocking=False):  # never in the middle of its pass
                try:
                    self.leases.release(name)
                finally:
                    lock.release()
        after = {n for n in names if self.leases.holds(n)}
        for name in before - after:
            self.metrics.forget(name)
        with self._lock:
            gained = [self._workers[n] for n in sorted(after - before) if n in self._workers]
        for worker in gained:
            worker.bell.ring("lease")

    def _pass_lock(self, target: str) -> threading.Lock:
        with self._lock:
            return self._pass_locks[target]

    # ------------------------------------------------------------ passes

    def run_pass(self, worker: TargetWorker) -> None:
        """One pass for ``worker``'s target (and, when an identity with access there waits
        for a rotation on several targets, over all of those targets together)."""
        ticket, reasons = worker.bell.begin()
        loaded, generation = self.current()
        report = PassReport(frozenset({worker.name}), reasons, datetime.now(UTC))
        clock = time.monotonic()
        token: str | None = None
        try:
            report.scope, waiting = self._scope(worker.name, loaded)
            with ExitStack() as locked:
                for name in sorted(report.scope):
                    locked.enter_context(self._pass_lock(name))
                if self.stopping or not all(self.leases.holds(t) for t in report.scope):
                    report.outcomes = dict.fromkeys(report.scope, Outcome.SKIPPED)
                else:
                    token = self._pass(worker, report, loaded, generation, waiting)
        except EXPECTED_ERRORS as exc:
            self._failed(report, exc)
        # Always scheduled afresh: a failing store must not turn into a tight retry loop.
        worker.passed(token, self._interval(loaded, worker.name), loaded.policy, report.started)
        self._note(report, time.monotonic() - clock)
        worker.bell.finish(ticket, report.outcomes.get(worker.name, Outcome.ERROR))

    def _scope(self, target: str, loaded: LoadedPolicy) -> tuple[frozenset[str], frozenset[str]]:
        """The targets this pass covers, and the identities whose pending rotation it must
        leave alone because another service holds some of their targets."""
        pending = IdentityStates(self.store).changed(loaded.policy.identities)
        scope = pass_scope(loaded.policy, target, pending)
        if all(self.leases.holds(t) for t in scope):
            return scope, frozenset()
        waiting = frozenset(
            name
            for name in pending
            if any(a.target == target for a in loaded.policy.identities[name].access)
        )
        self._log.warning(
            "rotation waits: its identities have targets that another service holds",
            target=target,
            op="rotate_credential",
            status="waiting",
            identities=sorted(waiting),
        )
        return frozenset({target}), waiting

    def _pass(
        self,
        worker: TargetWorker,
        report: PassReport,
        loaded: LoadedPolicy,
        generation: int,
        waiting: frozenset[str],
    ) -> str | None:
        """Runs the pass; returns the target's change token as it was before the read."""
        narrowed_ = narrowed(loaded, report.scope)
        ws = Workspace(narrowed_, self.store, self.journal, self._vault, self.ledger)
        desired = desired_state(narrowed_.policy, report.started)
        solo = report.scope == {worker.name}
        if solo:
            observer = worker.observer(narrowed_.policy, desired, generation)
            token = worker.token_before_pass()
        else:
            observer, token = Observer(narrowed_.policy, desired), None
        try:
            self._reconcile(ws, observer, desired, report, waiting)
        except Stopping:
            report.outcomes = {t: report.outcomes.get(t, Outcome.INTERRUPTED) for t in report.scope}
        finally:
            if not solo:
                observer.close()
        return token

    def _reconcile(
        self,
        ws: Workspace,
        observer: Observer,
        desired: Desired,
        report: PassReport,
        waiting: frozenset[str],
    ) -> None:
        seen = ws.observe(observer, desired)
        report.read = set(seen.targets_read)
        report.findings = len(seen.plan.findings)
        self.metrics.new_findings(seen.findings, report.started)
        for name in sorted(report.scope - report.read):
            report.outcomes[name] = Outcome.UNREACHABLE
            obs = seen.observed.get(name)
            self._log.warning(
                "target unreachable: no verdict on it",
                target=name,
                op="read",
                status="unreachable",
                error=obs.error if isinstance(obs, Unreachable) else "not read",
            )
        plan = _without_rotations(seen.plan, waiting, ws.policy) if waiting else seen.plan
        for name in report.read:
            self.metrics.plan_blocked.labels(target=name).set(1 if plan.blocked else 0)
        if plan.blocked:
            assert plan.mass_change is not None
            for name in report.read:
                report.outcomes[name] = Outcome.BLOCKED
            self._log.error(
                "plan not applied: it trips the blast-radius guard (rules.mass_change_limit)",
                target=",".join(sorted(report.read)),
                op="plan",
                status="blocked",
                removals=plan.mass_change.removals,
                managed=plan.mass_change.managed,
                limit=plan.mass_change.limit,
                actions=len(plan.actions),
            )
            return
        if plan.actions:
            # Drift without a finding (a newly declared account) dates from this pass.
            first_seen = _first_seen(seen.findings, report.started)

            def progress(result: Result) -> None:
                report.results.append(result)
                self._count_result(result, first_seen)
                if self.stopping and len(report.results) < len(plan.actions):
                    raise Stopping

            ws.apply(observer, plan, progress)
        else:
            ws.settle_identity_states(plan, [])
        for name in report.read:
            mine = [r for r in report.results if r.action.target == name]
            if not mine:
                report.outcomes[name] = Outcome.UNCHANGED
            elif all(r.status is Status.VERIFIED for r in mine):
                report.outcomes[name] = Outcome.REMEDIATED
            else:
                report.outcomes[name] = Outcome.FAILED

    def _failed(self, report: PassReport, exc: Exception) -> None:
        for name in report.scope:
            report.outcomes.setdefault(name, Outcome.ERROR)
        self._log.error(
            "pass failed",
            target=",".join(sorted(report.scope)),
            op="pass",
            status="error",
            error=f"{type(exc).__name__}: {exc}",
        )

    def _count_result(self, result: Result, first_seen: dict[_FindingKey, datetime]) -> None:
        action = result.action
        exact = (action.target, action.account, action.entitlement)
        account = (action.target, action.account, None)
        self.metrics.result(result, first_seen[exact if exact in first_seen else account])
        self._log.info(
            "action",
            target=action.target,
            op=str(action.op),
            status=str(result.status),
            account=action.account,
            entitlement=action.entitlement,
            identity=action.identity,
            reason=action.reason,
            detail=result.detail,
        )

    def _note(self, report: PassReport, seconds: float) -> None:
        with self._lock:
            self._passes += 1
            passes = self._passes
        try:
            note_pass(self.store, self.instance, passes, datetime.now(UTC))
        except EXPECTED_ERRORS as exc:
            self._log.error(
                "pass not recorded",
                target=",".join(sorted(report.scope)),
                op="pass",
                status="error",
                error=str(exc),
            )
        finished = datetime.now(UTC)
        for name in sorted(report.scope):
            outcome = report.outcomes.get(name, Outcome.ERROR)
            up = (
                name in report.read
                if outcome is Outcome.UNREACHABLE or name in report.read
                else None
            )
            self.metrics.passed(name, outcome, seconds, up)
            if outcome is Outcome.SKIPPED:
                continue
            with self._lock:
                state = self._states.get(name)
                if state is not None:
                    state.passes += 1
                    state.outcome = outcome
                    if outcome is Outcome.UNREACHABLE:
                        state.up = False
                    elif name in report.read:
                        state.up = True
                        state.last_pass = report.started
            self._log.info(
                "pass",
                target=name,
                op="pass",
                status=str(outcome),
                instance=self.instance,
                reasons=sorted(report.reasons),
                scope=sorted(report.scope),
                actions=sum(r.action.target == name for r in report.results),
                findings=report.findings,
                started_at=report.started,
                finished_at=finished,
                seconds=round(seconds, 4),
            )

    def _interval(self, loaded: LoadedPolicy, target: str) -> float:
        own = float(loaded.policy.targets[target].interval_s)
        return min(own, self._cap) if self._cap is not None else own


_FindingKey = tuple[str, str | None, str | None]


def _first_seen(
    records: Iterable[FindingRecord], default: datetime
) -> defaultdict[_FindingKey, datetime]:
    """When the drift behind each (target, account, entitlement) was first seen; the
    account-wide key holds the earliest finding about the account."""
    seen: defaultdict[_FindingKey, datetime] = defaultdict(lambda: default)
    for record in records:
        f = record.finding
        for key in ((f.target, f.account, f.entitlement), (f.target, f.account, None)):
            if record.first_seen < seen[key]:
                seen[key] = record.first_seen
    return seen


def pass_scope(policy: Policy, target: str, pending: Iterable[str]) -> frozenset[str]:
    """``target``, joined by every target of each identity with a pending rotation event
    that reaches the scope: such an identity's credentials rotate on all of its targets in
    one pass, which alone may record the event as enforced."""
    spans = [
        frozenset(a.target for a in policy.identities[name].access)
        for name in pending
        if name in policy.identities
    ]
    scope = {target}
    grown = True
    while grown:
        grown = False
        for span in spans:
            if span & scope and not span <= scope:
                scope |= span
                grown = True
    return frozenset(scope)


def narrowed(loaded: LoadedPolicy, scope: frozenset[str]) -> LoadedPolicy:
    """The policy as one pass over ``scope`` sees it: those targets, and the identities with
    access on them (identities elsewhere are none of this pass's business)."""
    policy = loaded.policy
    identities = {
        name: identity
        for name, identity in policy.identities.items()
        if any(a.target in scope for a in identity.access)
    }
    targets = {name: policy.targets[name] for name in sorted(scope)}
    return replace(loaded, policy=replace(policy, targets=targets, identities=identities))


def _without_rotations(plan: Plan, identities: frozenset[str], policy: Policy) -> Plan:
    keys = {
        (a.target, a.account)
        for name in identities
        if name in policy.identities
        for a in policy.identities[name].access
    }
    kept = tuple(
        a
        for a in plan.actions
        if not (a.op is Op.ROTATE_CREDENTIAL and (a.target, a.account) in keys)
    )
    return replace(plan, actions=kept)


def _policy_fields(loaded: LoadedPolicy, fingerprint: str) -> dict[str, Any]:
    return {
        "files": [str(f) for f in loaded.files],
        "fingerprint": fingerprint,
        "targets": sorted(loaded.policy.targets),
    }
