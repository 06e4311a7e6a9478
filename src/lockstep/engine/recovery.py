"""Settling credential changes that a crash left unfinished.

Every credential change is two-phase: the new secret is stored encrypted as pending before
the target is changed, and becomes current only once the target holds it. A change still
pending when a pass starts was interrupted, somewhere between those two phases. As AWS
Secrets Manager settles an ``AWSPENDING`` version, the target is asked which credential it
accepts: the pending one (the change happened: deliver it, make it current, retire the old
one), the current one (it did not: drop the pending one and put the current one back in
the sinks), or neither (the account is gone, or holds a secret nobody has: the next plan
recreates it, or a fresh rotation replaces it). Each settlement is journaled as a
``recovery_intent`` and a ``recovery_result``, and verified like any action.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    HoldsTwoCredentials,
    ProbeResult,
    Session,
    TargetUnreachable,
)
from lockstep.credentials.vault import PendingCredential, StoredCredential
from lockstep.engine import faults
from lockstep.engine.apply import Applier, action_fields
from lockstep.engine.verify import Evidence, Inconclusive, probe_until
from lockstep.model import Account, Action, Op, Result, Status
from lockstep.secret import redact

RESULT = "recovery_result"
_REASON = "recovery: a change interrupted before it was recorded"


@dataclass
class Recovery:
    applier: Applier

    def run(self, pending: list[PendingCredential]) -> list[Result]:
        """Settle each pending change whose target has an open session; the others wait."""
        results = []
        for change in pending:
            session = self.applier.sessions.get(change.target)
            if session is None or change.target not in self.applier.policy.targets:
                continue
            try:
                results.append(self._one(session, change))
            except (TargetUnreachable, Inconclusive):
                continue  # unknown: it stays pending, and is settled by a later pass
        return results

    def _one(self, session: Session, change: PendingCredential) -> Result:
        action = Action(
            Op(change.op), change.target, change.account, None, change.identity, _REASON
        )
        self.applier.journal.append(
            "recovery_intent",
            {
                **action_fields(action),
                "pending_since": change.created_at.isoformat(),
                "fingerprint": change.fingerprint,
            },
        )
        try:
            return self._settle(session, action, change)
        except ActionFailed as exc:
            return self.applier.finish(
                action, Status.FAILED, f"recovery failed: {redact(str(exc))}", kind=RESULT
            )

    def _settle(self, session: Session, action: Action, change: PendingCredential) -> Result:
        vault = self.applier.vault
        account = session.read_account(action.account)
        current = vault.current(action.target, action.account)
        if action.op is Op.DELETE_ACCOUNT:
            vault.discard(change)
            done = "completed" if account is None else "not done; the next plan decides again"
            return self._done(action, f"deletion {done}")
        if action.op is Op.SUSPEND_ACCOUNT:
            if account is not None and not account.enabled and change.secret is not None:
                vault.promote(change, self.applier.clock())
                vault.discard(change)
                return self._done(action, "suspension completed: its password kept")
            vault.discard(change)
            return self._done(action, "suspension not done; the next plan decides again")
        if self._accepts(session, account, change.username, change):
            return self._complete(session, action, change, current)
        if current is not None and self._accepts(session, account, current.username, current):
            return self._roll_back(action, change, current)
        vault.discard(change)
        if account is None or not account.enabled:
            return self._done(action, "change not done; the next plan does it again")
        # The account works with a secret neither the vault nor any sink holds (a target
        # that minted its own): replace it, as a rotation of its own.
        rotation = Action(
            Op.ROTATE_CREDENTIAL, action.target, action.account, None, action.identity, _REASON
        )
        return self.applier.apply_one(rotation)

    def _accepts(
        self,
        session: Session,
        account: Account | None,
        username: str,
        held: PendingCredential | StoredCredential,
    ) -> bool:
        if account is None or not account.enabled or held.secret is None:
            return False
        window = self.applier.window(held.target)
        got = probe_until(
            session,
            Credential(username, held.secret),
            ProbeResult.ACCEPTED,
            window,
            self.applier.timer,
        )
        return got is ProbeResult.ACCEPTED

    def _complete(
        self,
        session: Session,
        action: Action,
        change: PendingCredential,
        current: StoredCredential | None,
    ) -> Result:
        """The target holds the pending credential: deliver it, make it current, and retire
        the previous one where the target still holds both."""
        assert change.secret is not None
        new = Credential(change.username, change.secret)
        error = self.applier.delivery.deliver(action_fields(action), new)
        faults.reached("recovery", "delivered")
        self.applier.vault.promote(change, self.applier.clock())
        faults.reached("recovery", "promoted")
        refused: list[tuple[str, Credential]] = []
        replaced = current is not None and current.fingerprint != change.fingerprint
        if replaced and action.op is Op.ROTATE_CREDENTIAL and current is not None:
            previous = Credential(current.username, current.secret)
            if isinstance(session, HoldsTwoCredentials):
                session.retire_credential(action.account, previous)
            refused.append(("previous credential", previous))
        if error:
            result = self.applier.finish(
                action, Status.FAILED, f"change completed; {error}", change.fingerprint, kind=RESULT
            )
        else:
            status, detail, checks = self.applier.verify(
                session, action, Evidence(issued=new, refused=refused)
            )
            result = self.applier.finish(
                action,
                status,
                f"change completed: {detail}",
                change.fingerprint,
                checks,
                kind=RESULT,
            )
        self.applier.vault.discard(change)
        return result

    def _roll_back(
        self, action: Action, change: PendingCredential, current: StoredCredential
    ) -> Result:
        """The target still accepts the current credential: the pending one goes, and the
        sinks (which may have received it) get the current one again."""
        self.applier.vault.discard(change)
        error = self.applier.delivery.deliver(
            action_fields(action), Credential(current.username, current.secret)
        )
        if error:
            return self.applier.finish(
                action, Status.FAILED, f"change rolled back; {error}", kind=RESULT
            )
        return self._done(action, "change rolled back: the current credential still works")

    def _done(self, action: Action, detail: str) -> Result:
        return self.applier.finish(action, Status.VERIFIED, detail, kind=RESULT)
