"""Access reviews, what they remember of each access, notifications to people, and the
kind of identity each lease was issued to.

Revision ID: 0010_reviews
Revises: 0007_token_replay
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010_reviews"
down_revision: str | None = "0007_token_replay"
branch_labels: str | None = None
depends_on: str | None = None

REVIEW_STATUSES = "('open', 'kept', 'revoking', 'revoked', 'overdue')"


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("entitlement", sa.Text(), nullable=True),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("occurrence", sa.Text(), nullable=False),
        sa.Column("reviewers", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("opened_at", _utc(), nullable=False),
        sa.Column("due_at", _utc(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("decision", sa.String(8), nullable=True),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", _utc(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("enforce", sa.String(8), nullable=True),
        sa.Column("verified_at", _utc(), nullable=True),
        sa.Column("lifted_at", _utc(), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint(f"status IN {REVIEW_STATUSES}", name="ck_reviews_status"),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_index("ix_reviews_target_status", "reviews", ["target", "status"])
    op.create_index("ix_reviews_identity_status", "reviews", ["identity", "status"])
    op.create_index("ix_reviews_target_enforce", "reviews", ["target", "enforce"])
    op.create_table(
        "review_subjects",
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("began_at", _utc(), nullable=False),
        sa.Column("reviewed_at", _utc(), nullable=True),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("sponsor_ok", sa.Integer(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("dormant", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("identity", "target", "account", name="pk_review_subjects"),
    )
    op.create_table(
        "review_versions",
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("target", name="pk_review_versions"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", _utc(), nullable=False),
        sa.Column("sent_at", _utc(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_sent_at_next_at", "notifications", ["sent_at", "next_at"])
    op.add_column(
        "leases",
        sa.Column(
            "identity_kind", sa.String(10), nullable=False, server_default=sa.text("'service'")
        ),
    )


def downgrade() -> None:
    # The journal is evidence: lockstep never migrates its store backwards.
    raise NotImplementedError("lockstep does not downgrade its state store; restore a backup")
