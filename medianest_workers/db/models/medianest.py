"""The MediaNest backend's tables, exactly as contracts/medianest-schema.json describes them.

The backend (Prisma) owns these tables; we read and write rows it must keep accepting.
Text primary keys get a client-side UUID v4, timestamps are naive UTC `TIMESTAMP(3)`.
Unique keys are unique *indexes* (that is what Prisma creates), not constraints.
The `idx_*` indexes are the useful ones of the backend's performance migration; see
migrations/versions/0002_medianest_perf_indexes.py for the ones left out and why.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from medianest_workers.db.base import CURRENT_TIMESTAMP, Base, Timestamp3, new_id
from medianest_workers.timeutil import utcnow

USERS_ID = "users.id"


def _user_fk(*, on_delete: str = "RESTRICT") -> ForeignKey:
    return ForeignKey(USERS_ID, onupdate="CASCADE", ondelete=on_delete)


def _created_at() -> Mapped[dt.datetime]:
    return mapped_column(
        Timestamp3, nullable=False, default=utcnow, server_default=CURRENT_TIMESTAMP
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("users_email_key", "email", unique=True),
        Index("users_plex_id_key", "plex_id", unique=True),
        Index(
            "idx_users_last_login_at",
            "last_login_at",
            postgresql_where=text("last_login_at IS NOT NULL"),
        ),
        Index("idx_users_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True, default=new_id)
    plex_id: Mapped[str | None] = mapped_column(Text)
    plex_username: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'USER'::text"))
    plex_token: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created_at()
    last_login_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'active'::text"))
    image: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    requires_password_change: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    password_hash: Mapped[str | None] = mapped_column(Text)


class MediaRequest(Base):
    __tablename__ = "media_requests"
    __table_args__ = (
        Index("media_requests_user_id_status_idx", "user_id", "status"),
        Index("media_requests_created_at_idx", "created_at"),
        Index("media_requests_tmdb_id_media_type_idx", "tmdb_id", "media_type"),
        Index("idx_media_requests_media_type_status", "media_type", "status"),
        Index("idx_media_requests_status_created_at", "status", "created_at"),
        Index(
            "idx_media_requests_tmdb_id", "tmdb_id", postgresql_where=text("tmdb_id IS NOT NULL")
        ),
        Index("idx_media_requests_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(Text, _user_fk(), nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    media_type: Mapped[str] = mapped_column(Text, nullable=False)
    tmdb_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        Text, nullable=False, server_default=text("'pending'::text")
    )
    overseerr_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created_at()
    completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)


class YoutubeDownload(Base):
    __tablename__ = "youtube_downloads"
    __table_args__ = (
        Index("youtube_downloads_user_id_idx", "user_id"),
        Index("idx_youtube_downloads_playlist_url", "playlist_url", postgresql_using="hash"),
        Index("idx_youtube_downloads_status_created_at", "status", "created_at"),
        Index("idx_youtube_downloads_user_id_status", "user_id", "status"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(Text, _user_fk(), nullable=False)
    playlist_url: Mapped[str] = mapped_column(Text, nullable=False)
    playlist_title: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'queued'::text"))
    file_paths: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    plex_collection_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created_at()
    completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)


class ServiceStatus(Base):
    __tablename__ = "service_status"
    __table_args__ = (
        Index("service_status_service_name_key", "service_name", unique=True),
        Index("service_status_last_check_at_idx", "last_check_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_name: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str | None] = mapped_column(Text)
    response_time_ms: Mapped[int | None] = mapped_column(Integer)
    last_check_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    uptime_percentage: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))


class RateLimit(Base):
    __tablename__ = "rate_limits"
    __table_args__ = (
        Index("rate_limits_user_id_endpoint_idx", "user_id", "endpoint"),
        Index("rate_limits_window_start_idx", "window_start"),
        Index(
            "idx_rate_limits_user_id_endpoint_window_start", "user_id", "endpoint", "window_start"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(Text, _user_fk(), nullable=False)
    endpoint: Mapped[str] = mapped_column(Text, nullable=False)
    request_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    window_start: Mapped[dt.datetime] = _created_at()


class ServiceConfig(Base):
    __tablename__ = "service_config"
    __table_args__ = (
        Index("service_config_service_name_key", "service_name", unique=True),
        Index("idx_service_config_enabled_updated_at", "enabled", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_name: Mapped[str] = mapped_column(Text, nullable=False)
    service_url: Mapped[str] = mapped_column(Text, nullable=False)
    api_key: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    config_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Prisma's @updatedAt: the client sets it on every UPDATE.
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp3,
        nullable=False,
        default=utcnow,
        onupdate=utcnow,
        server_default=CURRENT_TIMESTAMP,
    )
    updated_by: Mapped[str | None] = mapped_column(Text, _user_fk(on_delete="SET NULL"))


class SessionToken(Base):
    __tablename__ = "session_tokens"
    __table_args__ = (
        Index("session_tokens_token_hash_key", "token_hash", unique=True),
        Index("session_tokens_user_id_idx", "user_id"),
        Index("session_tokens_expires_at_idx", "expires_at"),
        Index("idx_session_tokens_user_id_expires_at", "user_id", "expires_at"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(Text, _user_fk(), nullable=False)
    token_hash: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp3, nullable=False)
    created_at: Mapped[dt.datetime] = _created_at()
    last_used_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)


class ErrorLog(Base):
    __tablename__ = "error_logs"
    __table_args__ = (
        Index("error_logs_correlation_id_idx", "correlation_id"),
        Index("error_logs_created_at_idx", "created_at"),
        Index("error_logs_user_id_idx", "user_id"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True, default=new_id)
    correlation_id: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str] = mapped_column(Text, _user_fk(), nullable=False)
    error_code: Mapped[str] = mapped_column(Text, nullable=False)
    error_message: Mapped[str] = mapped_column(Text, nullable=False)
    stack_trace: Mapped[str | None] = mapped_column(Text)
    request_path: Mapped[str] = mapped_column(Text, nullable=False)
    request_method: Mapped[str] = mapped_column(Text, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    created_at: Mapped[dt.datetime] = _created_at()


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        Index(
            "accounts_provider_provider_account_id_key",
            "provider",
            "provider_account_id",
            unique=True,
        ),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(Text, _user_fk(on_delete="CASCADE"), nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    provider: Mapped[str] = mapped_column(Text, nullable=False)
    provider_account_id: Mapped[str] = mapped_column(Text, nullable=False)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    access_token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[int | None] = mapped_column(Integer)
    token_type: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str | None] = mapped_column(Text)
    id_token: Mapped[str | None] = mapped_column(Text)
    session_state: Mapped[str | None] = mapped_column(Text)


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("sessions_session_token_key", "session_token", unique=True),
        Index("sessions_user_id_idx", "user_id"),
        Index("sessions_expires_idx", "expires"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True, default=new_id)
    session_token: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str] = mapped_column(Text, _user_fk(on_delete="CASCADE"), nullable=False)
    expires: Mapped[dt.datetime] = mapped_column(Timestamp3, nullable=False)


class VerificationToken(Base):
    """NextAuth's table: no primary key in the database; (identifier, token) is unique."""

    __tablename__ = "verification_tokens"
    __table_args__ = (
        Index("verification_tokens_token_key", "token", unique=True),
        Index("verification_tokens_identifier_token_key", "identifier", "token", unique=True),
    )
    __mapper_args__ = {"primary_key": ["identifier", "token"]}  # noqa: RUF012

    identifier: Mapped[str] = mapped_column(Text, nullable=False)
    token: Mapped[str] = mapped_column(Text, nullable=False)
    expires: Mapped[dt.datetime] = mapped_column(Timestamp3, nullable=False)
