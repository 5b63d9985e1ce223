"""What can be done with a `pg_dump -Fc` archive: verify it, restore it, count what it holds.

- `verify_archive`: `pg_restore --list` (the table of contents must hold the data of every
  MediaNest table) and then a full read (`pg_restore --file=/dev/null`), which decompresses
  every data block: `--list` alone reads only the table of contents and passes a truncated
  file.
- `restore_archive`: `pg_restore` into a database in one transaction (`--single-transaction
  --exit-on-error`): it all lands or nothing does. Owners and grants are not restored
  (`--no-owner --no-privileges`): the restoring role owns what it restores.
- `scratch_restore_counts`: restore into a fresh scratch database, count the rows of the
  MediaNest tables there, drop it (whatever happened).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from medianest_workers.db import admin
from medianest_workers.db.base import Base
from medianest_workers.db.models import medianest as medianest_models
from medianest_workers.maintenance.backup_errors import BackupVerifyError, RestoreFailedError
from medianest_workers.maintenance.pg_tools import PgTools, connect, libpq_target, run_tool

LIST_TIMEOUT_SECONDS = 300.0
SCRATCH_PREFIX = "mnw_restore_check_"
_TABLE_DATA = re.compile(r"^\d+; \d+ \d+ TABLE DATA (\S+) (\S+)", re.MULTILINE)


def medianest_tables() -> tuple[str, ...]:
    """The MediaNest backend's tables, as medianest_workers.db.models maps them."""
    return tuple(
        sorted(
            mapper.class_.__table__.name
            for mapper in Base.registry.mappers
            if mapper.class_.__module__ == medianest_models.__name__
        )
    )


def count_rows(connection: Connection, tables: tuple[str, ...] | None = None) -> dict[str, int]:
    """`SELECT count(*)` of each MediaNest table present, in the connection's transaction."""
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table in tables or medianest_tables():
            cursor.execute("SELECT to_regclass(%s)", (f'public."{table}"',))
            if cursor.fetchone()[0] is None:
                continue
            cursor.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table)))
            counts[table] = int(cursor.fetchone()[0])
    return counts


@dataclass(frozen=True)
class ArchiveContents:
    entries: int
    tables: tuple[str, ...]  # tables whose data the archive holds (schema.name)


def verify_archive(
    tools: PgTools, path: Path, *, timeout: float, check: Callable[[], None] | None = None
) -> ArchiveContents:
    """Both checks of the module docstring; BackupVerifyError saying what is wrong."""
    listing = run_tool(
        [str(tools.pg_restore), "--list", str(path)],
        timeout=LIST_TIMEOUT_SECONDS,
        what="pg_restore --list",
        check=check,
    )
    if listing.returncode != 0:
        raise BackupVerifyError(f"pg_restore --list {path.name}: {listing.last_error_line()}")
    entries = sum(
        1 for line in listing.stdout.splitlines() if line.strip() and not line.startswith(";")
    )
    tables = tuple(f"{schema}.{name}" for schema, name in _TABLE_DATA.findall(listing.stdout))
    missing = [name for name in medianest_tables() if f"public.{name}" not in tables]
    if missing:
        raise BackupVerifyError(
            f"{path.name} holds no data for the MediaNest tables {', '.join(missing)}"
        )
    reading = run_tool(
        [str(tools.pg_restore), "--file=/dev/null", str(path)],
        timeout=timeout,
        what="pg_restore (full read)",
        check=check,
    )
    if reading.returncode != 0:
        raise BackupVerifyError(f"reading {path.name} failed: {reading.last_error_line()}")
    return ArchiveContents(entries=entries, tables=tables)


def restore_archive(
    tools: PgTools,
    path: Path,
    *,
    database_url: str,
    dbname: str,
    clean: bool = False,
    timeout: float,
    check: Callable[[], None] | None = None,
) -> None:
    """pg_restore `path` into `dbname` on DATABASE_URL's server (`clean`: drop what exists)."""
    dsn, env = libpq_target(database_url, dbname=dbname)
    argv = [
        str(tools.pg_restore),
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
        "--no-password",
        *(["--clean", "--if-exists"] if clean else []),
        f"--dbname={dsn}",
        str(path),
    ]
    result = run_tool(argv, timeout=timeout, what="pg_restore", env=env, check=check)
    if result.returncode != 0:
        raise RestoreFailedError(
            f"pg_restore of {path.name} into {dbname!r} failed (nothing was restored):"
            f" {result.last_error_line()}"
        )


def scratch_restore_counts(
    tools: PgTools,
    path: Path,
    *,
    database_url: str,
    timeout: float,
    check: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Restore into a scratch database, count the MediaNest tables' rows, drop it."""
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        admin.create_database(database_url, name)
    except Exception as exc:
        raise RestoreFailedError(
            f"cannot create the scratch database {name} for the restore check: {exc}".strip()
        ) from exc
    try:
        restore_archive(
            tools, path, database_url=database_url, dbname=name, timeout=timeout, check=check
        )
        scratch = connect(database_url, dbname=name)
        try:
            return count_rows(scratch)
        finally:
            scratch.close()
    finally:
        admin.drop_database(database_url, name)
