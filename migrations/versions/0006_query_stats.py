"""Query statistics snapshots (mnw_query_stats).

The daily snapshots of pg_stat_statements' top statements (maintenance.query_stats); see
medianest_workers/db/models/query_stats.py for what each column means.

Revision ID: 0006_query_stats
Revises: 0005_backups
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_query_stats"
down_revision: str | None = "0005_backups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mnw_query_stats",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("taken_at", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("queryid", sa.BigInteger(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("total_exec_ms", sa.Double(), nullable=False),
        sa.Column("mean_exec_ms", sa.Double(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("shared_blks_hit", sa.BigInteger(), nullable=False),
        sa.Column("shared_blks_read", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("mnw_query_stats_pkey")),
    )
    op.create_index(
        "mnw_query_stats_taken_at_rank_idx", "mnw_query_stats", ["taken_at", "rank"], unique=False
    )


def downgrade() -> None:
    op.drop_index("mnw_query_stats_taken_at_rank_idx", table_name="mnw_query_stats")
    op.drop_table("mnw_query_stats")
