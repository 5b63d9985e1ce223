"""The health family's tables (check history, transitions, notifications).

See medianest_workers/db/models/health.py for what each column means.

Revision ID: 0010_health
Revises: 0009_downloads
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_health"
down_revision: str | None = "0009_downloads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "('up', 'degraded', 'down')"


def upgrade() -> None:
    op.create_table(
        "mnw_health_checks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("checked_at", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("response_time_ms", sa.Integer(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cert_days_left", sa.Double(), nullable=True),
        sa.Column("in_maintenance", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.CheckConstraint(f"result IN {_STATUSES}", name=op.f("mnw_health_checks_result_check")),
        sa.CheckConstraint(f"status IN {_STATUSES}", name=op.f("mnw_health_checks_status_check")),
        sa.PrimaryKeyConstraint("id", name=op.f("mnw_health_checks_pkey")),
    )
    op.create_index(
        "mnw_health_checks_service_name_checked_at_idx",
        "mnw_health_checks",
        ["service_name", "checked_at"],
    )
    op.create_index("mnw_health_checks_checked_at_idx", "mnw_health_checks", ["checked_at"])
    op.create_table(
        "mnw_health_transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column("at", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("check_id", sa.BigInteger(), nullable=True),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.CheckConstraint(
            f"to_status IN {_STATUSES}", name=op.f("mnw_health_transitions_to_status_check")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("mnw_health_transitions_pkey")),
    )
    op.create_index(
        "mnw_health_transitions_service_name_at_idx",
        "mnw_health_transitions",
        ["service_name", "at"],
    )
    op.create_table(
        "mnw_notifications",
        sa.Column("dedup_key", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "delivered",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("sent_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("dedup_key", name=op.f("mnw_notifications_pkey")),
    )


def downgrade() -> None:
    op.drop_table("mnw_notifications")
    op.drop_index("mnw_health_transitions_service_name_at_idx", table_name="mnw_health_transitions")
    op.drop_table("mnw_health_transitions")
    op.drop_index("mnw_health_checks_checked_at_idx", table_name="mnw_health_checks")
    op.drop_index("mnw_health_checks_service_name_checked_at_idx", table_name="mnw_health_checks")
    op.drop_table("mnw_health_checks")
