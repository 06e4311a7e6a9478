"""Leases: short-lived credentials, one account per lease, that end on time even when
lockstep is down.

Each lease is an account named ``LEASE_PREFIX`` + the lease id, holding the identity's
entitlements on one target and expiring natively where the target can (PostgreSQL
``VALID UNTIL``). Every issue, renewal and revocation journals its intent before touching the
target and its result after, with the credential's fingerprint, never the credential.

A lease counts as issued only once it is proven: where the target makes leases in batches
(``IssuesLeaseBatches``), by reading every lease of the batch back and logging in with the
first one's credential; elsewhere by logging in with each. It counts as revoked or expired
only once the target refused its credential. The credential is kept encrypted in the vault
while the lease lives, so that revoking it, in this process or another, can prove exactly
that; it is deleted once the proof is in. The reaper ends every lease past its expiry and
every lease account it finds by prefix without a live record (a record lost in a crash).
"""

from __future__ import annotations

import secrets as _random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lockstep.connectors.base import (
    ActionFailed,
    ConnectorError,
    Credential,
    IssuesLeaseBatches,
    IssuesLeases,
    LeaseOrder,
    Session,
)
from lockstep.credentials.vault import Vault
from lockstep.engine import faults
from lockstep.engine.eligibility import (
    DEFAULT_MAX_TTL_S,
    DEFAULT_TTL_S,
    Ineligible,
    LeaseTerms,
    lease_terms,
)
from lockstep.engine.progress import SILENT, Progress
from lockstep.engine.workspace import Workspace
from lockstep.governance.grants import GrantBook
from lockstep.governance.reviews import ReviewStore
from lockstep.journal import Journal
from lockstep.leases.admission import Request, Token, admit
from lockstep.leases.batcher import Batcher
from lockstep.leases.ending import Ended, LeaseEnder, ReapReport
from lockstep.leases.proofs import Unproven, check_native_expiry, leasing_of, prove_works
from lockstep.leases.records import Lease, LeaseError, LeaseRecords, LeaseStatus
from lockstep.leases.sessions import TargetSessions
from lockstep.model import LEASE_PREFIX, Policy
from lockstep.secret import generate_password, redact
from lockstep.store import Store, StoreError

__all__ = [
    "DEFAULT_MAX_TTL_S",
    "DEFAULT_TTL_S",
    "Ended",
    "Lease",
    "LeaseError",
    "LeaseManager",
    "LeaseStatus",
    "ReapReport",
]

_ID_BYTES = 8  # 64 random bits: LEASE_PREFIX + 16 hex digits = 31 characters, within every
# target's limit (PostgreSQL's is 63 bytes)
# Leases requested at once on one target are issued in batches of up to MAX_BATCH, by
# ISSUING_WORKERS at a time, each on its own connection so that the server works on two
# batches at once. More workers make smaller batches, each with its own commits and proof
# login: on a 2-core machine 2 workers issued 1,019 leases/s, 3 issued 799/s and 4 780/s.
MAX_BATCH = 64
ISSUING_WORKERS = 2

_Ordered = tuple[Lease, LeaseOrder]


def utcnow() -> datetime:
    return datetime.now(UTC)


class LeaseManager:
    """Issues, renews and ends leases. Safe to share between threads."""

    def __init__(
        self,
        policy: Policy,
        store: Store,
        journal: Journal,
        vault: Vault,
        sessions: TargetSessions,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._policy = policy
        self._store = store
        self._journal = journal
        self._records = LeaseRecords(store, vault, journal)
        self._grants = GrantBook(store, journal, clock)
        self._reviews = ReviewStore(store, journal, clock)
        self._sessions = sessions
        self._clock = clock
        self._ender = LeaseEnder(policy, self._records, journal, sessions, clock)
        self._issuers: dict[str, Batcher[_Ordered, tuple[Lease, Credential]]] = {}
        self._requests: dict[str, Request] = {}  # by lease id, until its batch admits it
        self._lock = threading.Lock()

    @classmethod
    def for_workspace(cls, workspace: Workspace) -> LeaseManager:
        """A manager over a workspace's policy, state and journal, with its own sessions to
        the targets; ``close`` them when done."""
        sessions = TargetSessions(workspace.policy)
        return cls(
            workspace.policy,
            workspace.store,
            workspace.journal,
            workspace.vault,
            sessions,
            workspace.clock,
        )

    @property
    def policy(self) -> Policy:
        return self._policy

    def journal_interrupted(self, command: str, **fields: object) -> None:
        """A command asked to stop (SIGINT, SIGTERM) once its work in flight was done."""
        self._journal.append("interrupted", {"command": command, **fields})

    def close(self) -> None:
        with self._lock:
            issuers, self._issuers = list(self._issuers.values()), {}
        for issuer in issuers:
            issuer.close()
        self._sessions.close()

    def _now(self) -> datetime:
        # Whole seconds: a lease ends a fraction early rather than late, and every target
        # and every rendering of its expiry agree to the second.
        return self._clock().replace(microsecond=0)

    # ------------------------------------------------------------ issuing

    def issue(
        self, identity: str, target: str, ttl_s: int | None = None, workload: str | None = None
    ) -> tuple[Lease, Credential]:
        """A new lease whose credential has been proven to work. Raises LeaseError.

        Leases requested at once from several threads are issued together, a batch per
        target, so that a burst pays one round trip and a few commits per batch."""
        return self.issue_later(identity, target, ttl_s, workload).result()

    def issue_later(
        self,
        identity: str,
        target: str,
        ttl_s: int | None = None,
        workload: str | None = None,
        token: Token | None = None,
    ) -> Future[tuple[Lease, Credential]]:
        """``issue`` without waiting for the target: a lease the policy refuses raises
        LeaseError at once; the rest comes as a future (for an event loop to await), which
        raises QuotaExceeded or TokenReplayed (``token``: the workload's, spent on it)."""
        now = self._now()
        terms = self._terms(identity, target, ttl_s, now)
        lease_id = _random.token_hex(_ID_BYTES)
        secret = generate_password()
        lease = Lease(
            id=lease_id,
            identity=identity,
            target=target,
            account=LEASE_PREFIX + lease_id,
            username=LEASE_PREFIX + lease_id,
            fingerprint=secret.fingerprint(),
            workload=workload,
            issued_at=now,
            expires_at=now + timedelta(seconds=terms.ttl_s),
            max_expires_at=now + timedelta(seconds=terms.max_ttl_s),
            revoked_at=None,
            status=LeaseStatus.ACTIVE,
            identity_kind=str(self._policy.identities[identity].kind),
        )
        order = LeaseOrder(
            lease.account, terms.template, terms.entitlements, secret, lease.expires_at
        )
        with self._lock:
            self._requests[lease.id] = Request(lease.id, identity, token)
        return self._issuer(target).enqueue((lease, order))

    def _issuer(self, target: str) -> Batcher[_Ordered, tuple[Lease, Credential]]:
        with self._lock:
            if target not in self._issuers:
                self._issuers[target] = Batcher(
                    lambda batch: self._issue_batch(target, batch),
                    workers=ISSUING_WORKERS,
                    max_batch=MAX_BATCH,
                    name=f"lease-issuer-{target}",
                )
            return self._issuers[target]

    def _issue_batch(
        self, target: str, batch: Sequence[_Ordered]
    ) -> list[tuple[Lease, Credential] | Exception]:
        """Issue a batch of leases on one target: the intents journaled and the records
        written first (so that the reaper never mistakes a lease being issued for one whose
        record was lost), then the accounts made and proven, then the credentials kept and
        the results journaled, each step one transaction for the whole batch. Requests
        over their identity's quota, or with a spent token, are refused first."""
        with self._lock:
            requests = [self._requests.pop(lease.id) for lease, _ in batch]
        try:
            refused = admit(self._store, self._records, self._policy, requests, self._now())
        except StoreError as exc:
            return [exc] * len(batch)
        if refused:
            admitted = [each for each in batch if each[0].id not in refused]
            issued = self._issue_admitted(target, admitted)
            done = dict(zip([e[0].id for e in admitted], issued, strict=True))
            return [refused.get(lease.id) or done[lease.id] for lease, _ in batch]
        return self._issue_admitted(target, batch)

    def _issue_admitted(
        self, target: str, batch: Sequence[_Ordered]
    ) -> list[tuple[Lease, Credential] | Exception]:
        if not batch:
            return []
        leases = [lease for lease, _ in batch]
        outcomes: list[tuple[Lease, Credential] | str | None] = [None] * len(batch)
        recorded = False
        try:
            with self._sessions.session(target) as session:
                leasing = leasing_of(session, target)
                self._records.insert(
                    leases,
                    [("lease_intent", {"op": "issue", **lease.fields()}) for lease in leases],
                )
                recorded = True
                if isinstance(session, IssuesLeaseBatches):
                    self._create_together(session, session, batch, outcomes)
                else:
                    self._create_each(session, leasing, batch, outcomes)
                faults.reached("issue", "created")
        except LeaseError as exc:
            return [exc] * len(batch)
        except ConnectorError as exc:
            if not recorded:
                error = LeaseError(f"lease on {target} not issued: {redact(str(exc))}")
                return [error] * len(batch)
            outcomes = [redact(str(exc)) if o is None else o for o in outcomes]
        issued = [o for o in outcomes if isinstance(o, tuple)]
        self._records.keep_credentials(
            issued, [("lease_issued", lease.fields()) for lease, _ in issued]
        )
        results: list[tuple[Lease, Credential] | Exception] = []
        for lease, outcome in zip(leases, outcomes, strict=True):
            if isinstance(outcome, tuple):
                results.append(outcome)
                continue
            detail = outcome or "not attempted"
            self._fail(lease, detail)
            results.append(
                LeaseError(f"lease on {target} for {lease.identity} not issued: {detail}")
            )
        return results

    def _create_together(
        self,
        session: Session,
        batching: IssuesLeaseBatches,
        batch: Sequence[_Ordered],
        outcomes: list[tuple[Lease, Credential] | str | None],
        offset: int = 0,
    ) -> None:
        """Every account of the batch in one transaction, all read back in one query, and
        the first one's credential tried: the read-back proves each lease as the target
        holds it, the login that credentials made this way work."""
        orders = [order for _, order in batch]
        try:
            credentials = batching.issue_leases(orders)
        except ActionFailed as exc:
            if len(batch) == 1:
                outcomes[offset] = redact(str(exc))
                return
            # One bad order must not sink the others: each alone finds which it was.
            for i, item in enumerate(batch):
                self._create_together(session, batching, [item], outcomes, offset + i)
            return
        problems = batching.lease_problems(orders)
        made = [
            (offset + i, lease, credential)
            for i, ((lease, order), credential) in enumerate(zip(batch, credentials, strict=True))
            if order.account not in problems
        ]
        for i, (_, order) in enumerate(batch):
            if order.account in problems:
                outcomes[offset + i] = f"read back: {problems[order.account]}"
        if not made:
            return
        _, first, credential = made[0]
        try:
            prove_works(session, credential, self._sessions.propagation_window_s(first.target))
        except Unproven as exc:
            why = str(exc) if len(batch) == 1 else f"{exc} (the first of a batch of {len(batch)})"
            if first.expires_at <= self._clock():
                why += "; it had expired already: ask for a longer ttl"
            for i, _, _ in made:
                outcomes[i] = why
            return
        for i, lease, credential in made:
            outcomes[i] = (lease, credential)

    def _create_each(
        self,
        session: Session,
        leasing: IssuesLeases,
        batch: Sequence[_Ordered],
        outcomes: list[tuple[Lease, Credential] | str | None],
    ) -> None:
        """One lease after another, each proven by trying its credential."""
        for i, (lease, order) in enumerate(batch):
            try:
                credential = leasing.issue_lease(
                    order.account,
                    order.template,
                    order.entitlements,
                    order.secret,
                    order.expires_at,
                )
                made = replace(
                    lease,
                    username=credential.username,
                    fingerprint=credential.secret.fingerprint(),
                )
                if made != lease:  # the target minted its own credential (AWS)
                    self._records.update(
                        made.id, username=made.username, fingerprint=made.fingerprint
                    )
                prove_works(session, credential, self._sessions.propagation_window_s(lease.target))
            except (ActionFailed, Unproven) as exc:
                outcomes[i] = redact(str(exc))
                continue
            outcomes[i] = (made, credential)

    def _terms(self, identity: str, target: str, ttl_s: int | None, now: datetime) -> LeaseTerms:
        try:
            grants = self._grants.active(identity, target)
            # What reviews took away is held back from new leases too.
            held = self._reviews.revocations([target])
            return lease_terms(self._policy, identity, target, ttl_s, now, grants, held)
        except Ineligible as exc:
            raise LeaseError(str(exc)) from None

    def _fail(self, lease: Lease, detail: str) -> None:
        """An issue that did not complete: its account, if it was made, is removed and
        proven unusable; failing that the lease stays failed and the reaper tries again."""
        self._journal.append("lease_failed", {**lease.fields(), "op": "issue", "detail": detail})
        self._ender.end(lease, LeaseStatus.REVOKED)

    # ------------------------------------------------------------ renewing

    def renew(self, lease_id: str, ttl_s: int | None = None) -> Lease:
        """Extend an active lease by ``ttl_s`` from now (default: the identity's lease ttl),
        never past the lease's maximum. Raises LeaseError."""
        lease = self._records.get(lease_id)
        now = self._now()
        if lease.status is not LeaseStatus.ACTIVE:
            raise LeaseError(f"lease {lease_id} has ended ({lease.status}); issue a new one")
        if lease.expires_at <= now:
            raise LeaseError(f"lease {lease_id} has expired; issue a new one")
        # A lease is renewed only while a new one could be issued, and for no longer than a
        # new one could be: a --ttl past lease_max_ttl is refused as issue refuses it.
        ttl = self._terms(lease.identity, lease.target, ttl_s, now).ttl_s
        if ttl <= 0:
            raise LeaseError("a lease's ttl must be at least 1s")
        expires_at = min(now + timedelta(seconds=ttl), lease.max_expires_at)
        renewed = replace(lease, expires_at=expires_at)
        self._journal.append("lease_intent", {"op": "renew", **renewed.fields()})
        try:
            with self._sessions.session(lease.target) as session:
                leasing = leasing_of(session, lease.target)
                leasing.renew_lease(lease.account, expires_at)
                check_native_expiry(leasing, lease.account, expires_at)
        except (ConnectorError, Unproven) as exc:
            detail = redact(str(exc))
            self._journal.append(
                "lease_failed", {**lease.fields(), "op": "renew", "detail": detail}
            )
            raise LeaseError(f"lease {lease_id} not renewed: {detail}") from None
        self._records.update(lease_id, expires_at=expires_at)
        self._journal.append("lease_renewed", renewed.fields())
        return renewed

    # ------------------------------------------------------------ ending

    def revoke(self, lease_id: str) -> Ended:
        """End a lease now and prove its credential refused."""
        return self._ender.revoke(lease_id)

    def revoke_where(
        self,
        identity: str | None = None,
        target: str | None = None,
        prefix: str | None = None,
        progress: Progress = SILENT,
    ) -> list[Ended]:
        """End every live or failed lease of ``identity``, on ``target``, or whose id starts
        with ``prefix`` (all that are given must match)."""
        return self._ender.revoke_where(identity, target, prefix, progress)

    def reap(self, now: datetime | None = None, progress: Progress = SILENT) -> ReapReport:
        """See ``LeaseEnder.reap``."""
        return self._ender.reap(now, progress)

    # ------------------------------------------------------------ records

    def get(self, lease_id: str) -> Lease:
        """The lease as it stands now: past its expiry, an active lease is expired."""
        return as_of(self._records.get(lease_id), self._now())

    def list(
        self,
        identity: str | None = None,
        target: str | None = None,
        status: LeaseStatus | None = None,
    ) -> list[Lease]:
        """The leases as they stand now (see ``get``): ``active`` never lists an expired one."""
        stored = None if status in (LeaseStatus.ACTIVE, LeaseStatus.EXPIRED) else status
        now = self._now()
        found = [as_of(lease, now) for lease in self._records.list(identity, target, stored)]
        return [lease for lease in found if status is None or lease.status is status]


def as_of(lease: Lease, now: datetime) -> Lease:
    """``lease`` as it stands at ``now``: an active lease past its expiry is expired, even
    before the reaper has proven its credential refused (``Lease.awaiting_reaper``)."""
    if lease.status is LeaseStatus.ACTIVE and lease.expires_at <= now:
        return replace(lease, status=LeaseStatus.EXPIRED)
    return lease
