"""Key rotation checkpoints (mnw_key_rotation_checkpoints).

Where `maintenance.rotate_key` / `medianest-workers rotate-key` resumes without decrypting again
what it already rotated; see medianest_workers/db/models/key_rotation.py.

Revision ID: 0007_key_rotation
Revises: 0006_query_stats
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_key_rotation"
down_revision: str | None = "0006_query_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mnw_key_rotation_checkpoints",
        sa.Column("column_name", sa.Text(), nullable=False),
        sa.Column("clean_through", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("column_name", name=op.f("mnw_key_rotation_checkpoints_pkey")),
    )


def downgrade() -> None:
    op.drop_table("mnw_key_rotation_checkpoints")
