"""Findings lifecycle, runtime usage, leases, service heartbeats and target leases.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

FINDING_STATUSES = "('open', 'remediated', 'verified', 'accepted', 'resolved')"


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_constraint("ck_findings_status", type_="check")
        batch.alter_column("status", type_=sa.String(12), existing_nullable=False)
        batch.add_column(sa.Column("remediated_at", _utc(), nullable=True))
        batch.add_column(sa.Column("verified_at", _utc(), nullable=True))
        batch.add_column(sa.Column("accepted_by", sa.Text(), nullable=True))
        batch.add_column(sa.Column("accepted_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("accepted_until", _utc(), nullable=True))
        batch.create_check_constraint("ck_findings_status", f"status IN {FINDING_STATUSES}")

    # One row per (target, account, entitlement): the last time use was seen, not a row per
    # observation. entitlement '' is use of the account itself.
    op.create_table(
        "usage",
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("entitlement", sa.Text(), nullable=False),
        sa.Column("last_seen", _utc(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("target", "account", "entitlement", name="pk_usage"),
    )

    op.create_table(
        "leases",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("workload", sa.Text(), nullable=True),
        sa.Column("issued_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("max_expires_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_leases"),
        sa.CheckConstraint(
            "status IN ('active', 'revoked', 'expired', 'failed')", name="ck_leases_status"
        ),
    )
    op.create_index("ix_leases_status_expires_at", "leases", ["status", "expires_at"])
    op.create_index("ix_leases_identity_target", "leases", ["identity", "target"])

    # Scale-out: which `lockstep run` process reconciles which target, until when.
    op.create_table(
        "target_leases",
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("target", name="pk_target_leases"),
    )
    # When each target was last read in full: an open finding's last-seen time, without a
    # write per finding per pass.
    op.create_table(
        "target_passes",
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("target", name="pk_target_passes"),
    )
    op.create_table(
        "heartbeats",
        sa.Column("instance", sa.Text(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("passes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name="pk_heartbeats"),
    )


def downgrade() -> None:
    # The journal is evidence: lockstep never migrates its store backwards.
    raise NotImplementedError("lockstep does not downgrade its state store; restore a backup")
