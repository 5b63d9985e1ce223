"""`medianest-workers rotate-key --old-key-file F --new-key-file F`: rotate ENCRYPTION_KEY.

Runs the rotation in this process (maintenance/key_rotation.py), not as a job: a line per batch
on stdout (rows done of rows total), then one closing line that says what to change in the
backend's and in our configuration. Stopped part way (Ctrl-C, a crash), it resumes where it
stopped when run again. Exit codes as `jobs_cli.py`: 0 done, 1 refused or not complete (one
line on stderr), argparse's 2 for malformed arguments. Keys are read from the files only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medianest_workers.maintenance.key_rotation import Progress

EXIT_OK = 0
EXIT_REFUSED = 1
PROG = "medianest-workers"


def add_rotate_key_command(subparsers: Any) -> None:
    """Register `rotate-key` on the `add_subparsers()` object of the main parser."""
    rotate = subparsers.add_parser(
        "rotate-key",
        help="re-encrypt users.plex_token / service_config.api_key under a new ENCRYPTION_KEY",
    )
    rotate.add_argument(
        "--old-key-file", metavar="F", type=Path, required=True, help="the key in use now"
    )
    rotate.add_argument("--new-key-file", metavar="F", type=Path, required=True)
    rotate.add_argument(
        "--batch-size", metavar="N", type=_batch_size, help="default: ROTATION_BATCH_SIZE"
    )
    rotate.add_argument(
        "--from-start", action="store_true", help="ignore the checkpoints: check every row again"
    )
    rotate.set_defaults(handler=run_rotate_key)


def _batch_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= number <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return number


def run_rotate_key(args: argparse.Namespace) -> int:
    from medianest_workers.db.session import get_sessionmaker  # noqa: PLC0415 - light --help
    from medianest_workers.maintenance import key_rotation  # noqa: PLC0415
    from medianest_workers.security import rotation  # noqa: PLC0415

    # The progress lines say it all; the rotation's warnings (ids that fail) still show.
    logging.getLogger(rotation.__name__).setLevel(logging.WARNING)
    try:
        outcome = key_rotation.rotate_key(
            get_sessionmaker(),
            old_key_file=args.old_key_file,
            new_key_file=args.new_key_file,
            batch_size=args.batch_size,
            from_start=args.from_start,
            on_progress=_print_progress,
        )
    except key_rotation.KeyRotationError as exc:
        return _refuse(str(exc))
    columns = outcome.report.columns.values()
    rotated = sum(column.rotated for column in columns)
    current = sum(column.already_current for column in columns)
    sys.stdout.write(
        f"{outcome.rows_total} values: {rotated} rotated now, {current} already under the new"
        f" key, {outcome.rows_skipped} done by an earlier run of this rotation (not read again)\n"
    )
    if not outcome.complete:
        return _refuse(outcome.closing_line())
    sys.stdout.write(outcome.closing_line() + "\n")
    return EXIT_OK


def _print_progress(step: Progress) -> None:
    column = step.column_report
    sys.stdout.write(
        f"{step.column}: {step.rows_done}/{step.rows_total} rows done (rotated {column.rotated},"
        f" current {column.already_current}, failed {len(column.failed_ids)},"
        f" conflicts {len(column.conflict_ids)})\n"
    )
    sys.stdout.flush()


def _refuse(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_REFUSED
