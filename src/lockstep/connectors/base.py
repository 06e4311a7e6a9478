"""The one interface every target type implements.

A connector type (one per kind of system) is a plugin registered under the
``lockstep.connectors`` entry-point group. It knows its entitlement grammar without touching
any server, so ``lockstep validate`` works offline, and it opens sessions against a target.

A session reads a snapshot, carries out one operation at a time (one typed method per
operation, as in Vault's database plugins: a connector cannot forget one), reads one account
back and probes a credential. It never decides *what* to do: that is the engine's pure plan.
It never decides whether an action *worked*: the engine verifies by reading back and probing.

A target's connector-specific keys are a pydantic model of the connector's own
(``settings_model``); the loader validates them once, and ``Target.settings`` holds that
model instance all the way to the connector, which reads typed attributes after
``Model.model_validate(target.settings)`` (the loader's instance comes back as it is; a
mapping, as targets built by hand in tests and benchmarks carry, is validated the same way).
Fields typed ``SecretValue`` hold secrets.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from lockstep.errors import LockstepError
from lockstep.model import Account, Op, Snapshot, Target
from lockstep.paths.graph import PathRequest, TargetFacts
from lockstep.policy.interpolate import SECRET_PARAMETER
from lockstep.secret import Secret, register


class ConnectorError(LockstepError):
    """Base of what connectors raise. Messages never contain a secret."""

    code = "connector_error"


class TargetUnreachable(ConnectorError):
    """The target could not be reached or read: nothing may be concluded about it."""

    code = "target_unreachable"
    default_hint = "check the target's address and admin credentials (see lockstep permissions)"


class MalformedRead(TargetUnreachable):
    """The target answered a read without a field the read needs: a transform never guesses,
    so nothing may be concluded about the target."""

    code = "malformed_read"
    default_hint = "the target answered in a shape lockstep does not know; report it"


def required(record: Mapping[str, Any], key: str, where: str) -> Any:
    """``record[key]``, or MalformedRead naming what lacks it (``where``)."""
    try:
        return record[key]
    except KeyError:
        raise MalformedRead(f"{where}: the answer lacks {key!r}") from None


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
    ``excluded`` are never read, touched or reported. ``entitlements`` are those the
    policy grants on the target: a read reports which name an object the target lacks
    (``Snapshot.unknown``) and, where grants have a size limit, the room left
    (``Snapshot.room``).
    """

    declared: frozenset[str]
    excluded: frozenset[str]
    entitlements: frozenset[str] = frozenset()


class Session(Protocol):
    """A live, authenticated connection to one target.

    Each operation raises ActionFailed when the target refuses it (or the account is one the
    session never touches: excluded, the admin itself) and TargetUnreachable when the outcome
    is unknown. ``secret`` is a fresh random password the engine generated; targets that mint
    their own credentials (AWS access keys) ignore it and return the one they minted.
    """

    def read(self) -> Snapshot:
        """Every in-scope account with its entitlements. Raises TargetUnreachable."""
        ...

    def read_account(self, account: str) -> Account | None:
        """One account, read fresh; None when it does not exist. Raises TargetUnreachable."""
        ...

    def read_paths(self, request: PathRequest) -> TargetFacts:
        """What escalation paths are made of on this target (who may reset whose password,
        join which group, read which secret), as pure data: a few reads of the target's own
        permission system, never a change. Parts lockstep's admin may not read are listed as
        not assessed. Raises TargetUnreachable."""
        ...

    def create_account(self, account: str, secret: Secret) -> Credential | None:
        """A new account that can log in with ``secret`` and holds no entitlement. Returns
        the credential a workload now authenticates with; None for an account that has no
        static credential (an AWS role)."""
        ...

    def grant(self, account: str, entitlement: str) -> None:
        """Give ``account`` one entitlement (canonical, as ``parse_entitlement`` renders it)."""
        ...

    def revoke(self, account: str, entitlement: str) -> None:
        """Take one entitlement away from ``account``, leaving the others."""
        ...

    def suspend_account(self, account: str, secret: Secret) -> Credential | None:
        """Make the account unusable and delete nothing: no new logins, open sessions ended,
        its credential replaced by ``secret``, which nobody holds. Returns the credential the
        account was left with, when the target set one (the engine proves it refused too);
        None when it holds none (AWS deletes a user's keys)."""
        ...

    def restore_account(self, account: str, secret: Secret) -> Credential | None:
        """Undo a suspension: the account can log in again with ``secret``, keeping what it
        holds. Returns the new credential; None for an account without a static one."""
        ...

    def rotate_credential(self, account: str, secret: Secret) -> Credential:
        """Replace the account's credentials by ``secret`` at once, and return it. (Where the
        session ``HoldsTwoCredentials`` the engine rotates without downtime instead.)"""
        ...

    def end_sessions(self, account: str) -> None:
        """End the account's open sessions; new logins stay possible."""
        ...

    def delete_account(self, account: str) -> None:
        """Remove the account, what it holds and its open sessions."""
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
    # What reading its escalation facts needs (Session.read_paths); what the admin may not
    # read is reported as not assessed rather than failing the read.
    paths_permissions: ClassVar[tuple[str, ...]]
    # What each optional capability its sessions offer needs, keyed by the capability's
    # protocol (below): one entry per capability offered, shown by ``lockstep permissions``
    # and checked against the sessions by the conformance suite.
    capability_permissions: ClassVar[Mapping[type, tuple[str, ...]]]

    def settings_model(self) -> type[BaseModel]:
        """The connector-specific target keys (besides type, environment, manage, legacy).
        Fields holding secrets are typed ``SecretValue``."""
        ...

    def check_account(self, name: str) -> None:
        """Raise GrammarError when the target cannot hold an account of that name."""
        ...

    def parse_entitlement(self, text: str) -> str:
        """The canonical form of an entitlement, or GrammarError saying what is accepted."""
        ...

    def default_excluded(self, settings: BaseModel) -> frozenset[str]:
        """Accounts never managed whatever the policy says (the admin lockstep connects as).
        ``settings`` is an instance of ``settings_model()``."""
        ...

    def propagation_window(self, settings: BaseModel) -> float:
        """Seconds a removed credential may keep working after the target acknowledged the
        removal (AWS forgets keys eventually); verification re-probes with backoff within it.
        ``settings`` is an instance of ``settings_model()``."""
        ...

    def open(self, target: Target, scope: Scope) -> Session:
        """Connect; raise TargetUnreachable when the target cannot be reached."""
        ...


# ---------------------------------------------------------------- secrets in settings


def _as_secret(value: object) -> Secret:
    if isinstance(value, Secret):
        secret = value
    elif isinstance(value, str):
        secret = Secret(value)
    else:
        raise PydanticCustomError("string_type", "Input should be a valid string")
    if not secret.reveal().strip():
        # An empty DSN or URL would leave the driver to fill the connection in from its
        # own defaults and environment: never what the policy meant.
        raise PydanticCustomError("empty", "must not be empty")
    _register_url_password(secret.reveal())
    return secret


def _register_url_password(value: str) -> None:
    """A DSN or URL is a Secret as a whole; its password alone must be redacted too, since a
    driver's message may quote it on its own."""
    if "://" in value:
        try:
            parts = urlsplit(value)
            password = parts.password
        except ValueError:
            return
        if password:
            register(password)
        # A password can also come in the query string (?password=, ?sslpassword=, ...).
        for name, secret in parse_qsl(parts.query):
            if SECRET_PARAMETER.fullmatch(name) and secret:
                register(secret)


# A settings field holding a secret: written as a string (``${VAR}`` or ``file:PATH`` in the
# policy), held as a Secret, shown to editors as a string.
SecretValue = Annotated[Secret, PlainValidator(_as_secret), WithJsonSchema({"type": "string"})]


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of a settings model that hold a secret (typed ``SecretValue``)."""
    return frozenset(
        name for name, field in model.model_fields.items() if field.annotation is Secret
    )


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
class ChecksTransport(Protocol):
    """A connector type whose admin connection may be unencrypted (``ldap://``, ``redis://``)
    says when it is, to a host other than loopback: secrets and the estate would cross the
    network in clear."""

    def insecure_transport(self, settings: BaseModel) -> str | None:
        """Why the connection these settings make is not encrypted, or None."""
        ...


@runtime_checkable
class WatchesChanges(Protocol):
    """A cheap token that changes whenever anything a read would report changes, so that
    the service can notice out-of-band drift within a second without reading everything."""

    def change_token(self) -> str:
        """Raises TargetUnreachable."""
        ...


@dataclass(frozen=True, slots=True)
class Change:
    """One operation of a batch, as a value: what the session's method for ``op`` takes
    (``entitlement`` for a grant or a revoke, ``secret`` for an operation that sets one)."""

    op: Op
    account: str
    entitlement: str | None = None
    secret: Secret | None = None


# What one change of a batch came to: what its operation returns (a credential, or None), or
# the error it raised: ActionFailed when this change alone failed, TargetUnreachable when its
# outcome is unknown.
Outcome = Credential | None | ConnectorError


def apply_each(session: Session, changes: Sequence[Change]) -> list[Outcome]:
    """``changes`` carried out one at a time through the one-operation methods, with the
    outcomes ``AppliesBatches.apply_batch`` returns: the way through a batch for sessions
    without that capability, and the fallback of those that have it when a batch fails and
    the change that fails must be found. Once the target is lost, the changes not yet tried
    have that same unknown outcome."""
    outcomes: list[Outcome] = []
    for done, change in enumerate(changes):
        try:
            outcomes.append(_carry_out(session, change))
        except ActionFailed as exc:
            outcomes.append(exc)
        except TargetUnreachable as exc:
            return outcomes + [exc] * (len(changes) - done)
    return outcomes


def _carry_out(session: Session, change: Change) -> Credential | None:
    account, secret = change.account, change.secret
    if change.op in (Op.GRANT, Op.REVOKE):
        if change.entitlement is None:
            raise ActionFailed(f"{change.op} {account!r}: no entitlement given")
        method = session.grant if change.op is Op.GRANT else session.revoke
        method(account, change.entitlement)
        return None
    if change.op is Op.END_SESSIONS:
        session.end_sessions(account)
        return None
    if change.op is Op.DELETE_ACCOUNT:
        session.delete_account(account)
        return None
    if secret is None:
        raise ActionFailed(f"{change.op} {account!r}: no new secret given")
    setting = {
        Op.CREATE_ACCOUNT: session.create_account,
        Op.RESTORE_ACCOUNT: session.restore_account,
        Op.SUSPEND_ACCOUNT: session.suspend_account,
        Op.ROTATE_CREDENTIAL: session.rotate_credential,
    }
    return setting[change.op](account, secret)


@runtime_checkable
class AppliesBatches(Protocol):
    """A target that carries out many changes at once (one transaction, one pipeline, one
    connection's requests in flight together, or concurrent calls) and reads many accounts
    back in one read: what applying thousands of actions a second needs, since a change's
    own cost is then small beside a round trip and a commit. Without it, the engine calls
    the one-operation methods one at a time."""

    def apply_batch(self, changes: Sequence[Change]) -> list[Outcome]:
        """Carry out every change (all of one operation) as its one-operation method would,
        and return each one's outcome in order. A change that fails fails alone: the others
        are carried out all the same (a transaction that fails is tried again one change at
        a time, ``apply_each``, to find which). Raises nothing: a change whose outcome is
        unknown, or that was not tried once the target was lost, has TargetUnreachable as
        its outcome."""
        ...

    def read_accounts(self, accounts: Collection[str]) -> dict[str, Account | None]:
        """Each of ``accounts`` read fresh, in one read where the target allows it; None for
        one that does not exist. Raises TargetUnreachable."""
        ...


@runtime_checkable
class ProbesInParallel(Protocol):
    """A target that takes several probes at once. Each probe is a real login (for
    PostgreSQL a process the server forks), so how many run together is the target's to
    say, never the number of credentials to try; sessions without it are probed one at a
    time. ``probe`` must then be safe to call from several threads at once."""

    def probe_slots(self) -> int:
        """How many probes may run at once against this target (at least 1)."""
        ...
