"""Query statistics snapshots (mnw_query_stats).

Filled by the query-statistics work: the snapshots table.

Revision ID: 0006_query_stats
Revises: 0005_backups
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0006_query_stats"
down_revision: str | None = "0005_backups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
