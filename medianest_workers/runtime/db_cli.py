"""`medianest-workers db top`: the most expensive statements, from pg_stat_statements.

`db top` prints the latest snapshot of mnw_query_stats (the daily `maintenance.query_stats`
job); before the first snapshot, or with `--live`, it reads pg_stat_statements itself (live
cumulative numbers since its last reset). Where pg_stat_statements is not enabled and there
is no snapshot to show, it prints one line saying how to enable it and exits 1.

Exit codes as `jobs_cli.py`: 0 done, 1 refused, argparse's 2 for malformed arguments. Imports
of the database layer happen when the handler runs, so `--help` stays light.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medianest_workers.maintenance.query_stats import StatementStats

EXIT_OK = 0
EXIT_REFUSED = 1
PROG = "medianest-workers"
DEFAULT_TOP_LIMIT = 20
MAX_TOP_LIMIT = 1000
QUERY_WIDTH = 70


def add_db_commands(subparsers: Any) -> None:
    """Register `db` (and its `top` action) on the `add_subparsers()` object of the parser."""
    db = subparsers.add_parser("db", help="look into the database (query statistics)")
    actions = db.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    top = actions.add_parser(
        "top",
        help="the statements with the most total execution time (latest snapshot, else live)",
    )
    top.add_argument(
        "--limit", metavar="N", type=_limit, default=DEFAULT_TOP_LIMIT, help="1..1000, default 20"
    )
    top.add_argument("--json", action="store_true", help="print JSON instead of a table")
    top.add_argument(
        "--live", action="store_true", help="read pg_stat_statements now, not the last snapshot"
    )
    top.set_defaults(handler=run_top)


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= number <= MAX_TOP_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_TOP_LIMIT}")
    return number


def run_top(args: argparse.Namespace) -> int:
    from medianest_workers.db.session import get_sessionmaker  # noqa: PLC0415 - see the doc
    from medianest_workers.maintenance import query_stats  # noqa: PLC0415

    session_factory = get_sessionmaker()
    snapshot = None if args.live else query_stats.latest_snapshot(session_factory, limit=args.limit)
    if snapshot is not None:
        source, taken_at, statements = "snapshot", snapshot.taken_at, snapshot.statements
        title = f"snapshot of {_when(taken_at)}"
    else:
        availability, statements = query_stats.live_top(session_factory, limit=args.limit)
        if not availability.available:
            return _refuse(availability.message)
        source, taken_at = "live", None
        title = f"live from pg_stat_statements {availability.version}"
        if not args.live:
            title += " (no snapshot yet)"
    if args.json:
        document = {
            "source": source,
            "taken_at": taken_at.isoformat() if taken_at else None,
            "statements": [statement.as_json() for statement in statements],
        }
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    sys.stdout.write(
        f"{title}: top {len(statements)} statements by total execution time"
        " (cumulative since pg_stat_statements' last reset)\n"
    )
    sys.stdout.write(format_table(statements))
    return EXIT_OK


_COLUMNS = ("RANK", "CALLS", "TOTAL ms", "MEAN ms", "ROWS", "HIT %", "QUERY")


def format_table(statements: list[StatementStats]) -> str:
    """A fixed-width table, one statement a line, its text on one line and cut."""
    if not statements:
        return "no statements\n"
    rows = [_COLUMNS, *(_row(statement) for statement in statements)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def _row(statement: StatementStats) -> tuple[str, ...]:
    ratio = statement.hit_ratio
    query = " ".join(statement.query.split())
    if len(query) > QUERY_WIDTH:
        query = query[: QUERY_WIDTH - 1] + "…"
    return (
        str(statement.rank),
        str(statement.calls),
        f"{statement.total_exec_ms:.1f}",
        f"{statement.mean_exec_ms:.2f}",
        str(statement.rows),
        "-" if ratio is None else f"{100 * ratio:.1f}",
        query,
    )


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _refuse(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_REFUSED
