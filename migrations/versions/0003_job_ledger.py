"""The job ledger (mnw_jobs): the platform's own table, one row per job.

See medianest_workers/db/models/jobs.py for what each column means.

Revision ID: 0003_job_ledger
Revises: 0002_medianest_perf_indexes
Create Date: 2026-11-24 20:51:49.683403
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_job_ledger"
down_revision: str | None = "0002_medianest_perf_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mnw_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("progress", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=False),
        sa.Column("enqueued_by", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("schedule_name", sa.Text(), nullable=True),
        sa.Column("trigger", sa.Text(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column(
            "cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "enqueued_at",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("published_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("expires_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("started_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("heartbeat_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("finished_at", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')",
            name=op.f("mnw_jobs_state_check"),
        ),
        sa.CheckConstraint(
            "attempts >= 0 AND max_attempts >= 1", name=op.f("mnw_jobs_attempts_check")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("mnw_jobs_pkey")),
    )
    op.create_index("mnw_jobs_enqueued_at_idx", "mnw_jobs", ["enqueued_at"], unique=False)
    op.create_index(
        "mnw_jobs_idempotency_key_live_key",
        "mnw_jobs",
        ["idempotency_key"],
        unique=True,
        postgresql_where=sa.text(
            "idempotency_key IS NOT NULL AND state IN ('queued', 'running', 'succeeded')"
        ),
    )
    op.create_index(
        "mnw_jobs_kind_enqueued_at_idx", "mnw_jobs", ["kind", "enqueued_at"], unique=False
    )
    op.create_index(
        "mnw_jobs_schedule_name_enqueued_at_idx",
        "mnw_jobs",
        ["schedule_name", "enqueued_at"],
        unique=False,
    )
    op.create_index(
        "mnw_jobs_state_published_at_idx", "mnw_jobs", ["state", "published_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("mnw_jobs_state_published_at_idx", table_name="mnw_jobs")
    op.drop_index("mnw_jobs_schedule_name_enqueued_at_idx", table_name="mnw_jobs")
    op.drop_index("mnw_jobs_kind_enqueued_at_idx", table_name="mnw_jobs")
    op.drop_index(
        "mnw_jobs_idempotency_key_live_key",
        table_name="mnw_jobs",
        postgresql_where=sa.text(
            "idempotency_key IS NOT NULL AND state IN ('queued', 'running', 'succeeded')"
        ),
    )
    op.drop_index("mnw_jobs_enqueued_at_idx", table_name="mnw_jobs")
    op.drop_table("mnw_jobs")
