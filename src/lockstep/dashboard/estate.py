"""The dashboard's view of the estate: what the targets really hold, as the service's own
passes last read them, kept fresh without ever reading a target on a page request.

Each pass of ``lockstep run`` tells ``seen`` what it read and what its plan found. A thread
of the dashboard rebuilds the ``Picture`` when something new was seen, at most every
``MIN_REBUILD_S`` (and never more often than four times what a build takes, so that the
estate of 100k accounts does not keep a core busy); pages read the last picture built. A
target this service does not reconcile (another service holds it) is read by the thread
itself, once per the target's interval. Until the first picture exists pages say so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from lockstep.credentials.vault import Vault
from lockstep.engine.desired import desired_state
from lockstep.engine.observe import Observer
from lockstep.engine.plan import make_plan
from lockstep.engine.reconcile import Pass
from lockstep.engine.scope import narrowed
from lockstep.engine.workspace import Workspace
from lockstep.errors import LockstepError
from lockstep.evidence.facts import read_store_facts
from lockstep.journal import Journal
from lockstep.model import Finding, Observation, Snapshot
from lockstep.policy.load import LoadedPolicy
from lockstep.service.logs import Log
from lockstep.store import Store
from lockstep.store.findings import FindingLedger
from lockstep.store.tables import findings as findings_table

from .journal_index import JournalIndex
from .picture import Picture, Remediation, build_picture

MIN_REBUILD_S = 2.0
BUILD_SHARE = 4.0  # rebuilds are at least this many build times apart
STALE_INTERVALS = 3  # a pass's read older than this many intervals is read again here

Current = Callable[[], tuple[LoadedPolicy, int]]


@dataclass(frozen=True)
class Seen:
    observation: Observation
    findings: tuple[Finding, ...]
    at: datetime


class Estate:
    def __init__(
        self,
        store: Store,
        vault: Vault,
        current: Current,
        holds: Callable[[str], bool],
        log: Log,
    ) -> None:
        self.store = store
        self.vault = vault
        self.journal = Journal(store)
        self.ledger = FindingLedger(store)
        self.history = JournalIndex(store)
        self._current = current
        self._holds = holds
        self._log = log
        self._lock = threading.Lock()
        self._seen: dict[str, Seen] = {}
        self._picture: Picture | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_build_s = 0.0

    # ------------------------------------------------------------ fed by the service

    def seen(self, seen: Pass, at: datetime) -> None:
        """A pass read ``seen.observed``; its plan found ``seen.plan.findings``."""
        by_target: dict[str, list[Finding]] = {}
        for f in seen.plan.findings:
            by_target.setdefault(f.target, []).append(f)
        with self._lock:
            for name, obs in seen.observed.items():
                self._seen[name] = Seen(obs, tuple(by_target.get(name, ())), at)
        self._wake.set()

    def refresh(self) -> None:
        """Something changed in the store (a risk accepted, a lease ended): rebuild soon."""
        self._wake.set()

    # ------------------------------------------------------------ read by pages

    def picture(self) -> Picture | None:
        with self._lock:
            return self._picture

    def workspace(self, loaded: LoadedPolicy) -> Workspace:
        return Workspace(loaded, self.store, self.journal, self.vault, self.ledger)

    def current(self) -> tuple[LoadedPolicy, int]:
        return self._current()

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lockstep-dashboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll_s())
            if self._stop.is_set():
                return
            self._wake.clear()
            started = time.monotonic()
            try:
                self.rebuild()
            except LockstepError as exc:
                self._log.error(
                    "dashboard: the estate could not be read",
                    target=None,
                    op="dashboard",
                    status="error",
                    error=str(exc),
                )
            self._last_build_s = time.monotonic() - started
            self._stop.wait(max(MIN_REBUILD_S, BUILD_SHARE * self._last_build_s))

    def _poll_s(self) -> float:
        loaded, _ = self._current()
        intervals = [t.interval_s for t in loaded.policy.targets.values()] or [30]
        return float(min(intervals))

    def rebuild(self, now: datetime | None = None) -> Picture:
        """Build a new picture now (the thread does; tests and benchmarks may too)."""
        now = now or datetime.now(UTC)
        loaded, generation = self._current()
        policy = loaded.policy
        desired = desired_state(policy, now)
        with self._lock:
            seen = {n: s for n, s in self._seen.items() if n in policy.targets}
        stale = [
            name
            for name, target in policy.targets.items()
            if name not in seen
            or (
                not self._holds(name)
                and (now - seen[name].at).total_seconds() > STALE_INTERVALS * target.interval_s
            )
        ]
        if stale:
            seen.update(self._read(loaded, sorted(stale), now))
            with self._lock:
                self._seen.update((n, s) for n, s in seen.items() if n in stale)
        observed = {n: s.observation for n, s in seen.items()}
        facts = read_store_facts(self.store)
        live = [f for s in seen.values() for f in s.findings]
        self.history.catch_up()
        picture = build_picture(
            self.workspace(loaded),
            generation,
            desired,
            observed,
            {n: s.at for n, s in seen.items() if isinstance(s.observation, Snapshot)},
            facts,
            live,
            self._remediations(),
            self.history.history,
            now,
        )
        with self._lock:
            self._picture = picture
        return picture

    def _read(self, loaded: LoadedPolicy, names: list[str], now: datetime) -> dict[str, Seen]:
        """Read targets no pass of this service told about, and plan over them (nothing is
        recorded or applied)."""
        policy = narrowed(loaded.policy, frozenset(names))
        desired = desired_state(policy, now)
        with Observer(policy, desired) as observer:
            observed = observer.observe()
        facts = read_store_facts(self.store)
        accepted = {r.id for r in facts.findings if r.status == "accepted"}
        plan = make_plan(
            policy, desired, observed, now, facts.issued, facts.last_used, accepted=accepted
        )
        return {
            name: Seen(obs, tuple(f for f in plan.findings if f.target == name), now)
            for name, obs in observed.items()
        }

    def _remediations(self) -> list[Remediation]:
        t = findings_table
        with self.store.reading() as conn:
            rows = conn.execute(
                select(t.c.identity, t.c.type, t.c.first_seen, t.c.remediated_at).where(
                    t.c.remediated_at.is_not(None)
                )
            ).all()
        return [
            Remediation(r.identity, r.type, (r.remediated_at - r.first_seen).total_seconds())
            for r in rows
        ]
