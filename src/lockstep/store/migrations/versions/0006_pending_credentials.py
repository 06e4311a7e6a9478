"""Credential changes under way (two-phase: pending before the target changes).

Revision ID: 0006_pending_credentials
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_pending_credentials"
down_revision: str | None = "0004_governance"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "pending_credentials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("identity", sa.Text(), nullable=True),
        sa.Column("op", sa.String(24), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pending_credentials"),
    )
    op.create_index(
        "ix_pending_credentials_target_account", "pending_credentials", ["target", "account"]
    )


def downgrade() -> None:
    # The journal is evidence: lockstep never migrates its store backwards.
    raise NotImplementedError("lockstep does not downgrade its state store; restore a backup")
