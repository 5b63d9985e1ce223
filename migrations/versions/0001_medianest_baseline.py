"""The MediaNest backend's tables (its Prisma migrations 1-3), created only where missing.

On an empty database this creates every table, column, constraint and index of
contracts/medianest-schema.json by the same names. On a database the backend already migrated
with Prisma it adopts what is there: every statement is guarded (`IF NOT EXISTS`, or a lookup
of the constraint by name), so it only adds what is missing and never drops, renames or
rewrites the backend's tables or rows.

Revision ID: 0001_medianest_baseline
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_medianest_baseline"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = "TIMESTAMP(3)"
NOW = "DEFAULT CURRENT_TIMESTAMP"

#: table -> (columns in Prisma's order, primary key columns or None)
TABLES: dict[str, tuple[list[tuple[str, str]], str | None]] = {
    "users": (
        [
            ("id", "TEXT NOT NULL"),
            ("plex_id", "TEXT"),
            ("plex_username", "TEXT"),
            ("email", "TEXT NOT NULL"),
            ("role", "TEXT NOT NULL DEFAULT 'USER'"),
            ("plex_token", "TEXT"),
            ("created_at", f"{TS} NOT NULL {NOW}"),
            ("last_login_at", TS),
            ("status", "TEXT NOT NULL DEFAULT 'active'"),
            ("image", "TEXT"),
            ("name", "TEXT"),
            ("requires_password_change", "BOOLEAN NOT NULL DEFAULT false"),
            ("password_hash", "TEXT"),
        ],
        "id",
    ),
    "media_requests": (
        [
            ("id", "TEXT NOT NULL"),
            ("user_id", "TEXT NOT NULL"),
            ("title", "TEXT NOT NULL"),
            ("media_type", "TEXT NOT NULL"),
            ("tmdb_id", "TEXT"),
            ("status", "TEXT NOT NULL DEFAULT 'pending'"),
            ("overseerr_id", "TEXT"),
            ("created_at", f"{TS} NOT NULL {NOW}"),
            ("completed_at", TS),
        ],
        "id",
    ),
    "youtube_downloads": (
        [
            ("id", "TEXT NOT NULL"),
            ("user_id", "TEXT NOT NULL"),
            ("playlist_url", "TEXT NOT NULL"),
            ("playlist_title", "TEXT"),
            ("status", "TEXT NOT NULL DEFAULT 'queued'"),
            ("file_paths", "JSONB"),
            ("plex_collection_id", "TEXT"),
            ("created_at", f"{TS} NOT NULL {NOW}"),
            ("completed_at", TS),
        ],
        "id",
    ),
    "service_status": (
        [
            ("id", "SERIAL NOT NULL"),
            ("service_name", "TEXT NOT NULL"),
            ("status", "TEXT"),
            ("response_time_ms", "INTEGER"),
            ("last_check_at", TS),
            ("uptime_percentage", "DECIMAL(5,2)"),
        ],
        "id",
    ),
    "rate_limits": (
        [
            ("id", "SERIAL NOT NULL"),
            ("user_id", "TEXT NOT NULL"),
            ("endpoint", "TEXT NOT NULL"),
            ("request_count", "INTEGER NOT NULL DEFAULT 0"),
            ("window_start", f"{TS} NOT NULL {NOW}"),
        ],
        "id",
    ),
    "service_config": (
        [
            ("id", "SERIAL NOT NULL"),
            ("service_name", "TEXT NOT NULL"),
            ("service_url", "TEXT NOT NULL"),
            ("api_key", "TEXT"),
            ("enabled", "BOOLEAN NOT NULL DEFAULT true"),
            ("config_data", "JSONB"),
            ("updated_at", f"{TS} NOT NULL {NOW}"),
            ("updated_by", "TEXT"),
        ],
        "id",
    ),
    "session_tokens": (
        [
            ("id", "TEXT NOT NULL"),
            ("user_id", "TEXT NOT NULL"),
            ("token_hash", "TEXT NOT NULL"),
            ("expires_at", f"{TS} NOT NULL"),
            ("created_at", f"{TS} NOT NULL {NOW}"),
            ("last_used_at", TS),
        ],
        "id",
    ),
    "error_logs": (
        [
            ("id", "TEXT NOT NULL"),
            ("correlation_id", "TEXT NOT NULL"),
            ("user_id", "TEXT NOT NULL"),
            ("error_code", "TEXT NOT NULL"),
            ("error_message", "TEXT NOT NULL"),
            ("stack_trace", "TEXT"),
            ("request_path", "TEXT NOT NULL"),
            ("request_method", "TEXT NOT NULL"),
            ("status_code", "INTEGER"),
            ("metadata", "JSONB"),
            ("created_at", f"{TS} NOT NULL {NOW}"),
        ],
        "id",
    ),
    "accounts": (
        [
            ("id", "TEXT NOT NULL"),
            ("user_id", "TEXT NOT NULL"),
            ("type", "TEXT NOT NULL"),
            ("provider", "TEXT NOT NULL"),
            ("provider_account_id", "TEXT NOT NULL"),
            ("refresh_token", "TEXT"),
            ("access_token", "TEXT"),
            ("expires_at", "INTEGER"),
            ("token_type", "TEXT"),
            ("scope", "TEXT"),
            ("id_token", "TEXT"),
            ("session_state", "TEXT"),
        ],
        "id",
    ),
    "sessions": (
        [
            ("id", "TEXT NOT NULL"),
            ("session_token", "TEXT NOT NULL"),
            ("user_id", "TEXT NOT NULL"),
            ("expires", f"{TS} NOT NULL"),
        ],
        "id",
    ),
    "verification_tokens": (
        [
            ("identifier", "TEXT NOT NULL"),
            ("token", "TEXT NOT NULL"),
            ("expires", f"{TS} NOT NULL"),
        ],
        None,
    ),
}

#: index name -> (table, columns, unique)
INDEXES: dict[str, tuple[str, str, bool]] = {
    "users_plex_id_key": ("users", "plex_id", True),
    "users_email_key": ("users", "email", True),
    "media_requests_user_id_status_idx": ("media_requests", "user_id, status", False),
    "media_requests_created_at_idx": ("media_requests", "created_at", False),
    "media_requests_tmdb_id_media_type_idx": ("media_requests", "tmdb_id, media_type", False),
    "youtube_downloads_user_id_idx": ("youtube_downloads", "user_id", False),
    "service_status_service_name_key": ("service_status", "service_name", True),
    "service_status_last_check_at_idx": ("service_status", "last_check_at", False),
    "rate_limits_user_id_endpoint_idx": ("rate_limits", "user_id, endpoint", False),
    "rate_limits_window_start_idx": ("rate_limits", "window_start", False),
    "service_config_service_name_key": ("service_config", "service_name", True),
    "session_tokens_token_hash_key": ("session_tokens", "token_hash", True),
    "session_tokens_user_id_idx": ("session_tokens", "user_id", False),
    "session_tokens_expires_at_idx": ("session_tokens", "expires_at", False),
    "error_logs_correlation_id_idx": ("error_logs", "correlation_id", False),
    "error_logs_created_at_idx": ("error_logs", "created_at", False),
    "error_logs_user_id_idx": ("error_logs", "user_id", False),
    "accounts_provider_provider_account_id_key": (
        "accounts",
        "provider, provider_account_id",
        True,
    ),
    "sessions_session_token_key": ("sessions", "session_token", True),
    "sessions_user_id_idx": ("sessions", "user_id", False),
    "sessions_expires_idx": ("sessions", "expires", False),
    "verification_tokens_token_key": ("verification_tokens", "token", True),
    "verification_tokens_identifier_token_key": ("verification_tokens", "identifier, token", True),
}

#: foreign key name -> (table, column, ON DELETE action); all reference users(id) ON UPDATE CASCADE
FOREIGN_KEYS: dict[str, tuple[str, str, str]] = {
    "media_requests_user_id_fkey": ("media_requests", "user_id", "RESTRICT"),
    "youtube_downloads_user_id_fkey": ("youtube_downloads", "user_id", "RESTRICT"),
    "rate_limits_user_id_fkey": ("rate_limits", "user_id", "RESTRICT"),
    "service_config_updated_by_fkey": ("service_config", "updated_by", "SET NULL"),
    "session_tokens_user_id_fkey": ("session_tokens", "user_id", "RESTRICT"),
    "error_logs_user_id_fkey": ("error_logs", "user_id", "RESTRICT"),
    "accounts_user_id_fkey": ("accounts", "user_id", "CASCADE"),
    "sessions_user_id_fkey": ("sessions", "user_id", "CASCADE"),
}


def _create_table(table: str, columns: list[tuple[str, str]], primary_key: str | None) -> None:
    parts = [f'"{name}" {ddl}' for name, ddl in columns]
    if primary_key is not None:
        parts.append(f'CONSTRAINT "{table}_pkey" PRIMARY KEY ("{primary_key}")')
    op.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (\n    ' + ",\n    ".join(parts) + "\n)")
    for name, ddl in columns:
        # A table from an older backend migration may lack a later column (password_hash).
        op.execute(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS "{name}" {ddl}')


def _add_foreign_key(name: str, table: str, column: str, on_delete: str) -> None:
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (
                SELECT 1 FROM pg_constraint
                WHERE conname = '{name}' AND conrelid = 'public.{table}'::regclass
            ) THEN
                ALTER TABLE "{table}" ADD CONSTRAINT "{name}" FOREIGN KEY ("{column}")
                    REFERENCES "users"("id") ON DELETE {on_delete} ON UPDATE CASCADE;
            END IF;
        END $$
        """
    )


def upgrade() -> None:
    for table, (columns, primary_key) in TABLES.items():
        _create_table(table, columns, primary_key)
    for name, (table, columns, unique) in INDEXES.items():
        quoted = ", ".join(f'"{column.strip()}"' for column in columns.split(","))
        kind = "UNIQUE INDEX" if unique else "INDEX"
        op.execute(f'CREATE {kind} IF NOT EXISTS "{name}" ON "{table}"({quoted})')
    for name, (table, column, on_delete) in FOREIGN_KEYS.items():
        _add_foreign_key(name, table, column, on_delete)


def downgrade() -> None:
    """The MediaNest tables belong to the backend: downgrading past this revision keeps them."""
