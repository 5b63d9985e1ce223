"""`medianest-workers backup now|list|verify FILE|restore FILE --into DBNAME`.

`add_backup_commands(subparsers)` registers them on the main parser. They run here, in this
process, against DATABASE_URL (or the running `up`'s database), with the settings' BACKUP_DIR
and PG_DUMP_PATH. Exit codes as for `jobs`: 0 done, 1 refused (a backup, check or restore that
failed, a missing file, a live restore without `--over-live`: one line on stderr), and
argparse's 2 for malformed arguments. Results are JSON on stdout (`list`: a table unless
`--json`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the handlers import the family when they run: `--help` stays light
    from medianest_workers.maintenance.backup_records import BackupView

EXIT_OK = 0
EXIT_REFUSED = 1
PROG = "medianest-workers"
DEFAULT_LIST_LIMIT = 20


def add_backup_commands(subparsers: Any) -> None:
    """Register `backup` on the `add_subparsers()` object of the main parser."""
    backup = subparsers.add_parser("backup", help="take, list, verify or restore backups")
    actions = backup.add_subparsers(dest="backup_action", required=True, metavar="ACTION")

    now = actions.add_parser("now", help="take a backup now (pg_dump -Fc into BACKUP_DIR)")
    now.add_argument(
        "--restore-check",
        action="store_true",
        help="also restore it into a scratch database and compare row counts",
    )
    now.add_argument(
        "--no-retention", action="store_true", help="do not delete old generations afterwards"
    )
    now.set_defaults(handler=run_now)

    listing = actions.add_parser("list", help="backups, newest first")
    listing.add_argument("--limit", metavar="N", type=_limit, default=DEFAULT_LIST_LIMIT)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=run_list)

    verify = actions.add_parser("verify", help="check a backup file with pg_restore")
    verify.add_argument("file", metavar="FILE", help="a path, or a file name in BACKUP_DIR")
    verify.set_defaults(handler=run_verify)

    restore = actions.add_parser("restore", help="restore a backup file into a database")
    restore.add_argument("file", metavar="FILE", help="a path, or a file name in BACKUP_DIR")
    restore.add_argument(
        "--into",
        metavar="DBNAME",
        required=True,
        type=_database_name,
        help="created if missing; refused if it holds tables",
    )
    restore.add_argument(
        "--over-live",
        action="store_true",
        help="allow DBNAME to be DATABASE_URL's own database (its contents are replaced)",
    )
    restore.set_defaults(handler=run_restore)


# --- argument types ------------------------------------------------------------------------


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return number


def _database_name(value: str) -> str:
    if not value or len(value.encode()) > 63 or "\x00" in value:
        raise argparse.ArgumentTypeError("a database name of 1 to 63 bytes")
    return value


# --- handlers ------------------------------------------------------------------------------


def _failures() -> tuple[type[Exception], ...]:
    """What a backup command reports in one line: our refusals, an unreachable database."""
    import psycopg2  # noqa: PLC0415 - see the imports
    from sqlalchemy.exc import OperationalError  # noqa: PLC0415

    from medianest_workers.maintenance.backup_errors import BackupError  # noqa: PLC0415

    return (BackupError, psycopg2.Error, OperationalError)


def _failed(what: str, exc: Exception) -> int:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return _refuse(f"{what} failed: {type(exc).__name__}: {first_line}")


def run_now(args: argparse.Namespace) -> int:
    from medianest_workers.maintenance import backups  # noqa: PLC0415 - see the imports

    config = backups.BackupConfig.from_settings()
    try:
        view = backups.make_backup(config, restore_check=args.restore_check)
    except _failures() as exc:
        return _failed("backup", exc)
    result = view.as_json()
    if not args.no_retention:
        result["deleted"] = backups.apply_retention(config)
    _print_json(result)
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    from medianest_workers.maintenance import backup_records  # noqa: PLC0415 - see the imports

    views = backup_records.list_backups(limit=args.limit)
    if args.json:
        _print_json({"backups": [view.as_json() for view in views]})
    else:
        sys.stdout.write(format_table(views))
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    from medianest_workers.maintenance import backups  # noqa: PLC0415 - see the imports

    config = backups.BackupConfig.from_settings()
    try:
        path = backups.resolve_file(config, args.file)
        result = backups.verify_file(config, path)
    except _failures() as exc:
        return _failed("verify", exc)
    _print_json({**result, "ok": True})
    return EXIT_OK


def run_restore(args: argparse.Namespace) -> int:
    from medianest_workers.maintenance import backups  # noqa: PLC0415 - see the imports
    from medianest_workers.maintenance.backup_errors import (  # noqa: PLC0415
        BackupNotFoundError,
        RestoreRefusedError,
    )

    config = backups.BackupConfig.from_settings()
    try:
        path = backups.resolve_file(config, args.file)
        result = backups.restore(config, path, into=args.into, over_live=args.over_live)
    except (RestoreRefusedError, BackupNotFoundError) as exc:
        return _refuse(str(exc))
    except _failures() as exc:
        return _failed("restore", exc)
    _print_json(result)
    return EXIT_OK


# --- output --------------------------------------------------------------------------------

_COLUMNS = ("STARTED (UTC)", "STATE", "SIZE", "VERIFIED", "RESTORE CHECK", "FILE")


def format_table(views: list[BackupView]) -> str:
    """A compact fixed-width table, one backup a line (the error for failed ones)."""
    if not views:
        return "no backups\n"
    rows = [_COLUMNS, *(_row(view) for view in views)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def _row(view: BackupView) -> tuple[str, ...]:
    check = "-"
    if view.restore_check_ok is not None:
        check = "ok" if view.restore_check_ok else "MISMATCH"
    shown = view.path.rsplit("/", 1)[-1]
    if view.state == "failed":
        shown = f"{view.error_class}: {view.error_message}"
    return (
        _when(view.started_at),
        view.state,
        _size(view.size_bytes),
        _when(view.verified_at),
        check,
        shown,
    )


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _refuse(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_REFUSED
