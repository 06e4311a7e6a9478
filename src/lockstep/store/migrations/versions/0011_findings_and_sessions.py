"""Findings indexed by identity, so that a person's findings (their owners' identities) are
read without scanning every finding of the estate; and the dashboard sessions signed out
before their cookie expires.

Revision ID: 0011_findings_and_sessions
Revises: 0010_reviews
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011_findings_and_sessions"
down_revision: str | None = "0010_reviews"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_findings_identity_status", "findings", ["identity", "status"])
    op.create_table(
        "ended_sessions",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_ended_sessions"),
    )
    op.create_index("ix_ended_sessions_ends_at", "ended_sessions", ["ends_at"])


def downgrade() -> None:
    # The journal is evidence: lockstep never migrates its store backwards.
    raise NotImplementedError("lockstep does not downgrade its state store; restore a backup")
