"""The backups table (mnw_backups): one row per backup the maintenance family made.

A row is `running` while `pg_dump` writes, `succeeded` once the file is complete, renamed into
place and checked with `pg_restore --list` (`verified_at`), `failed` when anything went wrong
(no file is left behind; `error_class`/`error_message` say why), and `deleted` once retention
removed its file. `row_counts` are the MediaNest tables' row counts in the very snapshot the
dump was taken from; a restore check restores the file into a scratch database and records
the counts found there (`restore_counts`, `restore_check_ok`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Double, Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from medianest_workers.db.base import Base, Timestamp3, new_id

BACKUP_STATES = ("running", "succeeded", "failed", "deleted")
_STATE_LIST = ", ".join(f"'{state}'" for state in BACKUP_STATES)


class Backup(Base):
    __tablename__ = "mnw_backups"
    __table_args__ = (
        CheckConstraint(f"state IN ({_STATE_LIST})", name="state"),
        Index("mnw_backups_path_key", "path", unique=True),
        Index("mnw_backups_state_started_at_idx", "state", "started_at"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True, default=new_id)
    #: Absolute path of the dump file (the name carries the UTC start time).
    path: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    #: The job that made it (NULL for `medianest-workers backup now`); no FK: jobs get cleaned.
    job_id: Mapped[str | None] = mapped_column(Text)
    database_name: Mapped[str] = mapped_column(Text, nullable=False)
    #: `server_version` of the dumped server, and the `pg_dump --version` that dumped it.
    server_version: Mapped[str | None] = mapped_column(Text)
    pg_dump_version: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(Timestamp3, nullable=False)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    duration_seconds: Mapped[float | None] = mapped_column(Double)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(Text)
    #: Rows per MediaNest table in the dump's snapshot.
    row_counts: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: When `pg_restore --list` last read the whole archive without error.
    verified_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    restore_checked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
    restore_counts: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    restore_check_ok: Mapped[bool | None] = mapped_column(Boolean)
    error_class: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp3)
