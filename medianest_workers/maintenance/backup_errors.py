"""Why a backup, a check or a restore failed: permanent job errors, one class per cause.

Every one is a `PermanentError` (a retry would meet the same missing tool, full disk or
broken archive): the `maintenance.backup` job ends `failed` at once with the class name as
its error class and a one-line message, and the `backup` commands print that line.
"""

from __future__ import annotations

from medianest_workers.platform.errors import PermanentError


class BackupError(PermanentError):
    """Base of the backup errors."""


class PgToolNotFoundError(BackupError):
    """No `pg_dump` / `pg_restore` could be found (PG_DUMP_PATH, PATH, the usual folders)."""


class PgToolVersionError(BackupError):
    """The `pg_dump` found is not of the server's major version."""


class BackupDirectoryError(BackupError):
    """BACKUP_DIR cannot be created or written."""


class BackupStorageFullError(BackupError):
    """The backup folder's file system is full (ENOSPC) or the file grew too large (EFBIG)."""


class DumpFailedError(BackupError):
    """`pg_dump` exited with an error; its last line of stderr is the message."""


class ToolTimeoutError(BackupError):
    """`pg_dump` or `pg_restore` ran longer than its timeout and was killed."""


class BackupVerifyError(BackupError):
    """`pg_restore --list` could not read the archive: the file is not a usable backup."""


class RestoreFailedError(BackupError):
    """`pg_restore` into a database failed (the restore ran in one transaction: nothing kept)."""


class RestoreCheckMismatchError(BackupError):
    """A restore check found other row counts than the dump's snapshot held."""


class RestoreRefusedError(BackupError):
    """A restore the operator must confirm (over the live database) or cannot do as asked."""


class BackupNotFoundError(BackupError):
    """No such backup file."""
