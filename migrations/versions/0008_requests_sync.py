"""The requests family's tables (Overseerr sync state, push attempts).

See medianest_workers/db/models/requests.py.

Revision ID: 0008_requests_sync
Revises: 0007_key_rotation
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_requests_sync"
down_revision: str | None = "0007_key_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mnw_request_sync_state",
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column("watermark", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("last_walk_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("last_full_walk_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column(
            "updated_at",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("service_name", name=op.f("mnw_request_sync_state_pkey")),
    )
    op.create_table(
        "mnw_request_pushes",
        sa.Column("media_request_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("overseerr_request_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("media_request_id", name=op.f("mnw_request_pushes_pkey")),
    )


def downgrade() -> None:
    op.drop_table("mnw_request_pushes")
    op.drop_table("mnw_request_sync_state")
