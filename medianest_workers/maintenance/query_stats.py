"""Query statistics: daily snapshots of pg_stat_statements' most expensive statements.

pg_stat_statements is usable when its library is preloaded (`shared_preload_libraries`, read
at server start) and the extension is created in this database. `probe()` checks both and the
installed extension's version, whose columns differ: `total_exec_time` / `mean_exec_time` from
1.8 (PostgreSQL 13), `total_time` / `mean_time` before; `toplevel` from 1.9.

`take_snapshot()` copies the top QUERY_STATS_TOP statements of this database, by total
execution time, into mnw_query_stats (one `taken_at`, the database's clock, UTC), and deletes
snapshots older than QUERY_STATS_RETENTION_DAYS. Where pg_stat_statements is not usable it
writes nothing and says why (`SnapshotResult.available` False, `reason`, `ENABLE_HINT`).
Statements are summed over roles per queryid (top-level only where the view says so); rows
of other roles whose queryid the current role may not see (no pg_read_all_stats) are left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text
from sqlalchemy.orm import Session

from medianest_workers.db.models.query_stats import QueryStat, hit_ratio
from medianest_workers.settings import get_settings

EXTENSION = "pg_stat_statements"
#: The oldest extension version read (PostgreSQL 9.6's); older ones are refused.
MIN_VERSION = (1, 4)
#: From this version the view says `total_exec_time` (PostgreSQL 13+).
EXEC_TIME_VERSION = (1, 8)
#: From this version the view has `toplevel`.
TOPLEVEL_VERSION = (1, 9)
ENABLE_HINT = (
    "to enable it: set shared_preload_libraries = 'pg_stat_statements' in postgresql.conf,"
    " restart PostgreSQL, then run CREATE EXTENSION pg_stat_statements; in this database"
)

SessionFactory = Callable[[], Session]


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether pg_stat_statements can be read here; if not, why (one line)."""

    available: bool
    reason: str | None = None
    version: str | None = None
    schema: str | None = None

    @property
    def message(self) -> str:
        """One line for an operator: what is missing and how to enable it."""
        if self.available:
            return f"{EXTENSION} {self.version} is available"
        return f"{EXTENSION} is not available ({self.reason}); {ENABLE_HINT}"


@dataclass(frozen=True, slots=True)
class StatementStats:
    """One statement's cumulative numbers (since pg_stat_statements' last reset)."""

    rank: int
    queryid: int
    query: str
    calls: int
    total_exec_ms: float
    mean_exec_ms: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int

    @property
    def hit_ratio(self) -> float | None:
        return hit_ratio(self.shared_blks_hit, self.shared_blks_read)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "hit_ratio": self.hit_ratio}


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    """What `take_snapshot` did: the job's result."""

    available: bool
    reason: str | None = None
    extension_version: str | None = None
    taken_at: dt.datetime | None = None
    statements: int = 0
    pruned: int = 0

    def as_json(self) -> dict[str, Any]:
        if not self.available:
            return {"available": False, "reason": self.reason, "how_to_enable": ENABLE_HINT}
        return {
            "available": True,
            "extension_version": self.extension_version,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "statements": self.statements,
            "pruned": self.pruned,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The statements of one snapshot, by rank."""

    taken_at: dt.datetime
    statements: list[StatementStats]


def parse_version(version: str) -> tuple[int, ...]:
    """'1.10' -> (1, 10); a part that is not a number counts as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def probe(connection: Connection) -> Availability:
    """Check the preload, the extension in this database, and its version."""
    preloaded = connection.execute(
        text("SELECT current_setting('shared_preload_libraries')")
    ).scalar_one()
    libraries = [part.strip().strip('"') for part in str(preloaded).split(",")]
    row = connection.execute(
        text(
            "SELECT e.extversion, n.nspname FROM pg_extension e"
            " JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = :name"
        ),
        {"name": EXTENSION},
    ).one_or_none()
    missing = []
    if EXTENSION not in libraries:
        missing.append("not in shared_preload_libraries")
    if row is None:
        installable = connection.execute(
            text("SELECT count(*) FROM pg_available_extensions WHERE name = :name"),
            {"name": EXTENSION},
        ).scalar_one()
        missing.append(
            "the extension is not created in this database"
            if installable
            else "the server has no pg_stat_statements package (PostgreSQL's contrib)"
        )
    if missing:
        return Availability(False, reason="; ".join(missing))
    version, schema = str(row[0]), str(row[1])
    if parse_version(version) < MIN_VERSION:
        return Availability(
            False,
            reason=f"extension version {version} is too old: ALTER EXTENSION {EXTENSION} UPDATE",
            version=version,
        )
    return Availability(True, version=version, schema=schema)


def _top_query(availability: Availability) -> str:
    """The SELECT of the top statements, in the installed version's column names."""
    version = parse_version(availability.version or "0")
    total = "total_exec_time" if version >= EXEC_TIME_VERSION else "total_time"
    toplevel = " AND s.toplevel" if version >= TOPLEVEL_VERSION else ""
    schema = (availability.schema or "public").replace('"', '""')
    return (
        "SELECT s.queryid, min(left(s.query, :chars + 1)) AS query, sum(s.calls) AS calls,"
        f" sum(s.{total}) AS total_ms, sum(s.rows) AS rows,"
        " sum(s.shared_blks_hit) AS hit, sum(s.shared_blks_read) AS read"
        f' FROM "{schema}".pg_stat_statements s'
        " WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f" AND s.queryid IS NOT NULL{toplevel}"
        " GROUP BY s.queryid ORDER BY total_ms DESC, s.queryid LIMIT :top"
    )


def _bounded(query: str, max_chars: int) -> str:
    return query if len(query) <= max_chars else query[: max_chars - 1] + "…"


def read_top(
    connection: Connection, availability: Availability, *, top: int, max_chars: int
) -> list[StatementStats]:
    """The live top statements (pg_stat_statements must be available: see `probe`)."""
    if not availability.available:
        raise ValueError(availability.message)
    rows = connection.execute(
        text(_top_query(availability)), {"top": top, "chars": max_chars}
    ).all()
    return [
        StatementStats(
            rank=rank,
            queryid=int(row.queryid),
            query=_bounded(str(row.query), max_chars),
            calls=int(row.calls),
            total_exec_ms=float(row.total_ms),
            mean_exec_ms=float(row.total_ms) / int(row.calls) if row.calls else 0.0,
            rows=int(row.rows),
            shared_blks_hit=int(row.hit),
            shared_blks_read=int(row.read),
        )
        for rank, row in enumerate(rows, start=1)
    ]


def take_snapshot(
    session_factory: SessionFactory,
    *,
    top: int | None = None,
    max_chars: int | None = None,
    retention_days: int | None = None,
) -> SnapshotResult:
    """Copy the top statements into mnw_query_stats; prune old snapshots (module doc)."""
    settings = get_settings()
    top = settings.query_stats_top if top is None else top
    max_chars = settings.query_stats_query_max_chars if max_chars is None else max_chars
    keep = settings.query_stats_retention_days if retention_days is None else retention_days
    with session_factory() as session, session.begin():
        connection = session.connection()
        availability = probe(connection)
        if not availability.available:
            return SnapshotResult(False, reason=availability.reason)
        statements = read_top(connection, availability, top=top, max_chars=max_chars)
        taken_at = connection.execute(
            text("SELECT date_trunc('milliseconds', now() AT TIME ZONE 'UTC')")
        ).scalar_one()
        if statements:
            session.execute(
                insert(QueryStat), [{"taken_at": taken_at, **asdict(s)} for s in statements]
            )
        pruned = session.execute(
            delete(QueryStat).where(QueryStat.taken_at < taken_at - dt.timedelta(days=keep))
        ).rowcount
    return SnapshotResult(
        True,
        extension_version=availability.version,
        taken_at=taken_at,
        statements=len(statements),
        pruned=pruned,
    )


def latest_snapshot(session_factory: SessionFactory, *, limit: int) -> Snapshot | None:
    """The most recent snapshot's first `limit` statements, or None if none was taken."""
    with session_factory() as session:
        taken_at = session.execute(select(func.max(QueryStat.taken_at))).scalar_one()
        if taken_at is None:
            return None
        rows = session.scalars(
            select(QueryStat)
            .where(QueryStat.taken_at == taken_at)
            .order_by(QueryStat.rank)
            .limit(limit)
        ).all()
    return Snapshot(
        taken_at=taken_at,
        statements=[
            StatementStats(
                rank=row.rank,
                queryid=row.queryid,
                query=row.query,
                calls=row.calls,
                total_exec_ms=row.total_exec_ms,
                mean_exec_ms=row.mean_exec_ms,
                rows=row.rows,
                shared_blks_hit=row.shared_blks_hit,
                shared_blks_read=row.shared_blks_read,
            )
            for row in rows
        ],
    )


def live_top(
    session_factory: SessionFactory, *, limit: int
) -> tuple[Availability, list[StatementStats]]:
    """The availability and, when available, the live top `limit` statements."""
    with session_factory() as session:
        connection = session.connection()
        availability = probe(connection)
        if not availability.available:
            return availability, []
        max_chars = get_settings().query_stats_query_max_chars
        return availability, read_top(connection, availability, top=limit, max_chars=max_chars)
