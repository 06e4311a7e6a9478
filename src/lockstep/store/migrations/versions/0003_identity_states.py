"""What lockstep last enforced for each identity, to notice owner and environment changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "identity_states",
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identity", name="pk_identity_states"),
    )


def downgrade() -> None:
    # The journal is evidence: lockstep never migrates its store backwards.
    raise NotImplementedError("lockstep does not downgrade its state store; restore a backup")
