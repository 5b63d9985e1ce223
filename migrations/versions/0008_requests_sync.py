"""The requests family's tables (Overseerr sync state).

Revision ID: 0008_requests_sync
Revises: 0007_key_rotation
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0008_requests_sync"
down_revision: str | None = "0007_key_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
