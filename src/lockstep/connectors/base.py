"""The one interface every target type implements.

A connector type (one per kind of system) is a plugin registered under the
``lockstep.connectors`` entry-point group. It knows its entitlement grammar without touching
any server, so ``lockstep validate`` works offline, and it opens sessions against a target.

A session reads a snapshot, executes one action at a time, reads one account back and probes
a credential. It never decides *what* to do: that is the engine's pure plan. It never decides
whether an action *worked*: the engine verifies by reading back and probing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from lockstep.errors import LockstepError
from lockstep.model import Account, Action, Op, Snapshot, Target
from lockstep.secret import Secret


class ConnectorError(LockstepError):
    """Base of what connectors raise. Messages never contain a secret."""

    code = "connector_error"


class TargetUnreachable(ConnectorError):
    """The target could not be reached or read: nothing may be concluded about it."""

    code = "target_unreachable"
    default_hint = "check the target's address and admin credentials (see lockstep permissions)"


class ActionFailed(ConnectorError):
    """The target refused or failed one action; the target is still reachable."""

    code = "action_failed"
    default_hint = "lockstep permissions lists what the admin needs for each operation"


class GrammarError(LockstepError, ValueError):
    """An entitlement or account name that the target type cannot express."""

    code = "grammar"


@dataclass(frozen=True, slots=True)
class Credential:
    """What a workload authenticates with. ``username`` is the account name for most
    targets; for AWS it is the access key id."""

    username: str
    secret: Secret
    # A session token that goes with the key pair (AWS STS credentials); None elsewhere.
    token: Secret | None = None


class ProbeResult(StrEnum):
    ACCEPTED = "accepted"  # the credential authenticated
    REFUSED = "refused"  # the target answered and refused it
    # Anything else (timeouts, the server down) raises TargetUnreachable: never "refused".


@dataclass(frozen=True, slots=True)
class Scope:
    """Which accounts a session reads.

    ``declared`` are the accounts the policy names: they are in scope even when the target
    would not otherwise count them as accounts (a suspended PostgreSQL role cannot log in).
    ``excluded`` are never read, touched or reported.
    """

    declared: frozenset[str]
    excluded: frozenset[str]


class Session(Protocol):
    """A live, authenticated connection to one target."""

    def read(self) -> Snapshot:
        """Every in-scope account with its entitlements. Raises TargetUnreachable."""
        ...

    def read_account(self, account: str) -> Account | None:
        """One account, read fresh; None when it does not exist. Raises TargetUnreachable."""
        ...

    def execute(self, action: Action, secret: Secret | None) -> Credential | None:
        """Carry out one action.

        ``secret`` is a fresh random password the engine generated for create, restore,
        rotate and suspend (suspension replaces the credential with one nobody holds). Returns
        the credential a workload now authenticates with, for create, restore and rotate
        (for targets that mint their own, such as AWS access keys, the one they minted); for
        suspend, the credential the account was left with, when the target set one (the
        engine proves it refused), else None; None for every other operation. Raises
        ActionFailed or TargetUnreachable."""
        ...

    def probe(self, credential: Credential) -> ProbeResult:
        """Try to authenticate the way a workload would (over the network, never through an
        admin back door). Raises TargetUnreachable when the outcome is unknown."""
        ...

    def close(self) -> None: ...


class ConnectorType(Protocol):
    """A plugin: the grammar of one kind of target, and how to open sessions against it."""

    name: ClassVar[str]
    # The admin permissions each operation needs, shown by ``plan`` and ``lockstep
    # permissions`` and tested for completeness over the registry.
    permissions: ClassVar[Mapping[Op, tuple[str, ...]]]
    # What reading the target needs (plan, verify, findings, and every operation's read-back).
    read_permissions: ClassVar[tuple[str, ...]]
    # What each optional capability its sessions offer needs, by the capability's name (the
    # protocol's class name below): one entry per capability offered, shown by
    # ``lockstep permissions`` and checked against the sessions by the conformance suite.
    capability_permissions: ClassVar[Mapping[str, tuple[str, ...]]]
    # Seconds a removed credential may keep working after the target acknowledged the
    # removal (AWS forgets keys eventually); verification re-probes with backoff within it.
    propagation_window_s: ClassVar[float]

    def settings_model(self) -> type[BaseModel]:
        """The connector-specific target keys (besides type, environment, manage, legacy).
        Fields holding secrets are typed ``Secret``-compatible ``str`` and listed in
        ``secret_fields``."""
        ...

    def secret_fields(self) -> frozenset[str]: ...

    def check_account(self, name: str) -> None:
        """Raise GrammarError when the target cannot hold an account of that name."""
        ...

    def parse_entitlement(self, text: str) -> str:
        """The canonical form of an entitlement, or GrammarError saying what is accepted."""
        ...

    def default_excluded(self, settings: Mapping[str, Any]) -> frozenset[str]:
        """Accounts never managed whatever the policy says (the admin lockstep connects as)."""
        ...

    def open(self, target: Target, scope: Scope) -> Session:
        """Connect; raise TargetUnreachable when the target cannot be reached."""
        ...


# ---------------------------------------------------------------- optional capabilities
# A session offers these when its target can. The core asks ``isinstance(session, X)``: it
# branches on what a target can do, never on what kind of target it is.


@dataclass(frozen=True, slots=True)
class Usage:
    """Use of an account (``entitlement`` None) or of one entitlement, seen at ``last_used``."""

    account: str
    last_used: datetime
    entitlement: str | None = None
    source: str = ""  # where it was seen, e.g. "pg_stat_activity", "pwdLastSuccess"


@runtime_checkable
class ObservesUsage(Protocol):
    def observe_usage(self) -> list[Usage]:
        """What real use is observable now (cheap enough to run every pass). Raises
        TargetUnreachable."""
        ...


@runtime_checkable
class HoldsTwoCredentials(Protocol):
    """A target that accepts two credentials for one account at once (AWS keeps two access
    keys, a Redis ACL user several passwords) rotates with zero downtime: add the new one,
    deliver it, prove it works, then retire the old one and prove it refused."""

    def add_credential(self, account: str, secret: Secret | None) -> Credential:
        """A new working credential alongside the current ones."""
        ...

    def retire_credential(self, account: str, credential: Credential) -> None:
        """Remove one credential, leaving the others working."""
        ...


@dataclass(frozen=True, slots=True)
class LeaseAccount:
    """A per-lease account found in a target (by lockstep's lease name prefix)."""

    name: str
    expires_at: datetime | None  # as the target itself enforces it, when it can


@runtime_checkable
class IssuesLeases(Protocol):
    """Short-lived credentials: one account per lease, holding an identity's entitlements,
    expiring natively where the target can (PostgreSQL VALID UNTIL) so that expiry holds
    even while lockstep is down."""

    def issue_lease(
        self,
        lease_account: str,
        template: str,
        entitlements: frozenset[str],
        secret: Secret,
        expires_at: datetime,
    ) -> Credential:
        """Create ``lease_account`` (``template`` is the identity's declared account, for
        targets that derive the lease from it, such as an AWS role) and return its
        credential."""
        ...

    def renew_lease(self, lease_account: str, expires_at: datetime) -> None: ...

    def revoke_lease(self, lease_account: str) -> None:
        """Remove the lease account and end its sessions."""
        ...

    def list_leases(self, prefix: str) -> list[LeaseAccount]:
        """Every lease account in the target, found by name prefix, so that leases whose
        record was lost are still reaped."""
        ...


@dataclass(frozen=True, slots=True)
class LeaseOrder:
    """One lease to create: what ``IssuesLeases.issue_lease`` takes, as a value."""

    account: str
    template: str
    entitlements: frozenset[str]
    secret: Secret
    expires_at: datetime


@runtime_checkable
class IssuesLeaseBatches(Protocol):
    """A target that creates many leases in one transaction and reads them back in one
    query: what issuing at a high rate needs, since a lease's own cost is then small beside
    a round trip and a commit."""

    def issue_leases(self, orders: Sequence[LeaseOrder]) -> list[Credential]:
        """Create every lease of ``orders``, or none of them (raises ActionFailed or
        TargetUnreachable); the credentials in the orders' order."""
        ...

    def lease_problems(self, orders: Sequence[LeaseOrder]) -> dict[str, str]:
        """Read the leases back: for each account that is not as ordered (missing, unable
        to log in, another expiry, an entitlement not in effect), what is wrong. Raises
        TargetUnreachable."""
        ...


@runtime_checkable
class WatchesChanges(Protocol):
    """A cheap token that changes whenever anything a read would report changes, so that
    the service can notice out-of-band drift within a second without reading everything."""

    def change_token(self) -> str:
        """Raises TargetUnreachable."""
        ...
