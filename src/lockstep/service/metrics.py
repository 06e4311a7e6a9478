"""Prometheus metrics of one service, in a registry of its own: never the process-wide default
one, so that several services (as the tests run them) and import-time state never collide."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lockstep.model import Result, Status
from lockstep.store.findings import FindingRecord

# Time to remediate, from drift first seen to its remediation verified: sub-second when a
# target reports its changes, up to an interval when it is only re-read on schedule.
TTR_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
PASS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    passes: Counter
    pass_seconds: Histogram
    drift_found: Counter
    actions: Counter
    verification_failures: Counter
    time_to_remediate: Histogram
    target_up: Gauge
    plan_blocked: Gauge
    policy_reloads: Counter
    lease_reap_failures: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            passes=Counter(
                "lockstep_passes",
                "Passes over a target, by outcome (unchanged, remediated, failed, blocked, "
                "unreachable, error, interrupted)",
                ["target", "outcome"],
                registry=r,
            ),
            pass_seconds=Histogram(
                "lockstep_pass_duration_seconds",
                "How long a pass over a target took: read, plan, apply and verify",
                ["target"],
                buckets=PASS_BUCKETS,
                registry=r,
            ),
            drift_found=Counter(
                "lockstep_drift_found",
                "Findings seen for the first time, by type",
                ["type"],
                registry=r,
            ),
            actions=Counter(
                "lockstep_actions",
                "Actions carried out, by operation and verified result",
                ["op", "status"],
                registry=r,
            ),
            verification_failures=Counter(
                "lockstep_verification_failures",
                "Actions whose read-back or credential probe did not prove them done",
                ["target"],
                registry=r,
            ),
            time_to_remediate=Histogram(
                "lockstep_time_to_remediate_seconds",
                "From drift first seen to its remediation verified",
                buckets=TTR_BUCKETS,
                registry=r,
            ),
            target_up=Gauge(
                "lockstep_target_up",
                "1 when the last pass read the target, 0 when it could not",
                ["target"],
                registry=r,
            ),
            plan_blocked=Gauge(
                "lockstep_plan_blocked",
                "1 while the target's plan trips the blast-radius guard and is not applied",
                ["target"],
                registry=r,
            ),
            policy_reloads=Counter(
                "lockstep_policy_reloads",
                "Policy edits noticed, by result (loaded, invalid)",
                ["result"],
                registry=r,
            ),
            lease_reap_failures=Gauge(
                "lockstep_lease_reap_failures",
                "Lease accounts the reaper's last run could not end (or prove ended), by target",
                ["target"],
                registry=r,
            ),
        )

    def new_findings(self, records: Iterable[FindingRecord], pass_started: datetime) -> None:
        for record in records:
            if record.first_seen >= pass_started:  # first seen by this very pass
                self.drift_found.labels(type=str(record.finding.type)).inc()

    def result(self, result: Result, drift_seen: datetime) -> None:
        """One action's result; ``drift_seen``: when what it remedies was first seen."""
        action = result.action
        self.actions.labels(op=str(action.op), status=str(result.status)).inc()
        if result.status is Status.VERIFIED:
            ttr = (datetime.now(UTC) - drift_seen).total_seconds()
            self.time_to_remediate.observe(max(ttr, 0.0))
        elif result.status is Status.UNVERIFIED or any(not c.ok for c in result.checks):
            # Done, but not proven done (a refusal of the action itself is not counted).
            self.verification_failures.labels(target=action.target).inc()

    def passed(self, target: str, outcome: str, seconds: float, up: bool | None) -> None:
        """One pass over ``target``; ``up`` None when the pass did not get to read it."""
        self.passes.labels(target=target, outcome=outcome).inc()
        self.pass_seconds.labels(target=target).observe(seconds)
        if up is not None:
            self.target_up.labels(target=target).set(1 if up else 0)

    def forget(self, target: str) -> None:
        """Drop a target's gauges: it left the policy or another instance reconciles it, and
        a stale 'down' or 'blocked' here would be a false alarm."""
        for gauge in (self.target_up, self.plan_blocked):
            with suppress(KeyError):  # never set for this target
                gauge.remove(target)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
