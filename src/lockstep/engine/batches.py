"""Applying a plan in batches: the actions of one target and one operation together.

Every action keeps what ``engine.apply`` gives it, an intent journaled before the target is
touched, its new secret staged before it is set, a read-back, a probe for every credential it
issues or takes away, and a result journaled, but a batch of them shares each step's fixed
cost: the intents (with the staged secrets) commit in one state transaction before the
batch, the target carries the batch out at once where it can (``AppliesBatches``: one
transaction, one pipeline, concurrent calls), the accounts are read back in one read, the
probes run side by side as far as the target takes them (``engine.probes``), and the results
(with the deliveries and the closing of the staged changes) commit in one transaction after.
On a disk that syncs each commit in a few milliseconds, that is the difference between a
hundred actions a second and thousands.

An action that fails fails alone: its outcome is its own, and the others of its batch are
carried out, verified and journaled all the same. A crash anywhere in a batch leaves every
unfinished credential change staged, for the next pass to settle (``engine.recovery``), and
every intent without a result shows what was under way. Rotations go one at a time
(``Applier.apply_one``): zero-downtime rotation and its rollback take several steps per
account.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

from lockstep.connectors.base import (
    ActionFailed,
    AppliesBatches,
    Change,
    Credential,
    Outcome,
    Session,
    TargetUnreachable,
    apply_each,
)
from lockstep.credentials.sinks import SinkError
from lockstep.credentials.vault import LOCK as VAULT_LOCK
from lockstep.credentials.vault import PendingCredential, StoredCredential
from lockstep.engine import faults
from lockstep.engine.apply import STAGED_OPS, Applier, action_fields, result_fields
from lockstep.engine.delivery import sink_index
from lockstep.engine.probes import Answer, ProbeTask, probe_all, slots
from lockstep.engine.verify import Evidence, Inconclusive, Proof, proofs, read_back_checks, verdict
from lockstep.journal import JournalError
from lockstep.model import LEASE_PREFIX, Account, Action, Check, Op, Result, Status
from lockstep.secret import generate_password, redact
from lockstep.store.tables import pending_credentials

# Actions per batch: enough that a commit's and a round trip's cost vanish beside them, few
# enough that one transaction on the target stays short.
BATCH_SIZE = 500
# Removals prove the credential the account had before refused.
_PROVES_PREVIOUS = frozenset({Op.SUSPEND_ACCOUNT, Op.DELETE_ACCOUNT})
_JOURNAL_DOWN = "journal unavailable, nothing more changed"


def batches(actions: Iterable[Action], size: int = BATCH_SIZE) -> list[list[Action]]:
    """Consecutive actions of one target and one operation, at most ``size`` together. The
    plan orders actions by target and then by operation, so what must come first (an
    account before its grants) still does; a rotation is a batch of its own, and so is a
    second staged change of one account."""
    runs: list[list[Action]] = []
    accounts: set[str] = set()
    for action in actions:
        last = runs[-1] if runs else None
        joins = (
            last is not None
            and len(last) < size
            and last[0].target == action.target
            and last[0].op is action.op
            and action.op is not Op.ROTATE_CREDENTIAL
            and not (action.op in STAGED_OPS and action.account in accounts)
        )
        if last is not None and joins:
            last.append(action)
        else:
            runs.append([action])
            accounts = set()
        accounts.add(action.account)
    return runs


def apply_changes(session: Session, changes: Sequence[Change]) -> list[Outcome]:
    """The batch through the session's own batching, or one change at a time."""
    if isinstance(session, AppliesBatches):
        return session.apply_batch(changes)
    return apply_each(session, changes)


def read_accounts(session: Session, accounts: Collection[str]) -> dict[str, Account | None]:
    """The accounts read back in one read where the session can, else one by one."""
    if isinstance(session, AppliesBatches):
        return session.read_accounts(accounts)
    return {name: session.read_account(name) for name in accounts}


@dataclass
class _Step:
    """One action of a batch on its way: its staged change, what the target said, and what
    it will be journaled as."""

    action: Action
    staged: PendingCredential | None = None
    previous: StoredCredential | None = None
    returned: Credential | None = None
    result: Result | None = None
    fingerprint: str | None = None
    evidence: Evidence = field(default_factory=Evidence)
    keep_pending: bool = False  # the outcome is unknown: the next pass settles it
    checks: list[Check] = field(default_factory=list)  # what the read-back showed

    def close(
        self,
        status: Status,
        detail: str,
        checks: tuple[Check, ...] = (),
    ) -> None:
        self.result = Result(self.action, status, detail, checks)


@dataclass
class _Flying:
    """A batch carried out and read back, whose probes are under way."""

    steps: list[_Step]
    deliveries: list[tuple[str, Mapping[str, Any]]]
    wanted: list[tuple[_Step, Proof]]
    answers: Future[list[Answer]]

    @property
    def accounts(self) -> set[tuple[str, str]]:
        return {(s.action.target, s.action.account) for s, _ in self.wanted}


def _independent(flying: _Flying, batch: Sequence[Action]) -> bool:
    """Whether ``batch`` may run while ``flying``'s probes do: it changes no credential
    they try (grants and revokes change none; other operations, none of those accounts)."""
    if batch[0].op in (Op.GRANT, Op.REVOKE):
        return True
    touched = flying.accounts
    return not any((a.target, a.account) in touched for a in batch)


@dataclass
class BatchRun:
    """Applies a plan's actions batch by batch through ``applier``'s journal, vault,
    sessions and clock; ``Applier.apply`` hands its plans here."""

    applier: Applier
    _sinks: dict[tuple[str, str], list[str]] | None = None
    _down: str | None = None  # why the journal cannot be written: nothing more is changed
    _stopped: bool = False  # a stop was asked: no further batch starts

    def run(self, actions: Sequence[Action]) -> list[Result]:
        """Batch after batch; a batch's probes run while the next batch is carried out,
        unless the next one could change what they prove (it touches the same accounts'
        credentials), and its results are journaled once they are in."""
        results: list[Result] = []
        flying: _Flying | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="lockstep-proofs") as proving:
            try:
                for batch in batches(actions):
                    if self._interrupted(len(results) + len(flying.steps if flying else ())):
                        results += self._report(
                            [Result(a, Status.FAILED, "not attempted: interrupted") for a in batch]
                        )
                        continue
                    if flying is not None and not _independent(flying, batch):
                        results += self._land(flying)
                        flying = None
                    started = self._started(batch, proving)
                    if flying is not None:
                        results += self._land(flying)
                        flying = None
                    if isinstance(started, _Flying):
                        flying = started
                    else:
                        results += self._report(started)
                if flying is not None:
                    results += self._land(flying)
                    flying = None
            finally:
                if flying is not None:
                    # Stopped between batches (the service stopping): the batch under way
                    # still has its results journaled; a journal that fails leaves it staged.
                    with suppress(JournalError):
                        self._finish(flying)
        return results

    def _interrupted(self, done: int) -> bool:
        """Whether a stop was asked (SIGINT, SIGTERM): journaled once, when first seen; the
        batch in flight still lands, and no later batch starts."""
        if self._stopped:
            return True
        if self._down is not None or not self.applier.stop():
            return False
        self._stopped = True
        self.applier.journal.append("interrupted", {"done": done})
        return True

    def _started(
        self, batch: Sequence[Action], proving: ThreadPoolExecutor
    ) -> _Flying | list[Result]:
        if self._down is not None:
            return [Result(a, Status.FAILED, f"not attempted: {self._down}") for a in batch]
        try:
            return self._start(batch, proving)
        except JournalError as exc:
            # Nothing more is changed; what this batch changed stays staged, or is repaired
            # by the next plan.
            self._down = f"{_JOURNAL_DOWN} ({exc})"
            return [Result(a, Status.FAILED, self._down) for a in batch]

    def _report(self, done: Sequence[Result]) -> list[Result]:
        for result in done:
            self.applier.progress(result)
        return list(done)

    def _land(self, flying: _Flying) -> list[Result]:
        try:
            done = self._finish(flying)
        except JournalError as exc:
            self._down = f"{_JOURNAL_DOWN} ({exc})"
            done = [Result(s.action, Status.FAILED, self._down) for s in flying.steps]
        return self._report(done)

    def _start(
        self, batch: Sequence[Action], proving: ThreadPoolExecutor
    ) -> _Flying | list[Result]:
        """The batch up to its read-back; its probes are handed to ``proving``."""
        applier, first = self.applier, batch[0]
        if first.op is Op.ROTATE_CREDENTIAL:
            return [applier.apply_one(action) for action in batch]
        lost = applier.lost(first.target)
        session = applier.sessions.get(first.target)
        if lost is not None or session is None:
            why = lost or "target unreachable"
            return [Result(a, Status.FAILED, f"not attempted: {why}") for a in batch]
        steps = self._begin(batch)
        self._refuse_privileged(session, steps)
        live = [s for s in steps if s.result is None]
        outcomes = apply_changes(session, [_change(s) for s in live]) if live else []
        faults.reached(first.op, "target_changed")
        self._take(live, outcomes)
        self._promote(steps)
        deliveries = self._deliver(steps)
        wanted = self._read_back(session, [s for s in steps if s.result is None])
        window = applier.window(first.target)
        tasks = [ProbeTask(session, p.credential, p.want, window) for _, p in wanted]
        width = slots(session) if tasks else 1  # asked here: the session is this thread's
        answers = proving.submit(probe_all, tasks, applier.timer, slots=lambda _: width)
        return _Flying(steps, deliveries, wanted, answers)

    def _finish(self, flying: _Flying) -> list[Result]:
        answers = flying.answers.result()
        got: dict[int, list[tuple[Proof, Answer]]] = {}
        for (step, proof), answer in zip(flying.wanted, answers, strict=True):
            got.setdefault(id(step), []).append((proof, answer))
        for step in flying.steps:
            if step.result is not None:
                continue
            probed = got.get(id(step), [])
            unknown = [a for _, a in probed if isinstance(a, Inconclusive)]
            if unknown:
                step.close(Status.UNVERIFIED, f"could not probe the credential: {unknown[0]}")
                continue
            checks = step.checks + [
                proof.check(step.action, answer)
                for proof, answer in probed
                if not isinstance(answer, Inconclusive)
            ]
            step.close(*verdict(checks))
        self._end(flying.steps, flying.deliveries)
        return [s.result for s in flying.steps if s.result is not None]

    # ------------------------------------------------------------ before the target

    def _begin(self, batch: Sequence[Action]) -> list[_Step]:
        """The first phase of every change, in one commit: the new secrets staged and the
        intents journaled."""
        applier, first = self.applier, batch[0]
        steps = [_Step(action) for action in batch]
        if first.op in _PROVES_PREVIOUS:
            held = applier.vault.held(first.target, [a.account for a in batch])
            for step in steps:
                step.previous = held.get(step.action.account, (None, []))[0]
        staging = [
            (
                a.target,
                a.account,
                a.identity,
                str(a.op),
                a.account,
                None if a.op is Op.DELETE_ACCOUNT else generate_password(),
            )
            for a in batch
            if a.op in STAGED_OPS
        ]
        with applier.journal.recording(VAULT_LOCK, pending_credentials) as conn:
            staged = applier.vault.stage_in(conn, staging)
            applier.journal.append_in(conn, [("intent", action_fields(a)) for a in batch])
        for step, pending in zip(steps, staged, strict=False):
            step.staged = pending
        if first.op in STAGED_OPS:
            faults.reached(first.op, "staged")
        return steps

    def _refuse_privileged(self, session: Session, steps: Sequence[_Step]) -> None:
        """An account no identity declares that the target reports privileged is never
        touched (the plan never acts on those; a plan made elsewhere, or a role promoted
        since, must not either): the accounts at risk are read in one read first."""
        # The plan names the identity of every account the policy declares.
        # Lockstep's own lease prefix is the exception: an account planted under it is
        # suspended however privileged it is (suspended, never deleted).
        risky = [
            s
            for s in steps
            if s.action.op not in (Op.CREATE_ACCOUNT, Op.GRANT)
            and s.action.identity is None
            and not (
                s.action.op is Op.SUSPEND_ACCOUNT and s.action.account.startswith(LEASE_PREFIX)
            )
        ]
        if not risky:
            return
        try:
            read = read_accounts(session, sorted({s.action.account for s in risky}))
        except TargetUnreachable as exc:
            reason = f"target unreachable: {redact(str(exc))}"
            self.applier.lose(steps[0].action.target, reason)
            for step in steps:
                step.keep_pending = True
                step.close(Status.FAILED, reason)
            return
        for step in risky:
            account = read.get(step.action.account)
            if account is not None and account.privileged is not None:
                step.close(Status.FAILED, f"refused: {account.privileged}; no identity declares it")

    # ------------------------------------------------------------ the target's answers

    def _take(self, steps: Sequence[_Step], outcomes: Sequence[Outcome]) -> None:
        applier = self.applier
        for step, outcome in zip(steps, outcomes, strict=True):
            action = step.action
            if isinstance(outcome, TargetUnreachable):
                reason = f"target unreachable: {redact(str(outcome))}"
                applier.lose(action.target, reason)
                step.keep_pending = True
                step.close(Status.FAILED, reason)
            elif isinstance(outcome, ActionFailed):
                step.close(Status.FAILED, redact(str(outcome)))
            elif isinstance(outcome, Credential):
                step.returned = outcome
                if step.staged is not None:
                    step.staged = self._minted(step.staged, outcome)
            elif outcome is not None:
                step.close(Status.FAILED, redact(str(outcome)))

    def _minted(self, staged: PendingCredential, returned: Credential) -> PendingCredential:
        """A target that mints its own credential (an AWS access key) returned another one
        than the staged: the pending change then holds what it returned."""
        if staged.secret is not None and returned.secret.fingerprint() == staged.fingerprint:
            return staged
        return self.applier.vault.restage(staged, returned.username, returned.secret)

    def _promote(self, steps: Sequence[_Step]) -> None:
        """The credentials the target now holds become the vault's current ones, in one
        commit, before they go anywhere: a delivery that fails is retried from there, and a
        suspension password is kept so that ``verify`` can go on proving it refused."""
        applier = self.applier
        changed = [s for s in steps if s.result is None and s.returned and s.staged]
        if not changed:
            return
        applier.vault.promote_all([s.staged for s in changed if s.staged], applier.clock())
        faults.reached(changed[0].action.op, "promoted")

    def _deliver(self, steps: Sequence[_Step]) -> list[tuple[str, Mapping[str, Any]]]:
        """Each issued credential to every sink of its account; the delivery entries are
        journaled with the results (a crash before then leaves the change staged, and the
        recovery that settles it delivers again)."""
        applier = self.applier
        entries: list[tuple[str, Mapping[str, Any]]] = []
        issued = False
        for step in steps:
            action, returned = step.action, step.returned
            if step.result is not None:
                continue
            if action.op is Op.DELETE_ACCOUNT:
                step.evidence = Evidence(refused=self._previous(step))
            if returned is None:
                continue
            if action.op is Op.SUSPEND_ACCOUNT:
                refused = [("suspension password", returned), *self._previous(step)]
                step.evidence = Evidence(refused=refused)
                continue
            issued = True
            step.fingerprint = returned.secret.fingerprint()
            step.evidence = Evidence(issued=returned)
            fields = action_fields(action)
            for sink in self._account_sinks(action.target, action.account):
                try:
                    where = applier.delivery.write(sink, action.target, action.account, returned)
                except SinkError as exc:
                    step.close(Status.FAILED, f"credential not delivered: {redact(str(exc))}")
                    break
                entries.append(
                    ("delivery", {**fields, "sink": where, "fingerprint": step.fingerprint})
                )
        if issued:
            faults.reached(steps[0].action.op, "delivered")
        return entries

    def _account_sinks(self, target: str, account: str) -> list[str]:
        if self._sinks is None:
            self._sinks = sink_index(self.applier.policy)
        return self._sinks.get((target, account), [])

    @staticmethod
    def _previous(step: _Step) -> list[tuple[str, Credential]]:
        old = step.previous
        return (
            [] if old is None else [("previous credential", Credential(old.username, old.secret))]
        )

    # ------------------------------------------------------------ verification

    def _read_back(self, session: Session, steps: Sequence[_Step]) -> list[tuple[_Step, Proof]]:
        """Read every account of the batch back in one read; the probes the batch needs."""
        if not steps:
            return []
        try:
            accounts = read_accounts(session, sorted({s.action.account for s in steps}))
        except TargetUnreachable as exc:
            for step in steps:
                step.close(Status.UNVERIFIED, f"could not read back: {redact(str(exc))}")
            return []
        for step in steps:
            step.checks = read_back_checks(step.action, accounts.get(step.action.account))
        return [(s, p) for s in steps for p in proofs(s.evidence)]

    # ------------------------------------------------------------ after

    def _end(self, steps: Sequence[_Step], deliveries: Sequence[tuple[str, Any]]) -> None:
        """Every result (and the deliveries before them) in one commit, which also closes
        the staged changes whose result it journals."""
        applier = self.applier
        results = []
        for step in steps:
            assert step.result is not None
            r = step.result
            fields = result_fields(r.action, r.status, r.detail, step.fingerprint, r.checks)
            results.append(("result", fields))
        closed = [s.staged for s in steps if s.staged is not None and not s.keep_pending]
        with applier.journal.recording(VAULT_LOCK, pending_credentials) as conn:
            entries = applier.journal.append_in(conn, [*deliveries, *results])
            applier.vault.discard_in(conn, closed)
        for step, entry in zip(steps, entries[len(deliveries) :], strict=True):
            assert step.result is not None
            step.result = replace(step.result, seq=entry.seq)


def _change(step: _Step) -> Change:
    action, staged = step.action, step.staged
    return Change(action.op, action.account, action.entitlement, staged.secret if staged else None)
