"""Ending leases: on request, by expiry, and for lease accounts whose record was lost. A lease
counts as ended only once the target refused its credential (or shows its account gone)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from lockstep.connectors.base import ConnectorError, IssuesLeases, ProbeResult
from lockstep.engine import faults
from lockstep.engine.eligibility import Ineligible, lease_terms
from lockstep.engine.progress import SILENT, Progress
from lockstep.engine.verify import Inconclusive, probe_until
from lockstep.journal import Journal
from lockstep.leases.proofs import Unproven, leasing_of
from lockstep.leases.records import Lease, LeaseError, LeaseRecords, LeaseStatus
from lockstep.leases.sessions import TargetSessions
from lockstep.model import LEASE_PREFIX, Policy
from lockstep.secret import forget, redact

# Leases ended at once (revoked by identity, target or prefix, or reaped) are ended this
# many at a time: each one's proof is a login attempt that mostly waits on the target.
ENDING_WORKERS = 4


@dataclass(frozen=True, slots=True)
class Ended:
    """What ending one lease (or one lease account without a record) came to."""

    target: str
    account: str
    status: LeaseStatus  # revoked or expired when proven, failed otherwise
    detail: str
    lease_id: str | None = None

    @property
    def verified(self) -> bool:
        return self.status in (LeaseStatus.REVOKED, LeaseStatus.EXPIRED)


@dataclass
class ReapReport:
    ended: list[Ended] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # target -> why

    @property
    def verified(self) -> bool:
        return not self.unreachable and all(e.verified for e in self.ended)


class LeaseEnder:
    """Ends leases and proves them ended. Safe to share between threads."""

    def __init__(
        self,
        policy: Policy,
        records: LeaseRecords,
        journal: Journal,
        sessions: TargetSessions,
        clock: Callable[[], datetime],
    ) -> None:
        self._policy = policy
        self._records = records
        self._journal = journal
        self._sessions = sessions
        self._clock = clock

    def revoke(self, lease_id: str) -> Ended:
        """End a lease now and prove its credential refused."""
        lease = self._records.get(lease_id)
        if lease.status in (LeaseStatus.REVOKED, LeaseStatus.EXPIRED):
            return Ended(lease.target, lease.account, lease.status, "already ended", lease.id)
        return self.end(lease, LeaseStatus.REVOKED)

    def revoke_where(
        self,
        identity: str | None,
        target: str | None,
        prefix: str | None,
        progress: Progress = SILENT,
    ) -> list[Ended]:
        """End every live or failed lease of ``identity``, on ``target``, or whose id starts
        with ``prefix`` (all that are given must match)."""
        if identity is None and target is None and not prefix:
            raise LeaseError("name an identity, a target or a lease id prefix to revoke")
        selected = [
            lease
            for lease in self._records.list(identity=identity, target=target)
            if lease.status in (LeaseStatus.ACTIVE, LeaseStatus.FAILED)
            and lease.id.startswith(prefix or "")
        ]
        return self.end_all([(lease, LeaseStatus.REVOKED, "") for lease in selected], progress)

    def reap(self, now: datetime | None = None, progress: Progress = SILENT) -> ReapReport:
        """End every active lease past its expiry or whose identity may no longer have one
        (access expired, owner departed, identity or access gone from the policy), then every
        lease account in a reachable target that has no live record (lost in a crash, or
        left by a failed revocation)."""
        now = now or self._clock()
        report = ReapReport()
        due = []
        for lease in self._records.list(status=LeaseStatus.ACTIVE):
            if lease.expires_at <= now:
                due.append((lease, LeaseStatus.EXPIRED, ""))
            elif (why := self._ineligible(lease, now)) is not None:
                due.append((lease, LeaseStatus.REVOKED, why))
        report.ended.extend(self.end_all(due, progress))
        for target in sorted(self._policy.targets):
            self._reap_target(target, now, report)
        return report

    def _reap_target(self, target: str, now: datetime, report: ReapReport) -> None:
        try:
            with self._sessions.session(target) as session:
                if not isinstance(session, IssuesLeases):
                    return
                found = session.list_leases(LEASE_PREFIX)
        except ConnectorError as exc:
            report.unreachable[target] = redact(str(exc))
            return
        # Records are read after the accounts were listed: an account that a concurrent
        # issue is creating already has its record, and is left alone.
        records = {lease.account: lease for lease in self._records.list(target=target)}
        tried = {e.account for e in report.ended if e.target == target}
        for account in sorted(a.name for a in found if a.name not in tried):
            lease = records.get(account)
            if lease is None:
                report.ended.append(self._end_lost(target, account))
            elif lease.status is not LeaseStatus.ACTIVE or lease.expires_at <= now:
                ended = LeaseStatus.EXPIRED if lease.expires_at <= now else LeaseStatus.REVOKED
                report.ended.append(self.end(lease, ended))

    def _ineligible(self, lease: Lease, now: datetime) -> str | None:
        """Why the policy would not issue this lease now, if it would not."""
        try:
            lease_terms(self._policy, lease.identity, lease.target, None, now)
        except Ineligible as exc:
            return str(exc)
        return None

    def end_all(
        self, due: list[tuple[Lease, LeaseStatus, str]], progress: Progress = SILENT
    ) -> list[Ended]:
        """End leases several at a time (each proof is a login that mostly waits), in
        order; each as ``_end`` would."""
        progress.start(len(due))

        def one(each: tuple[Lease, LeaseStatus, str]) -> Ended:
            ended = self.end(*each)
            progress.advance(f"{ended.status}: lease {ended.lease_id} on {ended.target}")
            return ended

        if len(due) <= 1:
            return [one(each) for each in due]
        with ThreadPoolExecutor(min(ENDING_WORKERS, len(due)), "lease-ender") as pool:
            return list(pool.map(one, due))

    def end(self, lease: Lease, final: LeaseStatus, reason: str = "") -> Ended:
        op = "revoke" if final is LeaseStatus.REVOKED else "expire"
        self._journal.append("lease_intent", {"op": op, "reason": reason, **lease.fields()})
        try:
            proof = self._remove(lease.target, lease.account)
            faults.reached("revoke", "removed")
        except (ConnectorError, Unproven) as exc:
            detail = redact(str(exc))
            self._records.update(lease.id, status=LeaseStatus.FAILED)
            self._journal.append("lease_failed", {**lease.fields(), "op": op, "detail": detail})
            return Ended(lease.target, lease.account, LeaseStatus.FAILED, detail, lease.id)
        ended = replace(lease, status=final, revoked_at=self._clock())
        self._records.settle(lease.target, lease.account, ended)
        self._journal.append(f"lease_{final}", {**ended.fields(), "proof": proof})
        return Ended(lease.target, lease.account, final, proof, lease.id)

    def _end_lost(self, target: str, account: str) -> Ended:
        where = {"target": target, "account": account, "reason": "no lease record"}
        self._journal.append("lease_intent", {"op": "reap", **where})
        try:
            proof = self._remove(target, account)
        except (ConnectorError, Unproven) as exc:
            detail = redact(str(exc))
            self._journal.append("lease_failed", {"op": "reap", **where, "detail": detail})
            return Ended(target, account, LeaseStatus.FAILED, detail)
        self._records.settle(target, account, None)
        self._journal.append("lease_reaped", {**where, "proof": proof})
        return Ended(target, account, LeaseStatus.REVOKED, proof)

    def _remove(self, target: str, account: str) -> str:
        """Remove a lease account and prove it can no longer be used; returns the proof."""
        with self._sessions.session(target) as session:
            leasing = leasing_of(session, target)
            leasing.revoke_lease(account)
            credential = self._records.kept_credential(target, account)
            if credential is None:
                # Nothing to try (the issue never got that far): absence is the proof.
                if any(a.name == account for a in leasing.list_leases(account)):
                    raise Unproven(f"lease account {account} is still present")
                return "lease account absent"
            window = self._sessions.propagation_window_s(target)
            try:
                got = probe_until(session, credential, ProbeResult.REFUSED, window)
            except Inconclusive as exc:
                raise Unproven(f"the credential could not be tried: {exc}") from None
            if got is not ProbeResult.REFUSED:
                raise Unproven(f"the credential is still accepted after {window:g}s")
            # Proven dead: the redactor need not keep scanning every text for it.
            forget(credential.secret.reveal())
            if credential.token is not None:
                forget(credential.token.reveal())
            return f"credential {credential.secret.fingerprint()} refused"
