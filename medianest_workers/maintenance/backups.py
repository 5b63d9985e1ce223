"""Backups of the database: plain functions behind `maintenance.backup` and `backup` commands.

`make_backup` takes one backup, at most one at a time per database (an advisory lock):

1. in a REPEATABLE READ transaction it exports a snapshot and counts the MediaNest tables'
   rows in it; `pg_dump -Fc --snapshot` dumps exactly that snapshot, so the counts are the
   dump's own;
2. `pg_dump` (of the server's major version, pg_tools.py) writes `.<name>.partial` in
   BACKUP_DIR, killed after BACKUP_DUMP_TIMEOUT_SECONDS; the file is fsynced and hashed
   (sha256), verified (backup_archive.verify_archive), then renamed to
   `<database>-<UTC time>-<id>.dump` and the folder fsynced. A file under a final name is
   always complete and verified;
3. any failure (pg_dump missing or of the wrong version, a full disk, a dump that exits
   non-zero, a timeout, a cancel) removes the partial file, marks the row `failed` with the
   error's class and message, and raises (a `BackupError`, permanent, for the causes of ours).

`check_restore` restores a backup into a scratch database and compares the row counts;
`apply_retention` deletes the generations backup_retention.py does not keep; `restore`
restores a file into a database for an operator.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import logging
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ
from psycopg2.extensions import connection as Connection

from medianest_workers.db import admin
from medianest_workers.db.base import new_id
from medianest_workers.db.locks import AdvisoryLock
from medianest_workers.maintenance import backup_records as records
from medianest_workers.maintenance.backup_archive import (
    count_rows,
    restore_archive,
    scratch_restore_counts,
    verify_archive,
)
from medianest_workers.maintenance.backup_errors import (
    BackupDirectoryError,
    BackupError,
    BackupNotFoundError,
    BackupStorageFullError,
    DumpFailedError,
    RestoreCheckMismatchError,
    RestoreFailedError,
    RestoreRefusedError,
)
from medianest_workers.maintenance.backup_retention import RetentionPolicy, partition
from medianest_workers.maintenance.pg_tools import (
    PgTools,
    ServerInfo,
    ToolResult,
    connect,
    database_name,
    find_pg_tools,
    libpq_target,
    run_tool,
    server_info,
)
from medianest_workers.settings import Settings, get_settings
from medianest_workers.timeutil import utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
Check = Callable[[], None] | None

LOCK_WAIT = "60s"  # pg_dump's --lock-wait-timeout: a migration holding a table fails the dump
HASH_CHUNK = 1 << 20
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class BackupBusyError(BackupError):
    """Another backup of this database is running."""


@dataclass(frozen=True, kw_only=True)
class BackupConfig:
    """What a backup needs, from the settings (or given by a test)."""

    database_url: str
    backup_dir: Path
    pg_dump_path: Path | None = None
    dump_timeout: float = 1800.0
    restore_timeout: float = 1800.0
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> BackupConfig:
        settings = settings or get_settings()
        return cls(
            database_url=settings.require_database_url(),
            backup_dir=settings.backup_directory,
            pg_dump_path=settings.pg_dump_path,
            dump_timeout=settings.backup_dump_timeout_seconds,
            restore_timeout=settings.backup_restore_timeout_seconds,
            retention=RetentionPolicy(
                daily=settings.backup_keep_daily,
                weekly=settings.backup_keep_weekly,
                monthly=settings.backup_keep_monthly,
            ),
        )

    def tools(self, major: int) -> PgTools:
        return find_pg_tools(major, override=self.pg_dump_path)


def file_name(database: str, started_at: dt.datetime, backup_id: str) -> str:
    """`<database>-<YYYYmmddTHHMMSS>Z-<id8>.dump` (the database name made file-safe)."""
    return f"{_safe(database)}-{started_at:%Y%m%dT%H%M%S}Z-{backup_id[:8]}.dump"


def _safe(database: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", database) or "database"


# --- taking a backup -----------------------------------------------------------------------


def make_backup(
    config: BackupConfig,
    *,
    job_id: str | None = None,
    restore_check: bool = False,
    check: Check = None,
    clock: Clock = utcnow,
) -> records.BackupView:
    """Take, verify and record one backup (see the module docstring); its row."""
    try:
        config.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackupDirectoryError(
            f"BACKUP_DIR: cannot create {config.backup_dir}: {exc.strerror}"
        ) from None
    if not os.access(config.backup_dir, os.W_OK | os.X_OK):
        raise BackupDirectoryError(f"BACKUP_DIR: {config.backup_dir} is not writable")
    connection = connect(config.database_url)
    try:
        _lock(connection)
        try:
            view = _backup_locked(connection, config, job_id=job_id, check=check, clock=clock)
        finally:
            _unlock(connection)
    finally:
        connection.close()
    if restore_check:
        view = check_restore(config, view.id, check=check, clock=clock)
    return view


def _lock(connection: Connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (int(AdvisoryLock.BACKUP),))
        if not cursor.fetchone()[0]:
            raise BackupBusyError("another backup of this database is running")


def _unlock(connection: Connection) -> None:
    if connection.closed:
        return
    _end_snapshot(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", (int(AdvisoryLock.BACKUP),))


def _backup_locked(
    connection: Connection, config: BackupConfig, *, job_id: str | None, check: Check, clock: Clock
) -> records.BackupView:
    server = server_info(connection)
    _clear_leftovers(config.backup_dir, server.database, clock())
    started = clock()
    backup_id = new_id()
    final = config.backup_dir / file_name(server.database, started, backup_id)
    partial = final.with_name(f".{final.name}.partial")
    # The snapshot first, the row next: the dump holds the earlier backups' rows, not its own
    # `running` one (a restored database would show it running forever).
    snapshot = _begin_snapshot(connection, config)
    try:
        records.insert_running(
            backup_id=backup_id,
            path=final,
            job_id=job_id,
            database_name=server.database,
            server_version=server.version,
            started_at=started,
        )
        try:
            tools = config.tools(server.major)
            counts = count_rows(connection)
            _run_pg_dump(config, tools, snapshot, partial, check)
            _end_snapshot(connection)
            size, digest = _fsync_and_hash(partial)
            verify_archive(tools, partial, timeout=config.restore_timeout, check=check)
            _publish(partial, final)
        except BaseException as exc:
            partial.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            records.mark_failed(backup_id, exc, clock())
            log.warning("backup %s failed: %s: %s", backup_id, type(exc).__name__, exc)
            raise
    finally:
        _end_snapshot(connection)
    view = records.mark_succeeded(
        backup_id,
        finished_at=clock(),
        size_bytes=size,
        sha256=digest,
        pg_dump_version=tools.version,
        row_counts=counts,
    )
    log.info("backup %s: %s (%d bytes)", backup_id, final, size)
    return view


def _clear_leftovers(folder: Path, database: str, now: dt.datetime) -> None:
    """Under the lock: partial files and `running` rows of this database are an earlier crash."""
    for leftover in folder.glob(f".{_safe(database)}-*.dump.partial"):
        leftover.unlink(missing_ok=True)
    if records.fail_interrupted(now):
        log.warning("backups: marked interrupted backups of %s failed", database)


def _begin_snapshot(connection: Connection, config: BackupConfig) -> str:
    """Open a REPEATABLE READ transaction and export its snapshot for pg_dump --snapshot."""
    connection.autocommit = False
    connection.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        cursor.execute(f"SET LOCAL statement_timeout = {int(config.dump_timeout * 1000)}")
        cursor.execute("SET LOCAL lock_timeout = %s", (LOCK_WAIT,))
        cursor.execute("SELECT pg_export_snapshot()")
        return str(cursor.fetchone()[0])


def _end_snapshot(connection: Connection) -> None:
    """End the snapshot's transaction (idempotent); pg_dump holds its own once started."""
    if connection.closed or connection.autocommit:
        return
    connection.rollback()
    connection.autocommit = True


def _run_pg_dump(
    config: BackupConfig, tools: PgTools, snapshot: str, partial: Path, check: Check
) -> None:
    dsn, env = libpq_target(config.database_url)
    result = run_tool(
        [
            str(tools.pg_dump),
            "--format=custom",
            f"--file={partial}",
            f"--snapshot={snapshot}",
            f"--lock-wait-timeout={LOCK_WAIT}",
            "--no-password",
            f"--dbname={dsn}",
        ],
        timeout=config.dump_timeout,
        what="pg_dump",
        env=env,
        check=check,
    )
    if result.returncode != 0:
        raise dump_error(result)
    if not partial.is_file() or partial.stat().st_size == 0:
        raise DumpFailedError("pg_dump exited 0 but wrote no file")


def dump_error(result: ToolResult) -> BackupError:
    """The error a failed pg_dump means: a full disk (ENOSPC), a too-large file, or its own."""
    line = result.last_error_line()
    if "No space left on device" in result.stderr:
        return BackupStorageFullError(f"the backup folder's disk is full (ENOSPC): {line}")
    if "File too large" in result.stderr or result.returncode == -signal.SIGXFSZ:
        return BackupStorageFullError(f"the backup file hit a file size limit (EFBIG): {line}")
    return DumpFailedError(f"pg_dump exited with status {result.returncode}: {line}")


def _storage(exc: OSError, what: str) -> BackupError | OSError:
    if exc.errno in _STORAGE_ERRNOS:
        return BackupStorageFullError(f"{what}: {os.strerror(exc.errno or 0)}")
    return exc


def _fsync_and_hash(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as file:
            while chunk := file.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(file.fileno())
    except OSError as exc:
        raise _storage(exc, f"writing {path.name}") from exc
    return size, digest.hexdigest()


def _publish(partial: Path, final: Path) -> None:
    """Rename into place (atomic within the folder) and make the rename durable."""
    try:
        os.rename(partial, final)
        folder = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        raise _storage(exc, f"renaming {partial.name}") from exc


# --- checks ------------------------------------------------------------------------------


def _server(config: BackupConfig) -> ServerInfo:
    connection = connect(config.database_url)
    try:
        return server_info(connection)
    finally:
        connection.close()


def check_restore(
    config: BackupConfig, backup_id: str, *, check: Check = None, clock: Clock = utcnow
) -> records.BackupView:
    """Restore backup `backup_id` into a scratch database; its counts must be the dump's."""
    view = records.get_backup(backup_id)
    if view is None or view.state != "succeeded":
        raise BackupNotFoundError(f"no succeeded backup with id {backup_id!r}")
    tools = config.tools(_server(config).major)
    try:
        counts = scratch_restore_counts(
            tools,
            Path(view.path),
            database_url=config.database_url,
            timeout=config.restore_timeout,
            check=check,
        )
    except RestoreFailedError:
        records.record_restore_check(backup_id, at=clock(), counts=None, ok=False)
        raise
    expected = view.row_counts or {}
    ok = counts == expected
    records.record_restore_check(backup_id, at=clock(), counts=counts, ok=ok)
    if not ok:
        differences = ", ".join(
            f"{table}: {expected.get(table)} dumped, {counts.get(table)} restored"
            for table in sorted(set(expected) | set(counts))
            if expected.get(table) != counts.get(table)
        )
        raise RestoreCheckMismatchError(f"restore check of {view.path}: {differences}")
    refreshed = records.get_backup(backup_id)
    assert refreshed is not None  # noqa: S101 - the row was just updated
    return refreshed


def resolve_file(config: BackupConfig, name: str) -> Path:
    """A backup file given as a path or as a name in BACKUP_DIR."""
    for candidate in (Path(name), config.backup_dir / name):
        if candidate.is_file():
            return candidate.resolve()
    raise BackupNotFoundError(f"no backup file {name!r} (nor in {config.backup_dir})")


def verify_file(
    config: BackupConfig, path: Path, *, check: Check = None, clock: Clock = utcnow
) -> dict[str, Any]:
    """Verify a file (backup_archive.verify_archive); a recorded one gets `verified_at`."""
    tools = config.tools(_server(config).major)
    try:
        contents = verify_archive(tools, path, timeout=config.restore_timeout, check=check)
    except BackupError as exc:
        records.record_verification(path, clock(), exc)
        raise
    recorded = records.record_verification(path, clock(), None)
    return {
        "file": str(path),
        "entries": contents.entries,
        "tables": len(contents.tables),
        "recorded": recorded,
        "sha256": _fsync_and_hash(path)[1],
    }


# --- restoring -----------------------------------------------------------------------------


def restore(
    config: BackupConfig, path: Path, *, into: str, over_live: bool = False, check: Check = None
) -> dict[str, Any]:
    """Restore `path` into database `into` of DATABASE_URL's server.

    Over the live database (DATABASE_URL's own) only with `over_live`, replacing its objects
    in one transaction. Another database is created when missing, refused when not empty.
    """
    live = database_name(config.database_url)
    connection = connect(config.database_url)
    try:
        server = server_info(connection)
        exists, empty = _database_state(connection, config.database_url, into)
    finally:
        connection.close()
    if into == live and not over_live:
        raise RestoreRefusedError(
            f"refusing to restore over the live database {live!r} (DATABASE_URL's own):"
            " pass --over-live to replace its contents, or restore --into another name"
        )
    if into != live and exists and not empty:
        raise RestoreRefusedError(
            f"database {into!r} is not empty: restore into a new name, or drop it first"
        )
    tools = config.tools(server.major)
    created = False
    if not exists:
        admin.create_database(config.database_url, into)
        created = True
    try:
        restore_archive(
            tools,
            path,
            database_url=config.database_url,
            dbname=into,
            clean=into == live,
            timeout=config.restore_timeout,
            check=check,
        )
    except BaseException:
        if created:  # leave nothing half-made behind
            admin.drop_database(config.database_url, into)
        raise
    scratch = connect(config.database_url, dbname=into)
    try:
        counts = count_rows(scratch)
    finally:
        scratch.close()
    return {"file": str(path), "into": into, "created": created, "row_counts": counts}


def _database_state(connection: Connection, database_url: str, name: str) -> tuple[bool, bool]:
    """(exists, holds no table, view or sequence) of database `name` on this server."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,))
        row = cursor.fetchone()
    if row is None:
        return False, True
    if not row[0]:
        raise RestoreRefusedError(f"database {name!r} does not accept connections")
    other = connect(database_url, dbname=name)
    try:
        return True, _empty(other)
    finally:
        other.close()


def _empty(connection: Connection) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v', 'm', 'p', 'S')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%%')"
        )
        return bool(cursor.fetchone()[0])


# --- retention and the job -----------------------------------------------------------------


def apply_retention(config: BackupConfig, *, now: dt.datetime | None = None) -> list[str]:
    """Delete the files (and mark the rows `deleted`) of the generations not kept; the paths."""
    now = now or utcnow()
    backups = records.succeeded()
    _, doomed = partition(
        [(view.id, view.started_at) for view in backups], now=now, policy=config.retention
    )
    paths = {view.id: view.path for view in backups}
    for backup_id in doomed:
        Path(paths[backup_id]).unlink(missing_ok=True)
    records.mark_deleted(doomed, now)
    return [paths[backup_id] for backup_id in doomed]


def run_backup_job(
    config: BackupConfig,
    *,
    job_id: str | None = None,
    restore_check: bool = False,
    check: Check = None,
    clock: Clock = utcnow,
) -> dict[str, Any]:
    """A backup (and its restore check when asked), then retention: the job's result."""
    view = make_backup(config, job_id=job_id, restore_check=restore_check, check=check, clock=clock)
    deleted = apply_retention(config, now=clock())
    return {
        "backup_id": view.id,
        "file": view.path,
        "size_bytes": view.size_bytes,
        "sha256": view.sha256,
        "duration_seconds": view.duration_seconds,
        "restore_check_ok": view.restore_check_ok,
        "deleted": deleted,
    }
