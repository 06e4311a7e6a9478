"""One reconcile pass of `lockstep run`, over a target or a scope of targets.

A pass reads its targets, plans, applies what the rules allow (never a plan the
blast-radius guard stopped), and records the findings, the outcome of each target in the
metrics and the logs, and the pass in the store. The controller decides when a pass runs
and holds the targets' pass locks while it does.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from lockstep.credentials.vault import Vault
from lockstep.engine.observe import Observer
from lockstep.engine.reconcile import Pass, reconcile
from lockstep.engine.scope import narrowed, pass_scope, without_rotations
from lockstep.engine.workspace import Workspace
from lockstep.errors import LockstepError
from lockstep.journal import Journal
from lockstep.model import Desired, Plan, Result, Status, Unreachable
from lockstep.policy.load import LoadedPolicy
from lockstep.service.events import SKIPPED, TargetWorker
from lockstep.service.logs import Log
from lockstep.service.metrics import Metrics
from lockstep.service.scaleout import TargetLeases, note_pass
from lockstep.store import Store
from lockstep.store.findings import FindingLedger, FindingRecord
from lockstep.store.identity_states import IdentityStates


class Outcome(StrEnum):
    UNCHANGED = "unchanged"  # read; nothing to do
    REMEDIATED = "remediated"  # every action verified
    FAILED = "failed"  # some action not verified
    BLOCKED = "blocked"  # the blast-radius guard stopped the plan: nothing applied
    PLANNED = "planned"  # --dry-run: actions are due, reported, not applied
    UNREACHABLE = "unreachable"  # not read: no verdict
    ERROR = "error"  # the state store, journal or vault failed
    INTERRUPTED = "interrupted"  # the service stopped between two actions
    SKIPPED = SKIPPED  # another service holds the target


@dataclass
class PassReport:
    scope: frozenset[str]
    reasons: frozenset[str]
    started: datetime
    read: set[str] = field(default_factory=set)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    findings: int = 0


class Stopping(Exception):
    """Raised between two actions when the service is stopping: the action under way has
    finished and been journaled; the rest wait for the next start."""


# Told of each target's outcome as the pass is recorded (the controller's view of it).
OutcomeListener = Callable[[str, Outcome, PassReport], None]
# Told of what each pass read and found, before it applies anything (the dashboard's view).
SeenListener = Callable[[Pass, datetime], None]


class PassRunner:
    """Runs the passes the controller schedules, against the service's store, journal,
    vault and findings ledger, and records them."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        ledger: FindingLedger,
        vault: Vault,
        leases: TargetLeases,
        metrics: Metrics,
        log: Log,
        stopping: threading.Event,
        on_outcome: OutcomeListener,
        on_seen: SeenListener = lambda seen, at: None,
        dry_run: bool = False,
    ) -> None:
        self.dry_run = dry_run  # report-only: plan and record findings, never apply
        self._store = store
        self._journal = journal
        self._ledger = ledger
        self._vault = vault
        self._leases = leases
        self._metrics = metrics
        self._log = log
        self._stopping = stopping
        self._on_outcome = on_outcome
        self._on_seen = on_seen
        self._count_lock = threading.Lock()
        self._passes = 0

    def scope(self, target: str, loaded: LoadedPolicy) -> tuple[frozenset[str], frozenset[str]]:
        """The targets this pass covers, and the identities whose pending rotation it must
        leave alone because another service holds some of their targets."""
        pending = IdentityStates(self._store).changed(loaded.policy.identities)
        scope = pass_scope(loaded.policy, target, pending)
        if all(self._leases.holds(t) for t in scope):
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

    def run(
        self,
        worker: TargetWorker,
        report: PassReport,
        loaded: LoadedPolicy,
        generation: int,
        waiting: frozenset[str],
    ) -> str | None:
        """Runs the pass; returns the target's change token as it was before the read."""
        narrowed_ = replace(loaded, policy=narrowed(loaded.policy, report.scope))
        ws = Workspace(
            narrowed_,
            self._store,
            self._journal,
            self._vault,
            self._ledger,
            partial=set(report.scope) != set(loaded.policy.targets),
        )
        desired = ws.desired(report.started)
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
        first_seen: dict[_FindingKey, datetime] = {}
        planned = 0

        def gate(seen: Pass) -> Plan | None:
            nonlocal first_seen, planned
            report.read = set(seen.targets_read)
            report.findings = len(seen.plan.findings)
            self._on_seen(seen, report.started)
            self._metrics.new_findings(seen.findings, report.started)
            self._log_unreachable(report, seen)
            plan = without_rotations(seen.plan, waiting, ws.policy)
            for name in report.read:
                self._metrics.plan_blocked.labels(target=name).set(1 if plan.blocked else 0)
            if plan.blocked:
                self._refuse_blocked(report, plan)
                return None
            if self.dry_run:
                self._report_only(report, plan)
                return None
            # Drift without a finding (a newly declared account) dates from this pass.
            first_seen = _first_seen(seen.findings, report.started)
            planned = len(plan.actions)
            return plan

        def progress(result: Result) -> None:
            report.results.append(result)
            self._count_result(result, first_seen)
            if self._stopping.is_set() and len(report.results) < planned:
                raise Stopping

        done = reconcile(ws, observer, desired, gate, progress)
        for problem in done.undelivered:
            self._log.warning(
                "credential not delivered: retried next pass",
                op="deliver",
                status="undelivered_credential",
                error=problem,
            )
        if done.applied is None:
            return
        for name in report.read:
            mine = [r for r in report.results if r.action.target == name]
            if not mine:
                report.outcomes[name] = Outcome.UNCHANGED
            elif all(r.status is Status.VERIFIED for r in mine):
                report.outcomes[name] = Outcome.REMEDIATED
            else:
                report.outcomes[name] = Outcome.FAILED

    def _log_unreachable(self, report: PassReport, seen: Pass) -> None:
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

    def _report_only(self, report: PassReport, plan: Plan) -> None:
        for name in report.read:
            due = [a for a in plan.actions if a.target == name]
            report.outcomes[name] = Outcome.PLANNED if due else Outcome.UNCHANGED
            if due:
                self._log.warning(
                    "dry run: actions due, not applied",
                    target=name,
                    op="plan",
                    status="planned",
                    actions=len(due),
                    ops=sorted({str(a.op) for a in due}),
                )

    def _refuse_blocked(self, report: PassReport, plan: Plan) -> None:
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

    def failed(self, report: PassReport, exc: Exception) -> None:
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
        self._metrics.result(result, first_seen[exact if exact in first_seen else account])
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

    def record(self, report: PassReport, seconds: float) -> None:
        with self._count_lock:
            self._passes += 1
            passes = self._passes
        instance = self._leases.instance
        try:
            note_pass(self._store, instance, passes, datetime.now(UTC))
        except LockstepError as exc:
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
            self._metrics.passed(name, outcome, seconds, up)
            if outcome is Outcome.SKIPPED:
                continue
            self._on_outcome(name, outcome, report)
            self._log.info(
                "pass",
                target=name,
                op="pass",
                status=str(outcome),
                instance=instance,
                reasons=sorted(report.reasons),
                scope=sorted(report.scope),
                actions=sum(r.action.target == name for r in report.results),
                findings=report.findings,
                started_at=report.started,
                finished_at=finished,
                seconds=round(seconds, 4),
            )


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
