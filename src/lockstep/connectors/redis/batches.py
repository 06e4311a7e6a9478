"""Batches on Redis: a batch's ACL SETUSERs pipelined, its users read back in one pipeline.

Redis runs a pipeline's commands one by one and answers each on its own, so a change Redis
refuses fails alone while the others of the batch take effect; there is no transaction to
retry. Grants and revokes of one user are merged into the one ``ACL SETUSER`` that rewrites
its whole rule set (as a single change would), and if Redis refuses the merged set, that
user's changes are tried one at a time so that only the bad one fails. The ACL file is saved
once per batch, and the sessions of suspended users are counted once, after their ``CLIENT
KILL``s.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final, cast

import redis

from lockstep.connectors.base import (
    ActionFailed,
    Change,
    ConnectorError,
    Credential,
    GrammarError,
    Outcome,
    Session,
    TargetUnreachable,
    apply_each,
)
from lockstep.connectors.redis.acl import (
    MARKER_PREFIX,
    RESET_PERMISSIONS,
    RULES_KEY,
    AclUser,
    apply_order,
    canonical_entitlement,
    user_from_reply,
)
from lockstep.connectors.redis.admin import RedisAdmin, call, guard, scrub
from lockstep.model import Account, Op, Snapshot

# Logins are cheap on Redis (no process per connection), but it serves them on one thread.
PROBE_SLOTS: Final = 4
_RULES = frozenset({Op.GRANT, Op.REVOKE})
# Operations that leave the user with the change's secret.
_SETS = frozenset({Op.CREATE_ACCOUNT, Op.SUSPEND_ACCOUNT, Op.RESTORE_ACCOUNT, Op.ROTATE_CREDENTIAL})

Commands = list[tuple[str, ...]]


class RedisBatches(RedisAdmin):
    def _snapshot(self, users: Sequence[AclUser]) -> Snapshot:
        """The session's own read of ``users`` (rule checks, sessions): see the session."""
        raise NotImplementedError

    def read_accounts(self, accounts: Collection[str]) -> dict[str, Account | None]:
        names = sorted(accounts)
        replies = self._pipelined([("ACL", "GETUSER", n) for n in names], TargetUnreachable)
        users = [
            user_from_reply(name, reply)
            for name, reply in zip(names, replies, strict=True)
            if isinstance(reply, Mapping)
        ]
        found = self._snapshot(users).accounts if users else {}
        return {name: found.get(name) for name in names}

    def probe_slots(self) -> int:
        return PROBE_SLOTS

    def apply_batch(self, changes: Sequence[Change]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(changes)
        try:
            existing = self._existing([c.account for c in changes])
            planned = self._commands(changes, existing, outcomes)
            replies = self._pipelined([cmd for _, cmds in planned for cmd in cmds], ActionFailed)
        except TargetUnreachable as exc:
            return [exc] * len(changes)
        position = 0
        for indices, commands in planned:
            mine = replies[position : position + len(commands)]
            position += len(commands)
            refused = next((r for r in mine if isinstance(r, redis.exceptions.ResponseError)), None)
            if refused is None:
                continue
            if len(indices) > 1:  # a merged rule set: find which change Redis refuses
                for index, outcome in zip(indices, self._each(changes, indices), strict=True):
                    outcomes[index] = outcome
                continue
            secret = changes[indices[0]].secret
            outcomes[indices[0]] = ActionFailed(
                f"redis {changes[indices[0]].op}: {scrub(refused, secret)}"
            )
        try:
            self._after(changes, outcomes)
        except TargetUnreachable as exc:
            return [exc] * len(changes)
        return [
            Credential(c.account, c.secret)
            if o is None and c.secret is not None and c.op in _SETS
            else o
            for c, o in zip(changes, outcomes, strict=True)
        ]

    # ------------------------------------------------------------ before

    def _existing(self, names: Sequence[str]) -> dict[str, AclUser]:
        unique = sorted(set(names))
        replies = self._pipelined([("ACL", "GETUSER", n) for n in unique], TargetUnreachable)
        return {
            name: user_from_reply(name, reply)
            for name, reply in zip(unique, replies, strict=True)
            if isinstance(reply, Mapping)
        }

    def _commands(
        self, changes: Sequence[Change], existing: Mapping[str, AclUser], outcomes: list[Outcome]
    ) -> list[tuple[list[int], Commands]]:
        """Each change's commands (grants and revokes of one user merged), in order; the
        changes that cannot succeed get their ActionFailed in ``outcomes``."""
        planned: list[tuple[list[int], Commands]] = []
        rule_changes: dict[str, list[int]] = {}
        for index, change in enumerate(changes):
            name, secret = change.account, change.secret
            try:
                self._managed(name)
                if change.op not in (Op.CREATE_ACCOUNT, Op.END_SESSIONS) and name not in existing:
                    # ACL SETUSER would create a missing user, which none of these may do.
                    raise ActionFailed(f"no ACL user {name!r} on {self._target}")
                if change.op in _RULES:
                    rule_changes.setdefault(name, []).append(index)
                    continue
                if change.op in _SETS and secret is None:
                    raise ActionFailed(f"{change.op} {name!r}: no new secret given")
                password = ">" + secret.reveal() if secret is not None else ""
                planned.append(([index], self._for(change.op, name, password)))
            except ActionFailed as exc:
                outcomes[index] = exc
        current = self.read_accounts(list(rule_changes)) if rule_changes else {}
        for name, indices in rule_changes.items():
            rules = self._rules(name, [changes[i] for i in indices], current.get(name))
            if isinstance(rules, ActionFailed):
                for index in indices:
                    outcomes[index] = rules
                continue
            record = (
                ("HSET", RULES_KEY, name, json.dumps(rules)) if rules else ("HDEL", RULES_KEY, name)
            )
            planned.append(
                (indices, [("ACL", "SETUSER", name, *RESET_PERMISSIONS, *rules), record])
            )
        return planned

    @staticmethod
    def _for(op: Op, name: str, password: str) -> Commands:
        if op is Op.CREATE_ACCOUNT:
            # reset gives the clean -@all baseline; resetchannels too, because reset grants
            # every channel on servers that run with acl-pubsub-default allchannels.
            return [
                ("ACL", "SETUSER", name, "reset", "resetchannels", "on", password),
                ("HDEL", RULES_KEY, name),
            ]
        if op is Op.SUSPEND_ACCOUNT:
            # off refuses new logins but leaves open connections alone, hence the kill.
            return [
                ("ACL", "SETUSER", name, "off", "resetpass", password),
                ("CLIENT", "KILL", "USER", name),
            ]
        if op is Op.RESTORE_ACCOUNT:
            return [("ACL", "SETUSER", name, "on", "resetpass", password)]
        if op is Op.ROTATE_CREDENTIAL:
            return [("ACL", "SETUSER", name, "resetpass", password)]
        if op is Op.END_SESSIONS:
            return [("CLIENT", "KILL", "USER", name)]
        # DELUSER also drops the user's connections.
        return [("ACL", "DELUSER", name), ("HDEL", RULES_KEY, name)]

    @staticmethod
    def _rules(
        name: str, changes: Sequence[Change], account: Account | None
    ) -> list[str] | ActionFailed:
        """The user's whole rule set once every grant and revoke of ``changes`` is made."""
        if account is None:
            return ActionFailed(f"no ACL user {name!r}")
        held = set(account.entitlements)
        for change in changes:
            if change.op is Op.REVOKE:
                held.discard(change.entitlement or "")
                continue
            try:
                held.add(canonical_entitlement(change.entitlement or ""))
            except GrammarError as exc:
                return ActionFailed(str(exc))
        if any(t.startswith(MARKER_PREFIX) for t in held):
            return ActionFailed(
                f"{name!r} holds ACL rules lockstep cannot express; revoke the "
                f"'{MARKER_PREFIX.strip()}' entitlement (or fix the user by hand) first"
            )
        return apply_order(held)

    # ------------------------------------------------------------ after

    def _each(self, changes: Sequence[Change], indices: Sequence[int]) -> list[Outcome]:
        """One user's rule changes one at a time, through the one-change methods."""
        return apply_each(cast(Session, self), [changes[i] for i in indices])

    def _after(self, changes: Sequence[Change], outcomes: list[Outcome]) -> None:
        """Suspended users must have no connection left; a changed ACL is saved, once."""
        suspended = {
            c.account: i
            for i, c in enumerate(changes)
            if c.op is Op.SUSPEND_ACCOUNT and outcomes[i] is None
        }
        if suspended:
            left = self._sessions()
            for name, index in suspended.items():
                if left[name]:
                    outcomes[index] = ActionFailed(
                        f"{left[name]} connection(s) of {name!r} survived CLIENT KILL"
                    )
        changed = [
            i for i, c in enumerate(changes) if c.op is not Op.END_SESSIONS and outcomes[i] is None
        ]
        if not changed:
            return
        try:
            self._save_acl()
        except ActionFailed as exc:
            for index in changed:
                outcomes[index] = exc

    def _pipelined(
        self, commands: Sequence[tuple[str, ...]], failure: type[ConnectorError]
    ) -> list[Any]:
        """Every command in one round trip; each reply, or the ResponseError it got."""
        if not commands:
            return []
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            call(pipe, *command)
        with guard(f"a pipeline of {len(commands)} command(s)", failure):
            replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies
