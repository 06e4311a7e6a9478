"""Plain frozen data shared by the pure core and the edges.

Nothing here does I/O or reads the clock: the engine passes ``now`` in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from lockstep.engine.review_model import HeldBack

from lockstep.secret import Secret


class Op(StrEnum):
    CREATE_ACCOUNT = "create_account"
    RESTORE_ACCOUNT = "restore_account"
    GRANT = "grant"
    REVOKE = "revoke"
    ROTATE_CREDENTIAL = "rotate_credential"
    SUSPEND_ACCOUNT = "suspend_account"
    END_SESSIONS = "end_sessions"
    DELETE_ACCOUNT = "delete_account"


# The order in which a plan's actions run within a target: an account exists and can log in
# before it is granted anything; removals come last so that a half-applied plan errs on the
# side of keeping the workload running rather than cutting it off.
OP_ORDER: Mapping[Op, int] = {op: i for i, op in enumerate(Op)}

# Operations that take a credential away: verification tries the old credential afterwards.
REMOVING_OPS = frozenset({Op.SUSPEND_ACCOUNT, Op.DELETE_ACCOUNT, Op.ROTATE_CREDENTIAL})


# Accounts lockstep creates for short-lived leases carry this prefix, so that the lease
# reaper finds them even when a lease's record was lost, and orphan detection leaves them be.
LEASE_PREFIX = "lockstep_lease_"

DEFAULT_INTERVAL_S = 30
DEFAULT_MAX_TOKEN_LIFETIME_S = 3600
DEFAULT_MAX_LIVE_LEASES = 10
DEFAULT_CHECKPOINT_INTERVAL_S = 3600
LEGACY_INTERVAL_S = 10  # targets that cannot revoke on events are checked more often
LEGACY_MAX_CREDENTIAL_AGE_S = 7 * 86400  # ... and their credentials live shorter
DEFAULT_REVIEW_GRACE_S = 7 * 86400  # how long a review stays open before it is overdue


class RuleAction(StrEnum):
    REPORT = "report"
    SUSPEND = "suspend"
    DELETE = "delete"
    REVOKE = "revoke"


class OwnerStatus(StrEnum):
    ACTIVE = "active"
    DEPARTED = "departed"


class FindingType(StrEnum):
    ORPHAN_ACCOUNT = "orphan_account"
    EXCESS_ENTITLEMENT = "excess_entitlement"
    MISSING_ENTITLEMENT = "missing_entitlement"
    EXPIRED_ACCESS = "expired_access"
    OWNERLESS_IDENTITY = "ownerless_identity"
    STALE_CREDENTIAL = "stale_credential"
    DORMANT_IDENTITY = "dormant_identity"
    UNVERIFIED_REVOCATION = "unverified_revocation"
    ENVIRONMENT_CROSSING = "environment_crossing"
    SHARED_ACCOUNT = "shared_account"
    TARGET_UNREACHABLE = "target_unreachable"
    UNDELIVERED_CREDENTIAL = "undelivered_credential"
    LEASE_IMPOSTOR = "lease_impostor"
    INSECURE_TRANSPORT = "insecure_transport"
    SOD_VIOLATION = "sod_violation"
    GRANT_FAILED = "grant_failed"
    REVIEW_OVERDUE = "review_overdue"
    PRIVILEGED_ORPHAN = "privileged_orphan"
    UNKNOWN_OBJECT = "unknown_object"
    ESCALATION_PATH = "escalation_path"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Status(StrEnum):
    VERIFIED = "verified"
    FAILED = "failed"
    UNVERIFIED = "unverified"


# ---------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class Location:
    """Where a policy element was written, for errors that point at file and line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    type: str
    environment: str | None
    exclude: frozenset[str]
    legacy: bool
    # Connector-specific keys: an instance of the connector's settings model, validated by
    # the loader. Secret-bearing fields hold ``Secret`` instances and never render in clear.
    settings: BaseModel
    interval_s: int = DEFAULT_INTERVAL_S  # how often `lockstep run` reconciles it
    max_credential_age_s: int | None = None  # rotation forced on every credential issued here
    # Why the admin connection travels in clear to another host (its connector says), if it
    # does: a warning of `validate` and an `insecure_transport` finding of `plan`.
    insecure_transport: str | None = None


@dataclass(frozen=True, slots=True)
class Owner:
    name: str
    contacts: tuple[str, ...]
    status: OwnerStatus


@dataclass(frozen=True, slots=True)
class Access:
    target: str
    account: str
    entitlements: frozenset[str]  # canonical, as the target's connector renders them
    expires: datetime | None


@dataclass(frozen=True, slots=True)
class CredentialPolicy:
    rotate_every_s: int | None = None
    sink: str | None = None
    lease_ttl_s: int | None = None
    lease_max_ttl_s: int | None = None
    max_live_leases: int = DEFAULT_MAX_LIVE_LEASES  # per identity, and per workload token


@dataclass(frozen=True, slots=True)
class Workload:
    """The only workload that may obtain an identity's short-lived credentials."""

    issuer: str
    subject: str
    audience: str
    claims: Mapping[str, str]
    max_token_lifetime_s: int = DEFAULT_MAX_TOKEN_LIFETIME_S  # exp - iat of tokens accepted


class IdentityKind(StrEnum):
    SERVICE = "service"
    WORKLOAD = "workload"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    owner: str
    purpose: str
    environment: str | None
    access: tuple[Access, ...]
    credentials: CredentialPolicy = CredentialPolicy()
    workload: Workload | None = None
    kind: IdentityKind = IdentityKind.SERVICE
    sponsor: str | None = None  # the person who answers for an agent


@dataclass(frozen=True, slots=True)
class SodRule:
    """Entitlements no identity may hold two of together, nor one after the other within
    ``within_s``. Each is (target, canonical entitlement)."""

    name: str
    entitlements: tuple[tuple[str, str], ...]
    within_s: int | None
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    orphan_accounts: RuleAction = RuleAction.REPORT
    excess_entitlements: RuleAction = RuleAction.REVOKE
    ownerless_identities: RuleAction = RuleAction.SUSPEND
    mass_change_limit: float = 0.20  # share of managed accounts
    mass_change_floor: int = 5  # never stop a plan that touches this many or fewer
    dormant_after_s: int | None = None
    sod: tuple[SodRule, ...] = ()
    # Per environment (DEFAULT_ENVIRONMENT for the rest); none: no periodic review.
    review_every_s: Mapping[str, int] = field(default_factory=dict)
    review_grace_s: int = DEFAULT_REVIEW_GRACE_S
    unreviewed: RuleAction = RuleAction.REPORT  # report | revoke | suspend
    escalation_paths: RuleAction = RuleAction.REPORT  # report | revoke


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """Where and how often `lockstep run` writes signed checkpoints of the journal head."""

    checkpoints: str | None = None  # file:DIR (absolute) or s3://BUCKET/PREFIX; None: none
    checkpoint_every: int = 1000  # entries appended since the last checkpoint
    checkpoint_interval_s: int = DEFAULT_CHECKPOINT_INTERVAL_S  # or this long, if appended to
    signing_key: str | None = None  # a path outside the store; None: $LOCKSTEP_SIGNING_KEY
    endpoint_url: str | None = None  # an S3-compatible endpoint
    region: str | None = None


OWNER = "owner"  # an approver: the contacts of the identity's owner
GROUP = "group:"  # an approver or admin: every member of the named group
DEFAULT_ENVIRONMENT = "default"  # the approvals and max_duration of every other environment
DEFAULT_PENDING_EXPIRY_S = 86400


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of approval: ``required`` distinct people among ``approvers`` (``owner``,
    ``group:NAME`` or an email)."""

    approvers: tuple[str, ...]
    required: int


@dataclass(frozen=True, slots=True)
class PeopleIssuer:
    """The OIDC issuer whose JWTs name people."""

    issuer: str
    audience: str
    claim: str = "email"
    jwks: str | None = None  # a URL or file:PATH; None: OIDC discovery
    client: SignInClient | None = None  # the dashboard signs people in through it


@dataclass(frozen=True, slots=True)
class SignInClient:
    """The dashboard's OIDC client at the people's issuer (authorization code with PKCE)."""

    client_id: str
    client_secret: Secret | None  # None: a public client, PKCE alone
    redirect_uri: str  # from the policy, never from a request's Host
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Notify:
    """Where people are told of opened reviews and pending approvals, without polling."""

    webhook: str  # an http(s) URL, sent a JSON body


@dataclass(frozen=True, slots=True)
class Governance:
    people: PeopleIssuer | None = None
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    admins: tuple[str, ...] = ()  # emails and group:NAME
    # Per environment, DEFAULT_ENVIRONMENT for the rest; every stage must pass.
    approvals: Mapping[str, tuple[Stage, ...]] = field(
        default_factory=lambda: {DEFAULT_ENVIRONMENT: (Stage((OWNER,), 1),)}
    )
    max_duration_s: Mapping[str, int] = field(default_factory=dict)
    pending_expires_after_s: int = DEFAULT_PENDING_EXPIRY_S
    notify: Notify | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    targets: Mapping[str, Target]
    owners: Mapping[str, Owner]
    identities: Mapping[str, Identity]
    rules: Rules = Rules()
    audit: AuditSettings = AuditSettings()
    governance: Governance = Governance()


# ---------------------------------------------------------------- observed state


@dataclass(frozen=True, slots=True)
class Account:
    """An account as read from a target."""

    name: str
    entitlements: frozenset[str]
    enabled: bool  # can authenticate now
    sessions: int = 0  # connections open now; -1 when the target cannot tell
    valid_until: datetime | None = None
    # Why the account holds the target's keys (a superuser, the admin's own group, full
    # access): such an account is only ever managed when an identity declares it.
    privileged: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything in scope in one target, read at one moment."""

    target: str
    accounts: Mapping[str, Account]
    # Entitlements the policy grants here that name an object the target does not have
    # (a role, table, group, command or policy), with what is missing.
    unknown: Mapping[str, str] = field(default_factory=dict)
    # For entitlements on an object whose grants have a size limit (a PostgreSQL table's
    # ACL lives in one catalog row): (the object, how many more grantees it can take).
    room: Mapping[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unreachable:
    """A target that could not be read: no verdict may be drawn about it."""

    target: str
    error: str


Observation = Snapshot | Unreachable


# ---------------------------------------------------------------- desired state


class RequestStatus(StrEnum):
    """An access request's life: pending until decided; once approved, the grant's."""

    PENDING = "pending"
    APPROVED = "approved"  # every stage passed: to be enforced at once
    ACTIVE = "active"  # the target was read back holding it
    ENDING = "ending"  # its window is over: being removed
    ENDED = "ended"  # the removal was read back (and what it gave is proven gone)
    DENIED = "denied"
    EXPIRED = "expired"  # left pending past governance.pending_expires_after
    FAILED = "failed"  # could not be enforced; retried every pass


@dataclass(frozen=True, slots=True)
class Grant:
    """An approved request, as the desired state counts it: ``entitlements`` on the account
    until ``ends_at``. Grants of one entitlement are counted: the end of one never takes
    away what another grant, or the policy, still holds."""

    request: str
    identity: str
    target: str
    account: str
    entitlements: frozenset[str]
    ends_at: datetime
    starts_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DesiredAccount:
    """What the policy (and the grants) say one account in one target should be."""

    target: str
    account: str
    identities: tuple[str, ...]  # more than one: a shared account
    entitlements: frozenset[str]  # granted and unexpired
    expired: frozenset[str]  # granted once, now past expiry: revoked whatever the rules say
    active: bool  # False: the account must be suspended
    suspend_reason: str | None = None
    ownerless: bool = False
    all_expired: bool = False
    # Entitlements that live grants alone hold (not the policy), with their requests.
    granted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Entitlements whose grants ended and nothing else holds, with those requests.
    grant_ended: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Taken away by reviews, even where the policy declares them: entitlement -> review id.
    revoked: Mapping[str, str] = field(default_factory=dict)
    review: str | None = None  # the review that suspends the whole account
    # That review's removal is not proven yet: the account is suspended (credential changed,
    # sessions ended, all verified) even where the target already shows it disabled.
    prove_suspension: bool = False


@dataclass(frozen=True, slots=True)
class Desired:
    accounts: Mapping[tuple[str, str], DesiredAccount]  # (target, account)
    # The same accounts grouped by target, built once: the plan and the audit walk the
    # targets one by one, and filtering every account for each target costs targets x accounts.
    _by_target: Mapping[str, Mapping[str, DesiredAccount]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_target: dict[str, dict[str, DesiredAccount]] = {}
        for (target, account), want in self.accounts.items():
            by_target.setdefault(target, {})[account] = want
        object.__setattr__(self, "_by_target", by_target)

    def for_target(self, target: str) -> dict[str, DesiredAccount]:
        return dict(self._by_target.get(target, {}))


# ---------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class Action:
    op: Op
    target: str
    account: str
    entitlement: str | None = None
    identity: str | None = None
    reason: str = ""
    request: str | None = None  # the access request whose grant (or its end) this enacts
    review: str | None = None  # the access review whose decision this enacts

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.target, OP_ORDER[self.op], self.account, self.entitlement or "")


@dataclass(frozen=True, slots=True)
class Finding:
    type: FindingType
    severity: Severity
    target: str
    account: str | None = None
    entitlement: str | None = None
    identity: str | None = None
    detail: str = ""

    @property
    def id(self) -> str:
        """Stable across passes, so a finding keeps its history while it stays true."""
        key = "\x1f".join(
            (
                self.type,
                self.target,
                self.account or "",
                self.entitlement or "",
                self.identity or "",
            )
        )
        return "F-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class MassChange:
    removals: int
    managed: int
    limit: float


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    findings: tuple[Finding, ...]
    unreachable: tuple[str, ...] = ()
    mass_change: MassChange | None = None  # set when the blast-radius guard trips
    held_back: tuple[HeldBack, ...] = ()  # what reviews take away that the policy declares
    warnings: tuple[str, ...] = ()  # what may fail on apply (a grant beyond an ACL's room)
    # Actions that remedy findings their (target, account, entitlement) do not name: an
    # escalation path's revocation, and the finding id it cuts off.
    remedies: tuple[tuple[Action, str], ...] = ()

    @property
    def blocked(self) -> bool:
        return self.mass_change is not None


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison of what should be against what is."""

    target: str
    account: str
    entitlement: str | None
    expected: str
    actual: str
    ok: bool


@dataclass(frozen=True, slots=True)
class Result:
    action: Action
    status: Status
    detail: str
    checks: tuple[Check, ...] = field(default_factory=tuple)
    seq: int | None = None  # the journal entry that records it
