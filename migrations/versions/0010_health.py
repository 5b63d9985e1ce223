"""The health family's tables (check history, transitions, notifications).

Revision ID: 0010_health
Revises: 0009_downloads
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0010_health"
down_revision: str | None = "0009_downloads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
