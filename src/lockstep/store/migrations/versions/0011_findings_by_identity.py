"""Findings indexed by identity, so that a person's findings (their owners' identities) are
read without scanning every finding of the estate.

Revision ID: 0011_findings_by_identity
Revises: 0010_reviews
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision: str = "0011_findings_by_identity"
down_revision: str | None = "0010_reviews"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_findings_identity_status", "findings", ["identity", "status"])


def downgrade() -> None:
    # The journal is evidence: lockstep never migrates its store backwards.
    raise NotImplementedError("lockstep does not downgrade its state store; restore a backup")
