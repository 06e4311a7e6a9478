"""Executing a plan: intent journaled, effect, credential kept and delivered, verified, result
journaled. If the journal cannot be written, nothing more is changed (fail closed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, assert_never

from lockstep.connectors.base import (
    ActionFailed,
    ConnectorType,
    Credential,
    HoldsTwoCredentials,
    Session,
    TargetUnreachable,
)
from lockstep.credentials.vault import PendingCredential, StoredCredential, Vault
from lockstep.engine import faults
from lockstep.engine.delivery import Deliverer
from lockstep.engine.verify import REAL_TIME, Evidence, Timer, propagation_window, verify_action
from lockstep.journal import Journal
from lockstep.model import (
    LEASE_PREFIX,
    REMOVING_OPS,
    Action,
    Check,
    Op,
    Plan,
    Policy,
    Result,
    Status,
)
from lockstep.secret import Secret, generate_password, redact


def action_fields(action: Action) -> dict[str, Any]:
    fields = {
        "op": str(action.op),
        "target": action.target,
        "account": action.account,
        "entitlement": action.entitlement,
        "identity": action.identity,
        "reason": action.reason,
    }
    if action.request is not None:
        fields["request"] = action.request
    if action.review is not None:
        fields["review"] = action.review  # the decision this action enacts
    return fields


# Changes staged in the vault before the target is touched (two-phase): those that set or
# take away a credential. Grants and revokes are repaired by the next plan as they are.
STAGED_OPS = frozenset(
    {Op.CREATE_ACCOUNT, Op.RESTORE_ACCOUNT, Op.SUSPEND_ACCOUNT, Op.ROTATE_CREDENTIAL}
    | {Op.DELETE_ACCOUNT}
)


def execute(session: Session, action: Action, secret: Secret | None) -> Credential | None:
    """The session's operation for ``action``; ``secret`` is the staged new password of an
    operation that takes one."""
    account = action.account
    match action.op:
        case Op.CREATE_ACCOUNT:
            return session.create_account(account, _needs(secret))
        case Op.GRANT:
            session.grant(account, _entitlement(action))
        case Op.REVOKE:
            session.revoke(account, _entitlement(action))
        case Op.SUSPEND_ACCOUNT:
            return session.suspend_account(account, _needs(secret))
        case Op.RESTORE_ACCOUNT:
            return session.restore_account(account, _needs(secret))
        case Op.ROTATE_CREDENTIAL:
            return session.rotate_credential(account, _needs(secret))
        case Op.END_SESSIONS:
            session.end_sessions(account)
        case Op.DELETE_ACCOUNT:
            session.delete_account(account)
        case _:
            assert_never(action.op)
    return None


def _needs(secret: Secret | None) -> Secret:
    return secret if secret is not None else generate_password()


def _entitlement(action: Action) -> str:
    if action.entitlement is None:
        raise ActionFailed(f"{action.op} {action.account!r}: no entitlement given")
    return action.entitlement


@dataclass
class Applier:
    policy: Policy
    sessions: Mapping[str, Session]
    connectors: Mapping[str, ConnectorType]
    journal: Journal
    vault: Vault
    clock: Callable[[], datetime]
    progress: Callable[[Result], None] = lambda result: None
    timer: Timer = REAL_TIME  # for probe backoff within a propagation window
    # Asked between actions: once it answers True (SIGINT, SIGTERM), no further action starts.
    stop: Callable[[], bool] = lambda: False
    _lost: dict[str, str] = field(default_factory=dict)  # targets that went away mid-apply

    @property
    def delivery(self) -> Deliverer:
        return Deliverer(self.policy, self.journal, self.clock)

    def apply(self, plan: Plan) -> list[Result]:
        """Every action of ``plan``, in batches of one target and one operation."""
        from lockstep.engine.batches import BatchRun  # batches builds on this module

        return BatchRun(self).run(plan.actions)

    def apply_one(self, action: Action) -> Result:
        if action.target in self._lost:
            return Result(action, Status.FAILED, f"not attempted: {self._lost[action.target]}")
        session = self.sessions.get(action.target)
        if session is None:
            return Result(action, Status.FAILED, "not attempted: target unreachable")
        old = self.vault.current(action.target, action.account)
        staged = self._stage(action)
        self.journal.append("intent", action_fields(action))
        try:
            refusal = self._privileged_orphan(session, action)
            if refusal is not None:
                result = self.finish(action, Status.FAILED, refusal)
            elif action.op is Op.ROTATE_CREDENTIAL and staged is not None:
                result = self._rotate(session, action, old, staged)
            else:
                result = self._change(session, action, old, staged)
        except TargetUnreachable as exc:
            # The outcome is unknown: the pending change stays for the next pass to settle.
            self._lost[action.target] = f"target unreachable: {redact(str(exc))}"
            return self.finish(action, Status.FAILED, self._lost[action.target])
        except ActionFailed as exc:
            result = self.finish(action, Status.FAILED, redact(str(exc)))
        self._settle(staged)
        return result

    def _privileged_orphan(self, session: Session, action: Action) -> str | None:
        """Why ``action`` must not touch its account: one no identity declares that the
        target reports privileged (the plan never acts on those; a plan made elsewhere, or
        a role promoted since, must not either)."""
        # The plan names the identity of every account the policy declares.
        if action.op in (Op.CREATE_ACCOUNT, Op.GRANT) or action.identity is not None:
            return None
        # Lockstep's own lease prefix is the exception: an account planted under it is
        # suspended however privileged it is (suspended, never deleted).
        if action.op is Op.SUSPEND_ACCOUNT and action.account.startswith(LEASE_PREFIX):
            return None
        account = session.read_account(action.account)
        if account is None or account.privileged is None:
            return None
        return f"refused: {account.privileged}; no identity declares it"

    def _stage(self, action: Action) -> PendingCredential | None:
        """The first phase: the new secret stored, encrypted, as pending."""
        if action.op not in STAGED_OPS:
            return None
        secret = None if action.op is Op.DELETE_ACCOUNT else generate_password()
        staged = self.vault.stage(
            action.target, action.account, action.identity, str(action.op), action.account, secret
        )
        faults.reached(action.op, "staged")
        return staged

    def _settle(self, staged: PendingCredential | None) -> None:
        """A change whose result is journaled (kept, or rolled back) leaves nothing pending."""
        if staged is not None:
            self.vault.discard(staged)

    def _minted(self, staged: PendingCredential, returned: Credential) -> PendingCredential:
        """A target that mints its own credential (an AWS access key) returns another one
        than the staged: the pending change then holds what the target returned."""
        if staged.secret is not None and returned.secret.fingerprint() == staged.fingerprint:
            return staged
        return self.vault.restage(staged, returned.username, returned.secret)

    def _change(
        self,
        session: Session,
        action: Action,
        old: StoredCredential | None,
        staged: PendingCredential | None,
    ) -> Result:
        returned = execute(session, action, staged.secret if staged else None)
        faults.reached(action.op, "target_changed")
        evidence = Evidence(refused=self._old(action, old) if action.op in REMOVING_OPS else [])
        fingerprint = None
        if returned is not None and staged is not None:
            staged = self._minted(staged, returned)
            # The credential is the vault's before it goes anywhere: a delivery that fails is
            # retried by the next pass from there. A suspension password is kept too, so that
            # `verify` can keep proving that even the current password no longer opens it.
            self._promote(action, staged)
        if action.op is Op.SUSPEND_ACCOUNT and returned is not None:
            evidence = Evidence(refused=[("suspension password", returned), *evidence.refused])
        elif returned is not None:
            fingerprint = returned.secret.fingerprint()
            delivery_error = self.delivery.deliver(action_fields(action), returned)
            faults.reached(action.op, "delivered")
            if delivery_error:
                return self.finish(action, Status.FAILED, delivery_error, fingerprint)
            evidence = Evidence(issued=returned, refused=self._old(action, old))
        status, detail, checks = self.verify(session, action, evidence)
        return self.finish(action, status, detail, fingerprint, checks)

    def _promote(self, action: Action, staged: PendingCredential) -> None:
        self.vault.promote(staged, self.clock())
        faults.reached(action.op, "promoted")

    def _rotate(
        self,
        session: Session,
        action: Action,
        old: StoredCredential | None,
        staged: PendingCredential,
    ) -> Result:
        """Rotation never leaves the workload without a working secret.

        Where the target holds two credentials at once: add the new one, deliver it, prove it
        works, then retire the old one and prove it refused. Where it holds one (a PostgreSQL
        role's password), the change is immediate; if delivery then fails, the previous
        credential is put back, so the workload keeps the one it has. Either way the new
        secret was staged first, so a crash at any step is settled by the next pass.
        """
        previous = self._old(action, old)
        # Zero downtime needs to know which credential to retire: one lockstep never issued
        # is replaced outright instead (the target then keeps only the new one).
        if isinstance(session, HoldsTwoCredentials) and previous:
            try:
                new = session.add_credential(action.account, staged.secret)
            except ActionFailed:
                # Some accounts cannot hold a second credential (a password stored in a
                # scheme the connector cannot match): rotate in place instead.
                return self._rotate_in_place(session, action, old, previous, staged)
            faults.reached(action.op, "target_changed")
            staged = self._minted(staged, new)
            return self._rotate_side_by_side(session, session, action, new, old, previous, staged)
        return self._rotate_in_place(session, action, old, previous, staged)

    def _rotate_side_by_side(
        self,
        session: Session,
        holder: HoldsTwoCredentials,
        action: Action,
        new: Credential,
        old: StoredCredential | None,
        previous: list[tuple[str, Credential]],
        staged: PendingCredential,
    ) -> Result:
        """``holder`` is ``session`` seen through its two-credential capability."""
        delivered: list[str] = []
        fields = action_fields(action)
        delivery_error = self.delivery.deliver(fields, new, delivered)
        if delivery_error:
            holder.retire_credential(action.account, new)
            sinks = self.delivery.give_back(fields, delivered, old)
            return self.finish(action, Status.FAILED, f"{delivery_error}; old kept{sinks}")
        faults.reached(action.op, "delivered")
        accepted = Evidence(issued=new)
        status, detail, checks = self.verify(session, action, accepted)
        if status is not Status.VERIFIED:
            return self.finish(action, status, f"{detail}; old kept", None, checks)
        self._promote(action, staged)
        for _, cred in previous:
            holder.retire_credential(action.account, cred)
        evidence = Evidence(issued=new, refused=previous)
        status, detail, checks = self.verify(session, action, evidence)
        return self.finish(action, status, detail, new.secret.fingerprint(), checks)

    def _rotate_in_place(
        self,
        session: Session,
        action: Action,
        old: StoredCredential | None,
        previous: list[tuple[str, Credential]],
        staged: PendingCredential,
    ) -> Result:
        new = session.rotate_credential(action.account, _needs(staged.secret))
        faults.reached(action.op, "target_changed")
        staged = self._minted(staged, new)
        delivered: list[str] = []
        delivery_error = self.delivery.deliver(action_fields(action), new, delivered)
        if delivery_error:
            restored = self._roll_back(session, action, old, new, delivered)
            return self.finish(action, Status.FAILED, f"{delivery_error}; {restored}")
        faults.reached(action.op, "delivered")
        self._promote(action, staged)
        evidence = Evidence(issued=new, refused=previous)
        status, detail, checks = self.verify(session, action, evidence)
        return self.finish(action, status, detail, new.secret.fingerprint(), checks)

    def _roll_back(
        self,
        session: Session,
        action: Action,
        old: StoredCredential | None,
        new: Credential,
        delivered: list[str],
    ) -> str:
        """Put the previous credential back after the new one could not be delivered, as an
        action of its own: intent journaled, effect, the previous credential proven accepted
        and the undelivered one refused, result journaled; the sinks that did receive the new
        credential get the previous one again."""
        if old is None:
            return "the previous credential is unknown to lockstep and cannot be restored"
        previous = Credential(old.username, old.secret)
        undo = {
            **action_fields(action),
            "op": "restore_previous_credential",
            "fingerprint": old.fingerprint,
            "undelivered": new.secret.fingerprint(),
        }
        self.journal.append("rollback_intent", undo)
        try:
            session.rotate_credential(action.account, old.secret)
        except (ActionFailed, TargetUnreachable) as exc:
            detail = f"the previous credential could not be restored: {redact(str(exc))}"
            self.journal.append("rollback_result", {**undo, "status": "failed", "detail": detail})
            return detail
        evidence = Evidence(issued=previous, refused=[("undelivered credential", new)])
        status, detail, checks = self.verify(session, action, evidence)
        sinks = self.delivery.give_back(action_fields(action), delivered, old)
        self.journal.append(
            "rollback_result",
            {
                **undo,
                "status": str(status),
                "detail": detail + sinks,
                "checks": [{"expected": c.expected, "actual": c.actual} for c in checks],
            },
        )
        if status is not Status.VERIFIED:
            return f"restoring the previous credential is {status}: {detail}{sinks}"
        return f"previous credential restored and proven working{sinks}"

    def verify(
        self, session: Session, action: Action, evidence: Evidence
    ) -> tuple[Status, str, tuple[Check, ...]]:
        return verify_action(session, action, evidence, self.window(action.target), self.timer)

    def window(self, target: str) -> float:
        return propagation_window(self.policy.targets[target], self.connectors[target])

    @staticmethod
    def _old(action: Action, old: StoredCredential | None) -> list[tuple[str, Credential]]:
        if old is None or action.op in (Op.CREATE_ACCOUNT, Op.RESTORE_ACCOUNT):
            return []
        return [("previous credential", Credential(old.username, old.secret))]

    def finish(
        self,
        action: Action,
        status: Status,
        detail: str,
        fingerprint: str | None = None,
        checks: tuple[Any, ...] = (),
        kind: str = "result",
    ) -> Result:
        entry = self.journal.append(
            kind, result_fields(action, status, detail, fingerprint, checks)
        )
        return Result(action, status, detail, checks, entry.seq)

    def lost(self, target: str) -> str | None:
        """Why ``target`` went away during this apply, or None while it is there."""
        return self._lost.get(target)

    def lose(self, target: str, reason: str) -> None:
        self._lost[target] = reason


def result_fields(
    action: Action,
    status: Status,
    detail: str,
    fingerprint: str | None = None,
    checks: Sequence[Check] = (),
) -> dict[str, Any]:
    """What an action's result entry in the journal holds."""
    return {
        **action_fields(action),
        "status": str(status),
        "detail": detail,
        "fingerprint": fingerprint,
        "checks": [
            {"entitlement": c.entitlement, "expected": c.expected, "actual": c.actual}
            for c in checks
        ],
    }
