"""The downloads family's tables (the download archive).

Revision ID: 0009_downloads
Revises: 0008_requests_sync
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0009_downloads"
down_revision: str | None = "0008_requests_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
