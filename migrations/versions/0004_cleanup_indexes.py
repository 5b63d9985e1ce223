"""Indexes the cleanup and retention jobs need.

Filled by the cleanup work: the indexes its batched deletes and retention need.

Revision ID: 0004_cleanup_indexes
Revises: 0003_job_ledger
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0004_cleanup_indexes"
down_revision: str | None = "0003_job_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
