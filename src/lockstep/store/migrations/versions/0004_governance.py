"""Governance: personal tokens, access requests and their approvals (a request, once
approved, is the grant), and what identities were seen holding of sod rules' entitlements.

Revision ID: 0004_governance
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_governance"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

REQUEST_STATUSES = (
    "('pending', 'approved', 'active', 'ending', 'ended', 'denied', 'expired', 'failed')"
)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "person_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_person_tokens"),
    )
    op.create_index("ix_person_tokens_person", "person_tokens", ["person"])
    op.create_table(
        "access_requests",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("entitlements", sa.Text(), nullable=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("environment", sa.Text(), nullable=True),
        sa.Column("duration_s", sa.BigInteger(), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("pending_until", _utc(), nullable=False),
        sa.Column("decided_at", _utc(), nullable=True),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("starts_at", _utc(), nullable=True),
        sa.Column("ends_at", _utc(), nullable=True),
        sa.Column("verified_at", _utc(), nullable=True),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint(f"status IN {REQUEST_STATUSES}", name="ck_access_requests_status"),
        sa.PrimaryKeyConstraint("id", name="pk_access_requests"),
    )
    op.create_index("ix_access_requests_status_target", "access_requests", ["status", "target"])
    op.create_index("ix_access_requests_identity_status", "access_requests", ["identity", "status"])
    op.create_table(
        "request_approvals",
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "by", name="pk_request_approvals"),
    )
    op.create_table(
        "sod_holdings",
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("entitlement", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("first_seen", _utc(), nullable=False),
        sa.Column("last_seen", _utc(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("identity", "target", "entitlement", name="pk_sod_holdings"),
    )


def downgrade() -> None:
    # The journal is evidence: lockstep never migrates its store backwards.
    raise NotImplementedError("lockstep does not downgrade its state store; restore a backup")
