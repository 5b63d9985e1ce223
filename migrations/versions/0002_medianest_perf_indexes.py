"""The useful indexes of the backend's performance migration, built concurrently.

The backend's `20250905190300_performance_optimization_indexes` is broken as shipped (it runs
`CREATE INDEX CONCURRENTLY` inside a transaction). This revision creates what is worth having
from it (tests/contracts/medianest-schema-with-perf-indexes.json), each statement outside a
transaction (Alembic's autocommit_block) so writers are never blocked.

Left out, on purpose:
- the three `CREATE UNIQUE INDEX ... USING hash` statements: PostgreSQL refuses them (only
  B-tree indexes can be unique), so they exist in no database;
- indexes that duplicate an existing one column for column:
  idx_rate_limits_window_start      = rate_limits_window_start_idx (window_start)
  idx_service_status_last_check_at  = service_status_last_check_at_idx (last_check_at)
  idx_session_tokens_expires_at     = session_tokens_expires_at_idx (expires_at)
  idx_users_email                   = users_email_key (email, already unique)
  idx_users_plex_id                 = users_plex_id_key (plex_id, already unique; NULLs are
                                      distinct either way, so the partial index adds nothing)
  A database the backend migrated may hold them; they are left alone (and ignored by
  `alembic check`, see medianest_workers/db/migrate.py).

A concurrent build that fails (cancelled, deadlock, a deploy killed mid-way) leaves an INVALID
index behind that `IF NOT EXISTS` would happily skip: such an index is dropped and rebuilt.

Revision ID: 0002_medianest_perf_indexes
Revises: 0001_medianest_baseline
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

from medianest_workers.db.online_indexes import build_index_concurrently

revision: str = "0002_medianest_perf_indexes"
down_revision: str | None = "0001_medianest_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: index name -> (table, "USING method (columns) [WHERE predicate]")
PERF_INDEXES: dict[str, tuple[str, str]] = {
    "idx_users_last_login_at": (
        "users",
        "USING btree (last_login_at) WHERE (last_login_at IS NOT NULL)",
    ),
    "idx_users_status_created_at": ("users", "USING btree (status, created_at)"),
    "idx_media_requests_media_type_status": ("media_requests", "USING btree (media_type, status)"),
    "idx_media_requests_status_created_at": ("media_requests", "USING btree (status, created_at)"),
    "idx_media_requests_tmdb_id": (
        "media_requests",
        "USING btree (tmdb_id) WHERE (tmdb_id IS NOT NULL)",
    ),
    "idx_media_requests_user_id_created_at": (
        "media_requests",
        "USING btree (user_id, created_at)",
    ),
    "idx_rate_limits_user_id_endpoint_window_start": (
        "rate_limits",
        "USING btree (user_id, endpoint, window_start)",
    ),
    "idx_service_config_enabled_updated_at": (
        "service_config",
        "USING btree (enabled, updated_at)",
    ),
    "idx_session_tokens_user_id_expires_at": (
        "session_tokens",
        "USING btree (user_id, expires_at)",
    ),
    "idx_youtube_downloads_playlist_url": ("youtube_downloads", "USING hash (playlist_url)"),
    "idx_youtube_downloads_status_created_at": (
        "youtube_downloads",
        "USING btree (status, created_at)",
    ),
    "idx_youtube_downloads_user_id_status": (
        "youtube_downloads",
        "USING btree (user_id, status)",
    ),
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, (table, definition) in PERF_INDEXES.items():
            build_index_concurrently(name, table, definition)


def downgrade() -> None:
    """These are the backend's indexes too (it may have built them itself): they stay."""
