"""The backups table (mnw_backups): one row per backup, its file, checks and state.

See medianest_workers/db/models/backups.py for what each column means.

Revision ID: 0005_backups
Revises: 0004_cleanup_indexes
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_backups"
down_revision: str | None = "0004_cleanup_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mnw_backups",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("database_name", sa.Text(), nullable=False),
        sa.Column("server_version", sa.Text(), nullable=True),
        sa.Column("pg_dump_version", sa.Text(), nullable=True),
        sa.Column("started_at", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.Column("finished_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.Text(), nullable=True),
        sa.Column("row_counts", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("verified_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("restore_checked_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("restore_counts", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("restore_check_ok", sa.Boolean(), nullable=True),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("deleted_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.CheckConstraint(
            "state IN ('running', 'succeeded', 'failed', 'deleted')",
            name=op.f("mnw_backups_state_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("mnw_backups_pkey")),
    )
    op.create_index("mnw_backups_path_key", "mnw_backups", ["path"], unique=True)
    op.create_index(
        "mnw_backups_state_started_at_idx", "mnw_backups", ["state", "started_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("mnw_backups_state_started_at_idx", table_name="mnw_backups")
    op.drop_index("mnw_backups_path_key", table_name="mnw_backups")
    op.drop_table("mnw_backups")
