"""Indexes the cleanup and retention jobs need, built concurrently.

- `mnw_jobs_finished_at_idx`: mnw_jobs (finished_at) WHERE finished_at IS NOT NULL, for the
  retention of finished jobs (oldest first) and the /metrics duration query (recently
  finished jobs). Partial: queued and running rows have no finished_at.

Already there, nothing to add: session_tokens_expires_at_idx, sessions_expires_idx,
rate_limits_window_start_idx, error_logs_created_at_idx.

Left out on purpose: an index on verification_tokens (expires). The table is the backend's
(its schema is a contract that Prisma compares against), holds NextAuth's short-lived email
sign-in tokens (a handful of rows: MediaNest signs in through Plex) and is cleaned without
ORDER BY, so a batch's scan stops at its first LIMIT expired rows.

Built outside a transaction (Alembic's autocommit_block) so that writers are never blocked.

Revision ID: 0004_cleanup_indexes
Revises: 0003_job_ledger
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

from medianest_workers.db.online_indexes import build_index_concurrently, drop_index_concurrently

revision: str = "0004_cleanup_indexes"
down_revision: str | None = "0003_job_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: index name -> (table, "USING method (columns) [WHERE predicate]")
CLEANUP_INDEXES: dict[str, tuple[str, str]] = {
    "mnw_jobs_finished_at_idx": (
        "mnw_jobs",
        "USING btree (finished_at) WHERE (finished_at IS NOT NULL)",
    ),
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, (table, definition) in CLEANUP_INDEXES.items():
            build_index_concurrently(name, table, definition)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in CLEANUP_INDEXES:
            drop_index_concurrently(name)
