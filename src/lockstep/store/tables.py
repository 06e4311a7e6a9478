"""The state store's tables, as SQLAlchemy Core.

The schema itself is created by the Alembic migrations in ``migrations/versions``; these
definitions are how the code reads and writes it and must stay in step with the migrations.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type and hands back naive values: they are stored as UTC, so
    they are read back as UTC. A naive value on the way in is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the state store keeps aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


journal = Table(
    "journal",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row (id 1): the seq and hash of the last entry, written in the same transaction as the
# entry. A chain alone cannot tell a truncated tail from a short journal; this row can.
journal_head = Table(
    "journal_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

credentials = Table(
    "credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("identity", Text, nullable=True),
    Column("username", Text, nullable=False),
    Column("ciphertext", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("status", String(10), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('current', 'retired')", name="status"),
    Index(None, "target", "account", "status"),
    # At most one current credential per account, whatever a concurrent writer does.
    Index(
        "uq_credentials_current",
        "target",
        "account",
        unique=True,
        sqlite_where=text("status = 'current'"),
        postgresql_where=text("status = 'current'"),
    ),
)

# Credential changes under way: the new secret, encrypted, stored before the target is
# changed, so that a crash between the target's change and the vault's record leaves what
# the next pass needs to complete or roll the change back. Deleted when the change is done.
pending_credentials = Table(
    "pending_credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("identity", Text, nullable=True),
    Column("op", String(24), nullable=False),
    Column("username", Text, nullable=False),
    Column("ciphertext", Text, nullable=True),  # None for a change that issues no secret
    Column("fingerprint", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "target", "account"),
)

findings = Table(
    "findings",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("type", String(40), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("target", Text, nullable=False),
    Column("account", Text, nullable=True),
    Column("entitlement", Text, nullable=True),
    Column("identity", Text, nullable=True),
    Column("detail", Text, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("status", String(12), nullable=False),
    Column("remediated_at", UTCDateTime, nullable=True),
    Column("verified_at", UTCDateTime, nullable=True),
    Column("accepted_by", Text, nullable=True),
    Column("accepted_reason", Text, nullable=True),
    Column("accepted_until", UTCDateTime, nullable=True),
    CheckConstraint(
        "status IN ('open', 'remediated', 'verified', 'accepted', 'resolved')", name="status"
    ),
    Index(None, "status", "target"),
    Index(None, "identity", "status"),
)

# The last time use of an account (entitlement '') or of one entitlement was seen.
usage = Table(
    "usage",
    metadata,
    Column("target", Text, primary_key=True),
    Column("account", Text, primary_key=True),
    Column("entitlement", Text, primary_key=True),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("source", Text, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("identity", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("username", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("workload", Text, nullable=True),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("max_expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("status", String(12), nullable=False),
    # The identity's kind when issued: an agent's leases say so (journal, `lockstep leases`).
    Column("identity_kind", String(10), nullable=False, server_default=text("'service'")),
    CheckConstraint("status IN ('active', 'revoked', 'expired', 'failed')", name="status"),
    Index(None, "status", "expires_at"),
    Index(None, "identity", "target"),
)

# Scale-out: the `lockstep run` process that reconciles a target, until its lease expires.
target_leases = Table(
    "target_leases",
    metadata,
    Column("target", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# When each target was last read in full (an open finding's last-seen time).
target_passes = Table(
    "target_passes",
    metadata,
    Column("target", Text, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("instance", Text, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("passes", BigInteger, nullable=False),
)

# The owner and environment lockstep last enforced for each identity: a change is an event
# that rotates the identity's credentials.
identity_states = Table(
    "identity_states",
    metadata,
    Column("identity", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("environment", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

# ---------------------------------------------------------------- governance

# Personal tokens: only a SHA-256 of each is kept (the token is 256 random bits, so a slow
# hash would add nothing); the token itself is shown once, when created.
person_tokens = Table(
    "person_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("person", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index(None, "person"),
)

REQUEST_STATUSES = (
    "pending",
    "approved",
    "active",
    "ending",
    "ended",
    "denied",
    "expired",
    "failed",
)

# A request for time-bound access, and once approved the grant it becomes. ``rules`` is the
# approval rules in force when it was filed, with every approver resolved to people (JSON):
# a later policy edit does not change who may approve it.
access_requests = Table(
    "access_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("identity", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("entitlements", Text, nullable=False),  # JSON list, canonical, sorted
    Column("requester", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(10), nullable=False),
    Column("environment", Text, nullable=True),
    Column("duration_s", BigInteger, nullable=False),
    Column("rules", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("pending_until", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("decided_by", Text, nullable=True),  # who denied it, or gave the last approval
    Column("starts_at", UTCDateTime, nullable=True),
    Column("ends_at", UTCDateTime, nullable=True),
    Column("verified_at", UTCDateTime, nullable=True),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("detail", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in REQUEST_STATUSES) + ")", name="status"
    ),
    Index(None, "status", "target"),
    Index(None, "identity", "status"),
)

request_approvals = Table(
    "request_approvals",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("by", Text, primary_key=True),  # one person, one stage of a request
    Column("stage", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("comment", Text, nullable=False),
)

# What each identity was seen holding of the entitlements sod rules name, pass after pass:
# ``held`` while a pass sees it, ``last_seen`` the last time one did. What separation of
# duties over time counts, whatever brought the entitlement (policy, grant, or a hand).
sod_holdings = Table(
    "sod_holdings",
    metadata,
    Column("identity", Text, primary_key=True),
    Column("target", Text, primary_key=True),
    Column("entitlement", Text, primary_key=True),
    Column("account", Text, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("held", Integer, nullable=False),
)

# ---------------------------------------------------------------- reviews

REVIEW_STATUSES = ("open", "kept", "revoking", "revoked", "overdue")

# Access reviews. The id derives from what the review is about and the trigger's occurrence,
# so an occurrence is reviewed once whoever opens it. ``enforce`` is what the review holds
# back from the desired state (``revoke``, ``suspend``) until ``lifted_at``.
reviews = Table(
    "reviews",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("identity", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("entitlement", Text, nullable=True),  # None: the whole account
    Column("trigger", String(20), nullable=False),
    Column("occurrence", Text, nullable=False),
    Column("reviewers", Text, nullable=False),  # JSON list of emails
    Column("evidence", Text, nullable=False),  # JSON: the trigger's evidence
    Column("opened_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(10), nullable=False),
    Column("decision", String(8), nullable=True),
    Column("decided_by", Text, nullable=True),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("reason", Text, nullable=True),
    Column("enforce", String(8), nullable=True),
    Column("verified_at", UTCDateTime, nullable=True),
    Column("lifted_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in REVIEW_STATUSES) + ")", name="status"
    ),
    Index(None, "target", "status"),
    Index(None, "identity", "status"),
    Index(None, "target", "enforce"),
)

# What reviews remember of each identity's declared access to an account: when it began,
# when a review last kept it, and what its triggers compare with (owner, an agent's sponsor
# and declared scope, the use a dormancy review was opened for).
review_subjects = Table(
    "review_subjects",
    metadata,
    Column("identity", Text, primary_key=True),
    Column("target", Text, primary_key=True),
    Column("account", Text, primary_key=True),
    Column("began_at", UTCDateTime, nullable=False),
    Column("reviewed_at", UTCDateTime, nullable=True),
    Column("owner", Text, nullable=False),
    Column("sponsor_ok", Integer, nullable=True),
    Column("scope", Text, nullable=True),  # JSON list: an agent's declared entitlements
    Column("dormant", Text, nullable=True),
)

# A counter per target, moved in the transaction that changes any of its review_subjects:
# a process keeps what it read of them until another writer moves the counter.
review_versions = Table(
    "review_versions",
    metadata,
    Column("target", Text, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# Notifications to people (governance.notify), kept until delivered: retried with backoff
# by the service, whoever queued them. The body never holds a secret or a token.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("subject", Text, nullable=False),  # the review or request id
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Index(None, "sent_at", "next_at"),
)

# Workload tokens already traded for a lease: the same token (issuer, jti) is refused until
# it expires, by every service sharing the store. Rows past expires_at are purged.
# Dashboard sessions signed out before their cookie expires (a SHA-256 of the session's own
# random value, never the cookie), so that a copy of the cookie is refused by every instance;
# kept until the session would have ended anyway.
ended_sessions = Table(
    "ended_sessions",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("ends_at", UTCDateTime, nullable=False),
    Index(None, "ends_at"),
)

token_replay = Table(
    "token_replay",
    metadata,
    Column("issuer", Text, primary_key=True),
    Column("jti", Text, primary_key=True),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=False),
    Index(None, "expires_at"),
)
