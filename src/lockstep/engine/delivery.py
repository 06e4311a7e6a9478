"""Putting an account's credential in front of its workloads: every sink of every identity
that declares the account, each delivery journaled (fingerprint only)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lockstep.connectors.base import Credential
from lockstep.credentials.sinks import Delivery, SinkError, deliver
from lockstep.credentials.vault import StoredCredential
from lockstep.journal import Journal
from lockstep.model import Policy
from lockstep.secret import redact


def account_sinks(policy: Policy, target: str, account: str) -> list[str]:
    """Where the account's credential goes: the sink of every identity declaring the
    account (a shared account's workloads each need the new credential)."""
    sinks: list[str] = []
    for identity in policy.identities.values():
        sink = identity.credentials.sink
        declares = any(a.target == target and a.account == account for a in identity.access)
        if sink is not None and declares and sink not in sinks:
            sinks.append(sink)
    return sinks


def sink_index(policy: Policy) -> dict[tuple[str, str], list[str]]:
    """``account_sinks`` of every account at once: the sinks of every identity
    that declares it, each once, in the policy's order."""
    index: dict[tuple[str, str], list[str]] = {}
    for identity in policy.identities.values():
        sink = identity.credentials.sink
        if sink is None:
            continue
        for access in identity.access:
            sinks = index.setdefault((access.target, access.account), [])
            if sink not in sinks:
                sinks.append(sink)
    return index


@dataclass
class Deliverer:
    policy: Policy
    journal: Journal
    clock: Callable[[], datetime]

    def deliver(
        self,
        fields: Mapping[str, Any],
        credential: Credential,
        delivered: list[str] | None = None,
        kind: str = "delivery",
    ) -> str | None:
        """Deliver ``credential`` to every sink of the account ``fields`` name (its
        ``target`` and ``account``), journaling each delivery as ``kind``; the first failure
        stops and is returned. ``delivered`` collects the sinks written."""
        for sink in account_sinks(self.policy, fields["target"], fields["account"]):
            try:
                where = self.write(sink, fields["target"], fields["account"], credential)
            except SinkError as exc:
                return f"credential not delivered: {redact(str(exc))}"
            if delivered is not None:
                delivered.append(sink)
            self.journal.append(
                kind, {**fields, "sink": where, "fingerprint": credential.secret.fingerprint()}
            )
        return None

    def give_back(
        self, fields: Mapping[str, Any], delivered: list[str], old: StoredCredential | None
    ) -> str:
        """The sinks that received a credential now withdrawn get the previous one again;
        says which could not."""
        if old is None or not delivered:
            return ""
        previous = Credential(old.username, old.secret)
        failed = []
        for sink in delivered:
            try:
                self.write(sink, fields["target"], fields["account"], previous)
            except SinkError as exc:
                failed.append(redact(str(exc)))
        if failed:
            return f"; {len(failed)} sink(s) that received the new credential kept it: {failed[0]}"
        return ""

    def write(self, sink: str, target: str, account: str, credential: Credential) -> str:
        delivery = Delivery(
            target=target,
            account=account,
            username=credential.username,
            secret=credential.secret,
            issued_at=self.clock(),
            expires_at=None,
        )
        return deliver(sink, delivery)
