"""Reading and writing the rows of mnw_backups (medianest_workers/db/models/backups.py).

Each function is one short transaction of its own, so that a row says `running`, `failed` or
`succeeded` whatever happens to the work around it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from medianest_workers.db.models import Backup
from medianest_workers.db.session import session_scope
from medianest_workers.platform.ledger import describe_error

INTERRUPTED_CLASS = "BackupInterrupted"
INTERRUPTED_MESSAGE = "interrupted before it finished (its process stopped); nothing was kept"


@dataclass(frozen=True)
class BackupView:
    """One row of mnw_backups, as the commands and results show it."""

    id: str
    path: str
    state: str
    job_id: str | None
    database_name: str
    server_version: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_seconds: float | None
    size_bytes: int | None
    sha256: str | None
    row_counts: dict[str, int] | None
    verified_at: dt.datetime | None
    restore_checked_at: dt.datetime | None
    restore_counts: dict[str, int] | None
    restore_check_ok: bool | None
    error_class: str | None
    error_message: str | None

    @classmethod
    def of(cls, row: Backup) -> BackupView:
        return cls(
            id=row.id,
            path=row.path,
            state=row.state,
            job_id=row.job_id,
            database_name=row.database_name,
            server_version=row.server_version,
            started_at=row.started_at,
            finished_at=row.finished_at,
            duration_seconds=row.duration_seconds,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            row_counts=row.row_counts,
            verified_at=row.verified_at,
            restore_checked_at=row.restore_checked_at,
            restore_counts=row.restore_counts,
            restore_check_ok=row.restore_check_ok,
            error_class=row.error_class,
            error_message=row.error_message,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            key: value.isoformat() + "Z" if isinstance(value, dt.datetime) else value
            for key, value in self.__dict__.items()
        }


def insert_running(
    *,
    backup_id: str,
    path: Path,
    job_id: str | None,
    database_name: str,
    server_version: str,
    started_at: dt.datetime,
) -> None:
    with session_scope() as session:
        session.add(
            Backup(
                id=backup_id,
                path=str(path),
                state="running",
                job_id=job_id,
                database_name=database_name,
                server_version=server_version,
                started_at=started_at,
            )
        )


def fail_interrupted(finished_at: dt.datetime) -> int:
    """Mark `running` rows failed: called under the backup lock, so none is really running."""
    with session_scope() as session:
        result = session.execute(
            update(Backup)
            .where(Backup.state == "running")
            .values(
                state="failed",
                finished_at=finished_at,
                error_class=INTERRUPTED_CLASS,
                error_message=INTERRUPTED_MESSAGE,
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def mark_failed(backup_id: str, error: BaseException, finished_at: dt.datetime) -> None:
    error_class, error_message = describe_error(error)
    with session_scope() as session:
        row = session.get(Backup, backup_id)
        if row is None:
            return
        row.state = "failed"
        row.finished_at = finished_at
        row.duration_seconds = (finished_at - row.started_at).total_seconds()
        row.error_class = error_class
        row.error_message = error_message


def mark_succeeded(
    backup_id: str,
    *,
    finished_at: dt.datetime,
    size_bytes: int,
    sha256: str,
    pg_dump_version: str,
    row_counts: dict[str, int],
) -> BackupView:
    with session_scope() as session:
        row = session.get(Backup, backup_id)
        if row is None:
            raise LookupError(f"backup {backup_id} vanished from mnw_backups")
        row.state = "succeeded"
        row.finished_at = finished_at
        row.duration_seconds = (finished_at - row.started_at).total_seconds()
        row.size_bytes = size_bytes
        row.sha256 = sha256
        row.pg_dump_version = pg_dump_version
        row.row_counts = row_counts
        row.verified_at = finished_at
        return BackupView.of(row)


def record_verification(path: Path, at: dt.datetime, error: BaseException | None) -> bool:
    """Note a verification of the file at `path` on its row, if it has one; whether it had."""
    with session_scope() as session:
        row = session.scalars(select(Backup).where(Backup.path == str(path))).one_or_none()
        if row is None or row.state != "succeeded":
            return row is not None
        if error is None:
            row.verified_at = at
        else:
            row.verified_at = None
            row.error_class, row.error_message = describe_error(error)
        return True


def record_restore_check(
    backup_id: str, *, at: dt.datetime, counts: dict[str, int] | None, ok: bool
) -> None:
    with session_scope() as session:
        row = session.get(Backup, backup_id)
        if row is not None:
            row.restore_checked_at = at
            row.restore_counts = counts
            row.restore_check_ok = ok


def get_backup(backup_id: str) -> BackupView | None:
    with session_scope() as session:
        row = session.get(Backup, backup_id)
        return None if row is None else BackupView.of(row)


def find_by_path(path: Path) -> BackupView | None:
    with session_scope() as session:
        row = session.scalars(select(Backup).where(Backup.path == str(path))).one_or_none()
        return None if row is None else BackupView.of(row)


def list_backups(*, limit: int = 50, states: tuple[str, ...] = ()) -> list[BackupView]:
    """Backups, newest first."""
    query = select(Backup).order_by(Backup.started_at.desc(), Backup.id).limit(limit)
    if states:
        query = query.where(Backup.state.in_(states))
    with session_scope() as session:
        return [BackupView.of(row) for row in session.scalars(query)]


def succeeded() -> list[BackupView]:
    """Every backup whose file should exist, newest first (what retention chooses among)."""
    return list_backups(limit=1_000_000, states=("succeeded",))


def mark_deleted(backup_ids: list[str], at: dt.datetime) -> None:
    if not backup_ids:
        return
    with session_scope() as session:
        session.execute(
            update(Backup)
            .where(Backup.id.in_(backup_ids), Backup.state == "succeeded")
            .values(state="deleted", deleted_at=at)
        )
