"""The reconcile loop of `lockstep run`: when each target passes, and what the service knows
of the targets it reconciles.

Every target has a worker thread of its own, so a slow or unreachable target never delays
another's schedule. A worker starts a pass when the target's interval is up, when its
doorbell rings (a policy edit, `lockstep reconcile`, the target's lease arriving), when an
access on it expires, and when the target's change token moves (targets that offer one are
asked about every second). The controller takes the pass locks of the pass's targets and
checks that this service still holds them; the pass itself (read, plan, apply, record) is
in `lockstep.service.passes`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from lockstep.credentials.vault import Vault
from lockstep.errors import LockstepError
from lockstep.journal import Journal, JournalError
from lockstep.policy.load import LoadedPolicy
from lockstep.secret import redact
from lockstep.service.events import Doorbell, PolicyChange, PolicySource, TargetWorker
from lockstep.service.grant_watch import GrantWatch
from lockstep.service.logs import Log
from lockstep.service.metrics import Metrics
from lockstep.service.passes import Outcome, PassReport, PassRunner, SeenListener
from lockstep.service.scaleout import TargetLeases
from lockstep.store import Store
from lockstep.store.findings import FindingLedger, FindingRecord

POLICY_POLL_S = 1.0  # how often the policy files are checked for edits
LEASE_ROUND_S = 1.0  # how often leases are claimed, renewed and rebalanced
LEASE_INTERVALS = 3  # a lease row reads as held for this many of the target's intervals
CHORE_PERIOD_S = 10.0  # how often the service that leads runs the chores (the lease reaper)
LOOP_STOP_S = 10.0  # what a stopping service grants its loops to finish their round


@dataclass
class TargetState:
    """What this service knows of one target it reconciles."""

    last_pass: datetime | None = None
    up: bool = False
    outcome: Outcome | None = None
    passes: int = 0


@dataclass(frozen=True)
class Ticket:
    target: str
    bell: Doorbell
    number: int


class UnknownTarget(LookupError):
    pass


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
        on_seen: SeenListener = lambda seen, at: None,
        dry_run: bool = False,
    ) -> None:
        self.instance = leases.instance
        self.dry_run = dry_run
        # Since when the policy on disk does not load (the last valid one stays in force).
        self.policy_invalid_since: datetime | None = None
        self.policy_errors: tuple[str, ...] = ()
        self.leases = leases
        self.metrics = metrics
        self.store = store
        self.journal = Journal(store)
        self.ledger = FindingLedger(store)
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
        self._stopping = threading.Event()
        self._runner = PassRunner(
            store,
            self.journal,
            self.ledger,
            vault,
            leases,
            metrics,
            log,
            self._stopping,
            self._note_state,
            on_seen,
            dry_run,
        )
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
            ("grants", self._grant_loop),
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

    def grant_changed(self, target: str) -> None:
        """A grant on ``target`` was approved: pass the target now if this service holds
        it (the service that does notices it by its grant watch otherwise)."""
        with self._lock:
            worker = self._workers.get(target)
        if worker is not None and self.leases.holds(target):
            worker.bell.ring("grant")

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
            with self._lock:
                self.policy_invalid_since = self.policy_invalid_since or datetime.now(UTC)
                self.policy_errors = tuple(redact(str(e)) for e in change.errors)
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
            self.policy_invalid_since = None
            self.policy_errors = ()
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

    def _grant_loop(self) -> None:
        GrantWatch(self.store, self.journal, self.grant_changed, self._log).run(self._stopping)

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
            report.scope, waiting = self._runner.scope(worker.name, loaded)
            with ExitStack() as locked:
                for name in sorted(report.scope):
                    locked.enter_context(self._pass_lock(name))
                if self.stopping or not all(self.leases.holds(t) for t in report.scope):
                    report.outcomes = dict.fromkeys(report.scope, Outcome.SKIPPED)
                else:
                    token = self._runner.run(worker, report, loaded, generation, waiting)
        except LockstepError as exc:
            self._runner.failed(report, exc)
        # Always scheduled afresh: a failing store must not turn into a tight retry loop.
        worker.passed(token, self._interval(loaded, worker.name), loaded.policy, report.started)
        self._runner.record(report, time.monotonic() - clock)
        worker.bell.finish(ticket, report.outcomes.get(worker.name, Outcome.ERROR))

    def _note_state(self, name: str, outcome: Outcome, report: PassReport) -> None:
        """What the API shows of the target: told by the runner as it records each pass."""
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

    def _interval(self, loaded: LoadedPolicy, target: str) -> float:
        own = float(loaded.policy.targets[target].interval_s)
        return min(own, self._cap) if self._cap is not None else own


def _policy_fields(loaded: LoadedPolicy, fingerprint: str) -> dict[str, Any]:
    return {
        "files": [str(f) for f in loaded.files],
        "fingerprint": fingerprint,
        "targets": sorted(loaded.policy.targets),
    }
