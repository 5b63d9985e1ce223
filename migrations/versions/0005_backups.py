"""The backups table (mnw_backups).

Filled by the backups work: the table recording each backup.

Revision ID: 0005_backups
Revises: 0004_cleanup_indexes
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0005_backups"
down_revision: str | None = "0004_cleanup_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
