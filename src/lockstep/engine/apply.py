"""Executing a plan: intent journaled, effect, credential kept and delivered, verified, result
journaled. If the journal cannot be written, nothing more is changed (fail closed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from lockstep.credentials.sinks import Delivery, SinkError, deliver
from lockstep.credentials.vault import StoredCredential, Vault
from lockstep.engine.verify import REAL_TIME, Evidence, Timer, propagation_window, verify_action
from lockstep.journal import Journal, JournalError
from lockstep.model import REMOVING_OPS, Action, Check, Op, Plan, Policy, Result, Status
from lockstep.secret import generate_password, redact


def action_fields(action: Action) -> dict[str, Any]:
    return {
        "op": str(action.op),
        "target": action.target,
        "account": action.account,
        "entitlement": action.entitlement,
        "identity": action.identity,
        "reason": action.reason,
    }


def execute(session: Session, action: Action) -> Credential | None:
    """The session's operation for ``action``, with a fresh password where it takes one."""
    account = action.account
    match action.op:
        case Op.CREATE_ACCOUNT:
            return session.create_account(account, generate_password())
        case Op.GRANT:
            session.grant(account, _entitlement(action))
        case Op.REVOKE:
            session.revoke(account, _entitlement(action))
        case Op.SUSPEND_ACCOUNT:
            return session.suspend_account(account, generate_password())
        case Op.RESTORE_ACCOUNT:
            return session.restore_account(account, generate_password())
        case Op.ROTATE_CREDENTIAL:
            return session.rotate_credential(account, generate_password())
        case Op.END_SESSIONS:
            session.end_sessions(account)
        case Op.DELETE_ACCOUNT:
            session.delete_account(account)
        case _:
            assert_never(action.op)
    return None


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
    _lost: dict[str, str] = field(default_factory=dict)  # targets that went away mid-apply

    def apply(self, plan: Plan) -> list[Result]:
        results: list[Result] = []
        journal_down: str | None = None
        for action in plan.actions:
            if journal_down is not None:
                result = Result(action, Status.FAILED, f"not attempted: {journal_down}")
            else:
                try:
                    result = self._one(action)
                except JournalError as exc:
                    journal_down = f"journal unavailable, nothing more changed ({exc})"
                    result = Result(action, Status.FAILED, journal_down)
            results.append(result)
            self.progress(result)
        return results

    def _one(self, action: Action) -> Result:
        if action.target in self._lost:
            return Result(action, Status.FAILED, f"not attempted: {self._lost[action.target]}")
        session = self.sessions.get(action.target)
        if session is None:
            return Result(action, Status.FAILED, "not attempted: target unreachable")
        self.journal.append("intent", action_fields(action))
        old = self.vault.current(action.target, action.account)
        try:
            refusal = self._privileged_orphan(session, action)
            if refusal is not None:
                return self._finish(action, Status.FAILED, refusal)
            if action.op is Op.ROTATE_CREDENTIAL:
                return self._rotate(session, action, old)
            return self._change(session, action, old)
        except TargetUnreachable as exc:
            self._lost[action.target] = f"target unreachable: {redact(str(exc))}"
            return self._finish(action, Status.FAILED, self._lost[action.target])
        except ActionFailed as exc:
            return self._finish(action, Status.FAILED, redact(str(exc)))

    def _privileged_orphan(self, session: Session, action: Action) -> str | None:
        """Why ``action`` must not touch its account: one no identity declares that the
        target reports privileged (the plan never acts on those; a plan made elsewhere, or
        a role promoted since, must not either)."""
        # The plan names the identity of every account the policy declares.
        if action.op in (Op.CREATE_ACCOUNT, Op.GRANT) or action.identity is not None:
            return None
        account = session.read_account(action.account)
        if account is None or account.privileged is None:
            return None
        return f"refused: {account.privileged}; no identity declares it"

    def _change(self, session: Session, action: Action, old: StoredCredential | None) -> Result:
        returned = execute(session, action)
        evidence = Evidence(refused=self._old(action, old) if action.op in REMOVING_OPS else [])
        fingerprint = None
        if action.op is Op.SUSPEND_ACCOUNT and returned is not None:
            # The suspension password is kept (encrypted) so that `verify` can keep proving
            # that even the account's current password no longer opens it.
            self._keep(action, returned)
            evidence = Evidence(refused=[("suspension password", returned), *evidence.refused])
        elif returned is not None:
            fingerprint = returned.secret.fingerprint()
            self._keep(action, returned)
            delivery_error = self._deliver(action, returned)
            if delivery_error:
                return self._finish(action, Status.FAILED, delivery_error, fingerprint)
            evidence = Evidence(issued=returned, refused=self._old(action, old))
        status, detail, checks = self._verify(session, action, evidence)
        return self._finish(action, status, detail, fingerprint, checks)

    def _rotate(self, session: Session, action: Action, old: StoredCredential | None) -> Result:
        """Rotation never leaves the workload without a working secret.

        Where the target holds two credentials at once: add the new one, deliver it, prove it
        works, then retire the old one and prove it refused. Where it holds one (a PostgreSQL
        role's password), the change is immediate; if delivery then fails, the previous
        credential is put back, so the workload keeps the one it has.
        """
        previous = self._old(action, old)
        # Zero downtime needs to know which credential to retire: one lockstep never issued
        # is replaced outright instead (the target then keeps only the new one).
        if isinstance(session, HoldsTwoCredentials) and previous:
            try:
                new = session.add_credential(action.account, generate_password())
            except ActionFailed:
                # Some accounts cannot hold a second credential (a password stored in a
                # scheme the connector cannot match): rotate in place instead.
                return self._rotate_in_place(session, action, old, previous)
            return self._rotate_side_by_side(session, session, action, new, old, previous)
        return self._rotate_in_place(session, action, old, previous)

    def _rotate_side_by_side(
        self,
        session: Session,
        holder: HoldsTwoCredentials,
        action: Action,
        new: Credential,
        old: StoredCredential | None,
        previous: list[tuple[str, Credential]],
    ) -> Result:
        """``holder`` is ``session`` seen through its two-credential capability."""
        delivered: list[str] = []
        delivery_error = self._deliver(action, new, delivered)
        if delivery_error:
            holder.retire_credential(action.account, new)
            sinks = self._give_back(action, delivered, old)
            return self._finish(action, Status.FAILED, f"{delivery_error}; old kept{sinks}")
        accepted = Evidence(issued=new)
        status, detail, checks = self._verify(session, action, accepted)
        if status is not Status.VERIFIED:
            return self._finish(action, status, f"{detail}; old kept", None, checks)
        for _, cred in previous:
            holder.retire_credential(action.account, cred)
        self._keep(action, new)
        evidence = Evidence(issued=new, refused=previous)
        status, detail, checks = self._verify(session, action, evidence)
        return self._finish(action, status, detail, new.secret.fingerprint(), checks)

    def _rotate_in_place(
        self,
        session: Session,
        action: Action,
        old: StoredCredential | None,
        previous: list[tuple[str, Credential]],
    ) -> Result:
        new = session.rotate_credential(action.account, generate_password())
        delivered: list[str] = []
        delivery_error = self._deliver(action, new, delivered)
        if delivery_error:
            restored = self._roll_back(session, action, old, new, delivered)
            return self._finish(action, Status.FAILED, f"{delivery_error}; {restored}")
        self._keep(action, new)
        evidence = Evidence(issued=new, refused=previous)
        status, detail, checks = self._verify(session, action, evidence)
        return self._finish(action, status, detail, new.secret.fingerprint(), checks)

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
        status, detail, checks = self._verify(session, action, evidence)
        sinks = self._give_back(action, delivered, old)
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

    def _give_back(self, action: Action, delivered: list[str], old: StoredCredential | None) -> str:
        """The sinks that received a credential now withdrawn get the previous one again;
        says which could not."""
        if old is None or not delivered:
            return ""
        previous = Credential(old.username, old.secret)
        failed = []
        for sink in delivered:
            try:
                self._write(sink, action, previous)
            except SinkError as exc:
                failed.append(redact(str(exc)))
        if failed:
            return f"; {len(failed)} sink(s) that received the new credential kept it: {failed[0]}"
        return ""

    def _verify(
        self, session: Session, action: Action, evidence: Evidence
    ) -> tuple[Status, str, tuple[Check, ...]]:
        return verify_action(session, action, evidence, self._window(action), self.timer)

    def _window(self, action: Action) -> float:
        return propagation_window(
            self.policy.targets[action.target], self.connectors[action.target]
        )

    @staticmethod
    def _old(action: Action, old: StoredCredential | None) -> list[tuple[str, Credential]]:
        if old is None or action.op in (Op.CREATE_ACCOUNT, Op.RESTORE_ACCOUNT):
            return []
        return [("previous credential", Credential(old.username, old.secret))]

    def _keep(self, action: Action, credential: Credential) -> None:
        self.vault.put(
            action.target,
            action.account,
            action.identity,
            credential.username,
            credential.secret,
            self.clock(),
        )

    def _sinks(self, action: Action) -> list[str]:
        """Where the account's credential goes: the sink of every identity declaring the
        account (a shared account's workloads each need the new credential)."""
        sinks: list[str] = []
        for identity in self.policy.identities.values():
            sink = identity.credentials.sink
            declares = any(
                a.target == action.target and a.account == action.account for a in identity.access
            )
            if sink is not None and declares and sink not in sinks:
                sinks.append(sink)
        return sinks

    def _deliver(
        self, action: Action, credential: Credential, delivered: list[str] | None = None
    ) -> str | None:
        """Deliver ``credential`` to every sink of the account, journaling each delivery;
        the first failure stops and is returned. ``delivered`` collects the sinks written."""
        for sink in self._sinks(action):
            try:
                where = self._write(sink, action, credential)
            except SinkError as exc:
                return f"credential not delivered: {redact(str(exc))}"
            if delivered is not None:
                delivered.append(sink)
            self.journal.append(
                "delivery",
                {
                    **action_fields(action),
                    "sink": where,
                    "fingerprint": credential.secret.fingerprint(),
                },
            )
        return None

    def _write(self, sink: str, action: Action, credential: Credential) -> str:
        delivery = Delivery(
            target=action.target,
            account=action.account,
            username=credential.username,
            secret=credential.secret,
            issued_at=self.clock(),
            expires_at=None,
        )
        return deliver(sink, delivery)

    def _finish(
        self,
        action: Action,
        status: Status,
        detail: str,
        fingerprint: str | None = None,
        checks: tuple[Any, ...] = (),
    ) -> Result:
        self.journal.append(
            "result",
            {
                **action_fields(action),
                "status": str(status),
                "detail": detail,
                "fingerprint": fingerprint,
                "checks": [
                    {"entitlement": c.entitlement, "expected": c.expected, "actual": c.actual}
                    for c in checks
                ],
            },
        )
        return Result(action, status, detail, checks)
