"""Cleanup and retention: delete the rows that are past their time, in short batches.

Each target is one table and what "past its time" means there: its `column` is older than
the database's clock minus the target's retention (a setting; none for rows that simply
expire). `TARGETS` is the declarative list; a later family (health history, a download
archive) adds its table by one entry.

A batch is one short transaction (`SET LOCAL lock_timeout` and `statement_timeout`). On a
table with an index on its column (every target but verification_tokens), it is a plain
range DELETE on that index, oldest first:

    DELETE FROM t WHERE <column> >= :after AND <column> < :until AND <past>

- `:until` is the value of the row just past the batch's first :limit rows from `:after`
  on; one read-only probe walks the index for the bounds of the next RANGE_PROBE_STEPS
  batches (`range_statements`), and each batch starts where the last one ended. So a batch
  costs, row for row, what one DELETE of everything costs: no sub-select, no row locks
  taken ahead, no second visit of a row (see bench/cleanup.py).
- `<past>` is checked again on each row as it is deleted: a row made valid meanwhile (a
  session extended) stays.
- A plain DELETE waits for a row another transaction holds: at most CLEANUP_LOCK_TIMEOUT_MS,
  after which the batch (rolled back, nothing deleted) is done again in the form below,
  which passes over the rows held (`lock_waits` in the report). The same form deletes a
  batch of rows sharing one value (no range splits them), and every batch of an unordered
  target (no index):

    WITH gone AS (
        DELETE FROM t WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM t WHERE <past> AND <column> >= :after
            ORDER BY <column> LIMIT :n FOR UPDATE SKIP LOCKED))
          AND <past>
        RETURNING <column>)
    SELECT count(*), max(<column>) FROM gone

  Rows are named by `ctid`, in the statement that locked them (FOR UPDATE): a locked row
  cannot move, so within the statement its ctid is as good as its primary key, and a table
  without a primary key (verification_tokens) needs nothing special.
- Each batch starts where the last one ended (`:after`): a scan from the start would visit
  the heap for every index entry of the rows just deleted (until VACUUM removes them),
  which makes a large cleanup several times slower and its statements ever longer. So one
  run is one pass, oldest to newest: a row passed over because it was locked, or one that
  turns up behind the pass, goes on the next run.
- The batch size follows the measured statement time (CLEANUP_BATCH_TARGET_MS, between
  CLEANUP_BATCH_MIN_ROWS and CLEANUP_BATCH_MAX_ROWS).

The cut-off is taken once per target from the database clock, so a run deletes exactly the
rows that were past their time when it started; every batch commits, so a run killed
half-way loses nothing and the next one simply continues.

mnw_jobs is written only by the ledger: its target deletes through `ledger.prune_finished`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from medianest_workers.db.session import get_engine
from medianest_workers.platform import ledger
from medianest_workers.platform.errors import RetryableError
from medianest_workers.settings import Settings, get_settings

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400.0
#: The first batch of a target; later ones follow the measured time.
INITIAL_BATCH_ROWS = 1_000
#: A batch may grow or shrink by at most this factor from one to the next.
MAX_STEP = 2.0
#: A target whose batches time out this many times in a row is given up for this run.
MAX_CONSECUTIVE_TIMEOUTS = 5
#: SQLSTATEs of a batch stopped by its own bounds: lock_not_available, query_canceled.
_TIMEOUT_CODES = frozenset({"55P03", "57014"})
_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class Batch:
    """What one batch deleted: how many rows, and the newest `column` value among them."""

    deleted: int
    last: dt.datetime | None
    #: Whether the pass reached the cut-off (None: when it deleted fewer than it asked for).
    done: bool | None = None


#: (connection, cut-off, after, limit) -> Batch: one batch, inside the caller's transaction.
#: `after` (None: from the oldest) is where an ordered target's batch starts.
BatchDelete = Callable[[Connection, dt.datetime, dt.datetime | None, int], Batch]


class CleanupStalledError(RetryableError):
    """A target's batches kept hitting their lock or statement timeout."""


@dataclass(frozen=True, kw_only=True)
class Target:
    """One table to clean: which rows are past their time, and how a batch deletes them."""

    name: str
    table: str
    #: A row is past its time once this timestamp is older than now minus the retention.
    column: str
    description: str
    #: The Settings field holding the retention (None: a row goes as soon as `column` passes).
    retention_setting: str | None = None
    #: Seconds per unit of that setting (DAY_SECONDS for `*_DAYS`).
    retention_unit: float = 1.0
    #: Oldest first (`ORDER BY column`, each batch after the last): needs an index on it.
    ordered: bool = True
    #: A writer of its own instead of the generic DELETE (mnw_jobs: the ledger).
    delete: BatchDelete | None = None

    def retention_seconds(self, settings: Settings) -> float:
        if self.retention_setting is None:
            return 0.0
        return float(getattr(settings, self.retention_setting)) * self.retention_unit

    @property
    def variable(self) -> str | None:
        """The environment variable of its retention, for operators."""
        return self.retention_setting.upper() if self.retention_setting else None


def _prune_jobs(
    connection: Connection, cutoff: dt.datetime, after: dt.datetime | None, limit: int
) -> Batch:
    deleted, last = ledger.prune_finished(connection, before=cutoff, after=after, limit=limit)
    return Batch(deleted, last)


TARGETS: tuple[Target, ...] = (
    Target(
        name="session_tokens",
        table="session_tokens",
        column="expires_at",
        description="expired session tokens",
    ),
    Target(
        name="sessions",
        table="sessions",
        column="expires",
        description="expired NextAuth sessions",
    ),
    Target(
        name="verification_tokens",
        table="verification_tokens",
        column="expires",
        description="expired NextAuth verification tokens",
        # No primary key (ctid serves) and no index on `expires`: the backend's table, tiny
        # (email sign-in links), so no ORDER BY: a batch's scan stops at its LIMIT.
        ordered=False,
    ),
    Target(
        name="rate_limits",
        table="rate_limits",
        column="window_start",
        description="rate-limit windows older than the longest window",
        retention_setting="rate_limit_max_window_seconds",
    ),
    Target(
        name="error_logs",
        table="error_logs",
        column="created_at",
        description="error log rows older than the retention",
        retention_setting="error_log_retention_days",
        retention_unit=DAY_SECONDS,
    ),
    Target(
        name="jobs",
        table="mnw_jobs",
        column="finished_at",
        description="finished job ledger rows older than the retention",
        retention_setting="job_retention_days",
        retention_unit=DAY_SECONDS,
        delete=_prune_jobs,
    ),
    Target(
        name="health_checks",
        table="mnw_health_checks",
        column="checked_at",
        description="service health check history older than the longest uptime window",
        retention_setting="health_history_days",
        retention_unit=DAY_SECONDS,
    ),
    Target(
        name="notifications",
        table="mnw_notifications",
        column="created_at",
        description="notification delivery records older than the health history",
        retention_setting="health_history_days",
        retention_unit=DAY_SECONDS,
        # One row per transition, finished download or dead job: a small table, so no index
        # on created_at and no ORDER BY (a batch's scan stops at its LIMIT).
        ordered=False,
    ),
)
TARGETS_BY_NAME: dict[str, Target] = {target.name: target for target in TARGETS}
TARGET_NAMES: tuple[str, ...] = tuple(TARGETS_BY_NAME)


@dataclass
class TargetReport:
    """What one run did to one target."""

    name: str
    cutoff: dt.datetime | None = None
    deleted: int = 0
    batches: int = 0
    #: True once a batch found fewer rows than it asked for: the pass reached the cut-off
    #: (rows other transactions held, or that turned up behind the pass, wait for the next).
    complete: bool = False
    timeouts: int = 0
    #: Batches that met a row held by another transaction (and were redone skipping it).
    lock_waits: int = 0
    longest_statement_ms: float = 0.0
    batch_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "batches": self.batches,
            "complete": self.complete,
            "timeouts": self.timeouts,
            "lock_waits": self.lock_waits,
            "longest_statement_ms": round(self.longest_statement_ms, 1),
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
        }


#: Called after every batch (and before the next): report progress, raise to stop.
BatchHook = Callable[[TargetReport], None]


@dataclass
class BatchSizer:
    """Rows per batch, adapted to the measured statement time."""

    target_seconds: float
    minimum: int
    maximum: int
    size: int = field(default=INITIAL_BATCH_ROWS)

    @classmethod
    def from_settings(cls, settings: Settings) -> BatchSizer:
        minimum, maximum = settings.cleanup_batch_min_rows, settings.cleanup_batch_max_rows
        return cls(
            target_seconds=settings.cleanup_batch_target_ms / 1000,
            minimum=minimum,
            maximum=maximum,
            size=min(maximum, max(minimum, INITIAL_BATCH_ROWS)),
        )

    def adapt(self, rows: int, seconds: float) -> None:
        """A batch of `rows` took `seconds`: size the next one to take the target time."""
        factor = MAX_STEP if seconds <= 0 else self.target_seconds / seconds
        factor = min(MAX_STEP, max(1 / MAX_STEP, factor))
        self.size = self._bounded(rows * factor)

    def shrink(self) -> None:
        """A batch hit its timeout: much smaller next time."""
        self.size = self._bounded(self.size / 4)

    def _bounded(self, rows: float) -> int:
        return int(min(self.maximum, max(self.minimum, rows)))


def delete_statement(target: Target) -> str:
    """The generic batch DELETE of a target (bind parameters :cutoff, :after and :limit)."""
    table, column = f'"{target.table}"', f'"{target.column}"'
    past = f"{column} < :cutoff"
    pick = f"SELECT ctid FROM {table} WHERE {past}"
    if target.ordered:
        pick += (
            f" AND {column} >= COALESCE(CAST(:after AS timestamp), '-infinity') ORDER BY {column}"
        )
    return (
        f"WITH gone AS (DELETE FROM {table}"
        f" WHERE ctid = ANY(ARRAY({pick} LIMIT :limit FOR UPDATE SKIP LOCKED)) AND {past}"
        f" RETURNING {column})"
        f" SELECT count(*), max({column}) FROM gone"
    )


def range_statements(target: Target) -> tuple[str, str]:
    """An ordered target's range batches: (the bounds probe, the DELETE of [:after, :until)).

    The probe walks the index from :after in steps of :limit rows, up to :steps of them:
    each bound is the `column` value of the row just past the step (an index-only scan,
    no writes). The DELETE is a plain range DELETE on the index, row for row as cheap as
    one DELETE of everything.
    """
    table, column = f'"{target.table}"', f'"{target.column}"'
    start = f"{column} >= COALESCE(CAST(:after AS timestamp), '-infinity')"
    probe = (
        "WITH RECURSIVE bound(at, step) AS ("
        f" SELECT (SELECT {column} FROM {table} WHERE {start} AND {column} < :cutoff"
        f" ORDER BY {column} OFFSET :limit LIMIT 1), 1"
        " UNION ALL"
        f" SELECT (SELECT {column} FROM {table} WHERE {column} >= bound.at"
        f" AND {column} < :cutoff ORDER BY {column} OFFSET :limit LIMIT 1), step + 1"
        " FROM bound WHERE bound.at IS NOT NULL AND step < :steps)"
        " SELECT at FROM bound ORDER BY step"
    )
    delete = f"DELETE FROM {table} WHERE {start} AND {column} < :until AND {column} < :cutoff"
    return probe, delete


def _generic_delete(target: Target) -> BatchDelete:
    statement = text(delete_statement(target))

    def skip_locked(
        connection: Connection, cutoff: dt.datetime, after: dt.datetime | None, limit: int
    ) -> Batch:
        row = connection.execute(
            statement, {"cutoff": cutoff, "after": after, "limit": limit}
        ).one()
        return Batch(deleted=row[0], last=row[1])

    return skip_locked


#: Bounds one probe of a range target looks ahead (its batches then need none).
RANGE_PROBE_STEPS = 8


def _range_delete(target: Target) -> BatchDelete:
    probe_sql, range_sql = range_statements(target)
    probe, ranged = text(probe_sql), text(range_sql)
    skip_locked = _generic_delete(target)
    #: The next batches' upper bounds, oldest first; None: the cut-off (the pass ends).
    ahead: list[dt.datetime | None] = []

    def delete(
        connection: Connection, cutoff: dt.datetime, after: dt.datetime | None, limit: int
    ) -> Batch:
        if not ahead:
            ahead.extend(
                connection.execute(
                    probe,
                    {"cutoff": cutoff, "after": after, "limit": limit, "steps": RANGE_PROBE_STEPS},
                ).scalars()
            )
        until = ahead.pop(0)
        bound = cutoff if until is None else until
        deleted = 0
        if after is None or bound > after:
            try:
                deleted = connection.execute(
                    ranged, {"cutoff": cutoff, "after": after, "until": bound}
                ).rowcount
            except Exception:
                ahead.clear()  # the batch is redone from `after`, sized anew
                raise
        if deleted == 0 and until is not None:
            # More than a batch of rows share one value (the first from `after` on): no
            # range splits them; these go oldest first, :limit of them, as locked rows do.
            ahead.clear()
            return skip_locked(connection, cutoff, after, limit)
        # The next batch starts at `until` (rows equal to it are left for it), or at the
        # cut-off: this one reached it, and finished the pass unless it came out full.
        return Batch(deleted=deleted, last=bound, done=False if until is not None else None)

    return delete


_CUTOFF = text(
    "SELECT COALESCE(CAST(:now AS timestamp), timezone('UTC', now()))"
    " - make_interval(secs => :retention)"
)
_BOUNDS = text(
    "SELECT set_config('lock_timeout', :lock, true), set_config('statement_timeout', :stmt, true)"
)


def cutoff_for(
    engine: Engine, target: Target, settings: Settings, now: dt.datetime | None = None
) -> dt.datetime:
    """Rows of `target` whose column is older than this are past their time (naive UTC).

    From the database clock; `now` (naive UTC) pins "now" instead (tests of the boundaries).
    """
    with engine.connect() as connection:
        cutoff: dt.datetime = connection.execute(
            _CUTOFF, {"now": now, "retention": target.retention_seconds(settings)}
        ).scalar_one()
    return cutoff


def _one_batch(
    engine: Engine,
    delete: BatchDelete,
    *,
    cutoff: dt.datetime,
    after: dt.datetime | None,
    limit: int,
    settings: Settings,
) -> tuple[Batch, float]:
    """Delete one batch in its own transaction: (what it deleted, seconds the DELETE took)."""
    with engine.begin() as connection:
        connection.execute(
            _BOUNDS,
            {
                "lock": f"{settings.cleanup_lock_timeout_ms}ms",
                "stmt": f"{settings.cleanup_statement_timeout_ms}ms",
            },
        )
        started = time.perf_counter()
        batch = delete(connection, cutoff, after, limit)
        return batch, time.perf_counter() - started


def _is_timeout(error: OperationalError) -> bool:
    return getattr(error.orig, "pgcode", None) in _TIMEOUT_CODES


def _is_lock_timeout(error: OperationalError) -> bool:
    return getattr(error.orig, "pgcode", None) == _LOCK_NOT_AVAILABLE


def _deletes(target: Target) -> tuple[BatchDelete, BatchDelete | None]:
    """A target's batch delete, and the one that retries a batch that met a locked row."""
    if target.delete is not None:
        return target.delete, None
    if not target.ordered:
        return _generic_delete(target), None
    return _range_delete(target), _generic_delete(target)


def clean_target(
    target: Target,
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
    now: dt.datetime | None = None,
    on_batch: BatchHook | None = None,
    deadline: float | None = None,
) -> TargetReport:
    """Delete `target`'s rows past their time, batch after batch, until none is left.

    Stops early (report `complete` False) at `deadline` (a time.monotonic() value). Raises
    CleanupStalledError when MAX_CONSECUTIVE_TIMEOUTS batches in a row hit their bounds.
    """
    settings = settings or get_settings()
    engine = engine or get_engine()
    delete, on_lock = _deletes(target)
    cutoff = cutoff_for(engine, target, settings, now)
    report = TargetReport(name=target.name, cutoff=cutoff)
    sizer = BatchSizer.from_settings(settings)
    consecutive_timeouts = 0
    after: dt.datetime | None = None
    while deadline is None or time.monotonic() < deadline:
        limit = sizer.size
        report.batch_rows = limit
        try:
            try:
                batch, seconds = _one_batch(
                    engine, delete, cutoff=cutoff, after=after, limit=limit, settings=settings
                )
            except OperationalError as exc:
                if on_lock is None or not _is_lock_timeout(exc):
                    raise
                # A row of the range is held by another transaction: this batch again,
                # in its own transaction, passing over the rows held.
                report.lock_waits += 1
                log.info("cleanup %s: a row is locked; this batch skips locked rows", target.name)
                batch, seconds = _one_batch(
                    engine, on_lock, cutoff=cutoff, after=after, limit=limit, settings=settings
                )
        except OperationalError as exc:
            if not _is_timeout(exc):
                raise
            report.timeouts += 1
            consecutive_timeouts += 1
            log.warning("cleanup %s: a batch of %d rows timed out", target.name, limit)
            if consecutive_timeouts >= MAX_CONSECUTIVE_TIMEOUTS:
                raise CleanupStalledError(
                    f"cleanup of {target.name}: {consecutive_timeouts} batches in a row hit"
                    " their lock or statement timeout"
                ) from None
            sizer.shrink()
            continue
        consecutive_timeouts = 0
        report.deleted += batch.deleted
        report.batches += 1
        report.longest_statement_ms = max(report.longest_statement_ms, seconds * 1000)
        report.complete = batch.deleted < limit if batch.done is None else batch.done
        if on_batch is not None:
            on_batch(report)
        if report.complete:
            break
        after = batch.last if target.ordered else None
        sizer.adapt(limit, seconds)
    return report


def run_cleanup(
    names: Sequence[str] = TARGET_NAMES,
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
    now: dt.datetime | None = None,
    on_batch: BatchHook | None = None,
) -> list[TargetReport]:
    """Clean the named targets in turn, within CLEANUP_RUN_BUDGET_SECONDS in all."""
    settings = settings or get_settings()
    unknown = [name for name in names if name not in TARGETS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown cleanup target {unknown[0]!r}; known: {', '.join(TARGET_NAMES)}")
    deadline = time.monotonic() + settings.cleanup_run_budget_seconds
    return [
        clean_target(
            TARGETS_BY_NAME[name],
            settings=settings,
            engine=engine,
            now=now,
            on_batch=on_batch,
            deadline=deadline,
        )
        for name in names
    ]


def summary(reports: Sequence[TargetReport]) -> dict[str, Any]:
    """A run's result for the ledger: per-target counts, the total, and whether all is done."""
    return {
        "deleted": sum(report.deleted for report in reports),
        "complete": all(report.complete for report in reports),
        "targets": {report.name: report.as_dict() for report in reports},
    }
