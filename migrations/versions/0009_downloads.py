"""The downloads family's tables: the download archive (mnw_download_archive).

See medianest_workers/db/models/downloads.py.

Revision ID: 0009_downloads
Revises: 0008_requests_sync
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_downloads"
down_revision: str | None = "0008_requests_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mnw_download_archive",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("playlist_key", sa.Text(), nullable=False),
        sa.Column("archive_id", sa.Text(), nullable=False),
        sa.Column("download_id", sa.Text(), nullable=False),
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column(
            "downloaded_at",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("removed_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("mnw_download_archive_pkey")),
    )
    op.create_index(
        "mnw_download_archive_user_id_playlist_key_archive_id_key",
        "mnw_download_archive",
        ["user_id", "playlist_key", "archive_id"],
        unique=True,
    )
    op.create_index(
        "mnw_download_archive_downloaded_at_idx", "mnw_download_archive", ["downloaded_at"]
    )
    op.create_index("mnw_download_archive_download_id_idx", "mnw_download_archive", ["download_id"])


def downgrade() -> None:
    op.drop_table("mnw_download_archive")
