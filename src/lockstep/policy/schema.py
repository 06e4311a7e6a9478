"""The shape of a policy file, version 1, as pydantic models.

These models check structure and types only. What needs more than one element to judge
(cross-references) or a connector's knowledge (entitlement grammar, target keys) is checked
afterwards, in ``load.py``, so that every error can still name its file and line.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from lockstep.model import IdentityKind, OwnerStatus
from lockstep.policy.durations import parse_duration

Name = Annotated[str, Field(min_length=1, max_length=200)]


def _duration(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("write a duration as <n>s, <n>m, <n>h or <n>d")
    return parse_duration(value)


def _utc(value: object) -> object:
    """YAML turns timestamps into datetimes (naive when written without an offset) and bare
    dates into dates; both are read as UTC so that expiry never depends on the host's zone."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


def _percent(value: object) -> float:
    # Only "20%": a bare 0.2 could mean 20% or 0.2%, and a guard must not be guessed.
    match = _PERCENT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("write a share as a percentage, e.g. 20%")
    number = float(match.group(1))
    if not 0 <= number <= 100:
        raise ValueError("a percentage lies between 0% and 100%")
    return number / 100


# What editors are told (``lockstep schema``): the forms as written, not as held.
DURATION_PATTERN = r"^\s*[0-9]*[1-9][0-9]*[smhd]\s*$"
PERCENT_PATTERN = r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$"
TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?\s*([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?)?$"
)
_PERCENT = re.compile(PERCENT_PATTERN)

Duration = Annotated[
    int,
    BeforeValidator(_duration),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "15m", "1h", "30d"]}
    ),
]
UtcTime = Annotated[
    datetime,
    BeforeValidator(_utc),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TIME_PATTERN,
            "description": "A date (midnight UTC) or an ISO 8601 time; UTC without an offset",
            "examples": ["2027-03-31", "2027-03-31T00:00:00Z"],
        }
    ),
]
Share = Annotated[
    float,
    BeforeValidator(_percent),
    WithJsonSchema({"type": "string", "pattern": PERCENT_PATTERN, "examples": ["20%"]}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManageSpec(_Strict):
    exclude: list[Name] = Field(
        default_factory=list, description="Accounts never touched or reported"
    )


class TargetSpec(BaseModel):
    """Keys common to every target; the rest belong to the target's connector."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Name = Field(description="The connector: postgres, ldap, redis, aws, ...")
    environment: Name | None = Field(
        default=None,
        description="The environment the target belongs to (prod, staging, ...); identities "
        "of another are reported as environment_crossing",
    )
    manage: ManageSpec = Field(
        default_factory=ManageSpec, description="Which accounts lockstep manages"
    )
    legacy: bool = Field(
        default=False, description="Cannot revoke on events: shorter credentials, more checks"
    )
    interval: Duration | None = Field(
        default=None, description="How often `lockstep run` reconciles it (30s; legacy 10s)"
    )
    max_credential_age: Duration | None = Field(
        default=None, description="Every credential issued here is rotated this often (legacy 7d)"
    )


class OwnerSpec(_Strict):
    contacts: list[Name] = Field(
        default_factory=list,
        description="The people (emails) answerable for the owner's identities",
    )
    status: OwnerStatus = Field(
        default=OwnerStatus.ACTIVE,
        description="active, or departed: the owner's identities are then ownerless",
    )


class AccessSpec(_Strict):
    target: Name = Field(description="The target (a name under targets)")
    account: Annotated[str, Field(min_length=1)] = Field(description="The account in the target")
    entitlements: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="What the account holds, in the target type's grammar"
    )
    expires: UtcTime | None = Field(
        default=None, description="After this the access is revoked and verified"
    )


class CredentialsSpec(_Strict):
    rotate_every: Duration | None = Field(
        default=None, description="Rotate the credential this often"
    )
    sink: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description="Where the credential is delivered: file:PATH or aws-secrets:NAME "
        "({target} in it for several targets)",
    )
    lease_ttl: Duration | None = Field(
        default=None,
        description="How long a lease lives by default (lockstep issue, POST /v1/credentials)",
    )
    lease_max_ttl: Duration | None = Field(
        default=None, description="The longest a lease may live, renewals included"
    )
    max_live_leases: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=10,
        description="The most leases of this identity (and of one workload token) alive at once",
    )


class WorkloadSpec(_Strict):
    issuer: Annotated[str, Field(min_length=1)] = Field(
        description="The OIDC issuer of the workload's tokens"
    )
    subject: Annotated[str, Field(min_length=1)] = Field(
        description="The token's sub, e.g. spiffe://..."
    )
    audience: Annotated[str, Field(min_length=1)] = Field(description="The token's aud")
    claims: dict[str, str] = Field(
        default_factory=dict, description="Further claims the token must carry, exactly"
    )
    max_token_lifetime: Duration = Field(
        default=3600,
        description="The longest-lived token accepted (its exp less its iat)",
        json_schema_extra={"default": "1h"},
    )


class IdentitySpec(_Strict):
    owner: Name = Field(description="The owner (a name under owners)")
    purpose: Annotated[str, Field(min_length=1)] = Field(description="What the identity is for")
    environment: Name | None = Field(
        default=None, description="The environment the identity runs in"
    )
    access: list[AccessSpec] = Field(
        default_factory=list, description="Its accounts, one per target"
    )
    credentials: CredentialsSpec = Field(
        default_factory=CredentialsSpec, description="Rotation, delivery and leases"
    )
    workload: WorkloadSpec | None = Field(
        default=None, description="The only workload that may obtain its short-lived credentials"
    )
    kind: IdentityKind = Field(
        default=IdentityKind.SERVICE,
        description="service, workload or agent (agents need a sponsor and hold leases only)",
    )
    sponsor: Name | None = Field(default=None, description="Agents: the person who answers")


class SodSpec(_Strict):
    name: Name = Field(description="The rule's name, in findings and refusals")
    entitlements: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=2, description="TARGET/ENTITLEMENT; no identity holds two of them"
    )
    within: Duration | None = Field(
        default=None, description="Nor one after the other within this long"
    )


class RulesSpec(_Strict):
    orphan_accounts: Literal["report", "suspend", "delete"] = Field(
        default="report",
        description="What to do with accounts no identity declares: report, suspend or delete",
    )
    excess_entitlements: Literal["revoke", "report"] = Field(
        default="revoke",
        description="What to do with entitlements the policy does not grant: revoke or report",
    )
    ownerless_identities: Literal["suspend", "report"] = Field(
        default="suspend",
        description="What to do with identities whose owner departed: suspend or report",
    )
    mass_change_limit: Share = Field(
        default=0.20,
        description="A plan suspending or deleting more than this share of managed accounts "
        "(and more than 5) stops unless --allow-mass-change",
        json_schema_extra={"default": "20%"},
    )
    dormant_after: Duration | None = Field(
        default=None, description="An identity unused this long is reported dormant"
    )
    sod: list[SodSpec] = Field(
        default_factory=list,
        description="Separation of duties: entitlements no identity may hold together",
    )
    escalation_paths: Literal["report", "revoke"] = Field(
        default="report",
        description="report (default) | revoke: cut escalation paths through what lockstep "
        "manages (lockstep paths)",
    )
    review_every: dict[Name, Duration] = Field(
        default_factory=dict,
        description="Reviews open once this has passed since the access began or was last "
        "reviewed, per environment ('default' for the rest)",
    )
    review_grace: Duration | None = Field(
        default=None, description="How long a review stays open before it is overdue (7d)"
    )
    unreviewed: Literal["report", "revoke", "suspend"] = Field(
        default="report",
        description="What an overdue review does: report, revoke (the access) or suspend "
        "(the account, until a keep)",
    )


class PeopleSpec(_Strict):
    issuer: Annotated[str, Field(min_length=1)] = Field(
        description="The OIDC issuer people sign in with"
    )
    audience: Annotated[str, Field(min_length=1)] = Field(
        description="The audience its tokens must carry"
    )
    claim: Annotated[str, Field(min_length=1)] = Field(
        default="email", description="The claim that names a person"
    )
    jwks: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="The issuer's keys: a URL or file:PATH (default: discovery)"
    )
    client_id: Name | None = Field(
        default=None,
        description="The dashboard's OIDC client at the issuer: people sign in through it "
        "(authorization code with PKCE)",
    )
    client_secret: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="${VAR}: the client's secret (none for a public client)"
    )
    redirect_uri: Annotated[str, Field(min_length=1, max_length=2000)] | None = Field(
        default=None,
        description="Where the issuer sends people back: this service's "
        "/signin/oidc/callback as browsers reach it (never taken from a request)",
    )
    scopes: list[Name] = Field(
        default=["openid", "email", "profile"],
        description="Asked for at sign-in; openid among them",
    )


class StageSpec(_Strict):
    approvers: list[Name] = Field(min_length=1, description="owner, group:NAME or emails")
    required: Annotated[int, Field(ge=1)] = Field(
        default=1, description="How many of the approvers must approve"
    )


class NotifySpec(_Strict):
    webhook: Annotated[str, Field(min_length=1)] = Field(
        description="An http(s) URL sent a JSON body for each opened review and pending approval"
    )


class GovernanceSpec(_Strict):
    people: PeopleSpec | None = Field(
        default=None, description="People sign in with tokens of this OIDC issuer"
    )
    groups: dict[Name, list[Name]] = Field(
        default_factory=dict, description="Named groups of people (emails)"
    )
    admins: list[Name] = Field(
        default_factory=list,
        description="Who may approve or review anything but their own requests",
    )
    approvals: dict[Name, Annotated[list[StageSpec], Field(min_length=1)]] | None = Field(
        default=None, description="Stages per environment ('default' for the rest)"
    )
    max_duration: dict[Name, Duration] = Field(
        default_factory=dict,
        description="The longest time-bound access per environment ('default' for the rest)",
    )
    pending_expires_after: Duration | None = Field(
        default=None, description="A request left pending this long expires (default 24h)"
    )
    notify: NotifySpec | None = Field(
        default=None, description="Tell people of opened reviews and pending approvals"
    )


def _checkpoints(value: object) -> object:
    if isinstance(value, str) and (
        (value.startswith("file:") and len(value) > 5)
        or (value.startswith("s3://") and value[5:].split("/", 1)[0])
    ):
        return value
    raise ValueError("write where checkpoints go as file:DIR or s3://BUCKET/PREFIX")


class AuditSpec(_Strict):
    checkpoints: Annotated[str, BeforeValidator(_checkpoints)] | None = Field(
        default=None, description="Where `lockstep run` writes signed checkpoints"
    )
    checkpoint_every: Annotated[int, Field(ge=1)] = Field(
        default=1000, description="A checkpoint once this many entries were appended"
    )
    checkpoint_interval: Duration | None = Field(
        default=None, description="... or this long after the last one (default 1h)"
    )
    signing_key: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="Ed25519 key file (default: $LOCKSTEP_SIGNING_KEY)"
    )
    endpoint_url: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="An S3-compatible endpoint for s3:// checkpoints"
    )
    region: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="The region of the checkpoints' bucket"
    )


class PolicySpec(_Strict):
    """A whole policy (after the files of a directory are merged)."""

    version: Literal[1] = Field(description="The policy format's version: 1")
    targets: dict[Name, TargetSpec] = Field(
        default_factory=dict, description="The systems lockstep reads and changes, by name"
    )
    owners: dict[Name, OwnerSpec] = Field(
        default_factory=dict, description="Who answers for identities, by name"
    )
    identities: dict[Name, IdentitySpec] = Field(
        default_factory=dict, description="The non-human identities and their access, by name"
    )
    rules: RulesSpec = Field(
        default_factory=RulesSpec, description="What lockstep does about what it finds"
    )
    audit: AuditSpec = Field(
        default_factory=AuditSpec, description="Signed checkpoints of the journal"
    )
    governance: GovernanceSpec = Field(
        default_factory=GovernanceSpec, description="People, requests, approvals and reviews"
    )
