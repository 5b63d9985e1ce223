"""The job ledger (mnw_jobs): the only writer of a job's state.

Insert, claim, finish, retry, cancel, expire, re-queue, rescue and dead are all here, each a
conditional UPDATE (or INSERT); other modules read the ledger (queries.py, metrics.py) but
never write it. Every timestamp comes from the database clock (`NOW_UTC`), so that every
process agrees on "stale" and "expired". A state change commits in one transaction with what
records it: the error_logs row of a job that ends `failed` or `dead` (error_log.py). Writers
on the hot path (claim, finish) are one statement each.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2.extras import Json
from sqlalchemy import Connection, Float, Row, bindparam, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert

from medianest_workers.db.job_states import KEY_HOLDING_STATES, TERMINAL_STATES, JobState
from medianest_workers.db.models.jobs import KEY_HOLDING_PREDICATE, Job
from medianest_workers.db.session import execute_autocommit, get_engine
from medianest_workers.platform import events
from medianest_workers.platform.error_log import JobFailure, insert_job_errors
from medianest_workers.platform.errors import (
    IdempotencyContentionError,
    JobFinishedError,
    JobNotFoundError,
)
from medianest_workers.platform.queries import (
    VIEW_COLUMNS,
    JobView,
    get_job,
    storable,
    view_of_row,
)
from medianest_workers.platform.registry import load_job_modules

log = logging.getLogger(__name__)

NOW_UTC = "timezone('UTC', now())"
_NOW = literal_column(NOW_UTC)
#: insert_jobs retries rows whose key holder vanished at most this many times.
MAX_INSERT_ROUNDS = 3
MAX_ERROR_MESSAGE = 2000


def worker_identity() -> str:
    """hostname:pid of this process, stored on the rows it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_local_process_gone(worker: str | None) -> bool:
    """True when `worker` names a process on this host that no longer exists."""
    if not worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --- enqueue -----------------------------------------------------------------------------


#: One cached statement; executemany turns it into multi-row INSERTs ("insertmanyvalues").
#: Each row gives `expires_in` (seconds, or None); the times are the database's.
_INSERT_JOBS = (
    insert(Job)
    .values(
        enqueued_at=_NOW,
        published_at=_NOW,  # set to NULL again if the publish fails
        expires_at=_NOW + bindparam("expires_in", type_=Float) * literal_column("interval '1 s'"),
    )
    .on_conflict_do_nothing(
        index_elements=["idempotency_key"], index_where=text(KEY_HOLDING_PREDICATE)
    )
    .returning(Job.id, Job.enqueued_at, Job.published_at, Job.expires_at)
)


@dataclass(frozen=True)
class Inserted:
    #: {requested id: id of the job that holds the row's key (the row's own id if inserted)}.
    holders: dict[str, str]
    #: {inserted id: the row's database-clock columns (enqueued_at, published_at, expires_at)}.
    times: dict[str, dict[str, Any]]


def insert_jobs(connection: Connection, rows: Sequence[dict[str, Any]]) -> Inserted:
    """Insert job rows (each with `expires_in`, without times); who holds each row's key.

    A row whose idempotency key is held by a queued, running or succeeded job is not
    inserted: its entry maps to that job's id. Should the holder give the key up (fail,
    die, be cancelled) between the two statements, the row is inserted after all.
    """
    mapping: dict[str, str] = {}
    times: dict[str, dict[str, Any]] = {}
    pending = list(rows)
    for _ in range(MAX_INSERT_ROUNDS):
        if not pending:
            return Inserted(mapping, times)
        for row in connection.execute(_INSERT_JOBS, pending).mappings():
            times[row["id"]] = {name: row[name] for name in _TIMES}
        inserted = set(times)
        mapping.update({row["id"]: row["id"] for row in pending if row["id"] in inserted})
        missing = {row["idempotency_key"]: row for row in pending if row["id"] not in inserted}
        if not missing:
            return Inserted(mapping, times)
        holders = connection.execute(
            select(Job.idempotency_key, Job.id).where(
                Job.idempotency_key.in_(list(missing)),
                Job.state.in_([state.value for state in KEY_HOLDING_STATES]),
            )
        )
        for key, job_id in holders:
            mapping[missing.pop(key)["id"]] = job_id
        pending = list(missing.values())
    raise IdempotencyContentionError("idempotency keys kept changing hands; try again")


_TIMES = ("enqueued_at", "published_at", "expires_at")


def mark_unpublished(job_ids: Iterable[str]) -> None:
    """The broker refused these jobs' messages: the rescuer publishes them first."""
    ids = list(job_ids)
    if not ids:
        return
    with get_engine().begin() as connection:
        connection.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.state == JobState.QUEUED.value)
            .values(published_at=None)
        )


# --- worker side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    correlation_id: str
    user_id: str | None
    enqueued_by: str
    cancel_requested: bool


@dataclass(frozen=True)
class Skip:
    """Nothing to run: the job is finished, unknown or expired."""

    reason: str
    #: The job was cancelled (or expired) before it started.
    cancelled: bool = False


@dataclass(frozen=True)
class Dead:
    """Nothing to run: this claim found the job's attempts used up and marked it `dead`
    (its error_logs row written in the same transaction)."""


@dataclass(frozen=True)
class Defer:
    """Another live worker may be running this job: look again after `seconds`."""

    seconds: float


_CLAIM_COLUMNS = (
    "kind, payload, attempts, max_attempts, correlation_id, user_id, enqueued_by, cancel_requested"
)

#: One query in autocommit (psycopg2 parameters, `execute_autocommit`): PostgreSQL runs the
#: two statements as one implicit transaction, whose commit does not wait for the WAL flush
#: (see `claim`).
_CLAIM_QUEUED = f"""
    SET LOCAL synchronous_commit = off;
    UPDATE mnw_jobs SET state = 'running', attempts = attempts + 1, started_at = {NOW_UTC},
        heartbeat_at = {NOW_UTC}, worker = %(worker)s, finished_at = NULL
    WHERE id = %(id)s AND state = 'queued' AND (expires_at IS NULL OR expires_at > {NOW_UTC})
    RETURNING {_CLAIM_COLUMNS}
    """

_CLAIM_ABANDONED = text(
    f"""
    UPDATE mnw_jobs SET attempts = attempts + 1, started_at = {NOW_UTC},
        heartbeat_at = {NOW_UTC}, worker = :worker
    WHERE id = :id AND state = 'running' AND worker IS NOT DISTINCT FROM :previous
    RETURNING {_CLAIM_COLUMNS}
    """
)

_LOOK = text(
    f"""
    SELECT state, worker,
        heartbeat_at < {NOW_UTC} - make_interval(secs => :stale) AS stale,
        expires_at <= {NOW_UTC} AS expired, started_at IS NULL AS never_started
    FROM mnw_jobs WHERE id = :id
    """
)

_EXPIRE = text(
    f"""
    UPDATE mnw_jobs SET state = 'cancelled', finished_at = {NOW_UTC}, error_class = 'Expired',
        error_message = 'not started before it expired'
    WHERE id = ANY(:ids) AND state = 'queued' AND expires_at <= {NOW_UTC}
    """
)

#: What a job that never finished in any of its attempts records as its error.
DEAD_ERROR_CLASS = "AttemptsExhausted"
DEAD_MESSAGE = "attempts used up; the worker was killed or lost each time"

_MARK_DEAD = text(
    f"""
    UPDATE mnw_jobs SET state = 'dead', finished_at = {NOW_UTC}, worker = NULL,
        heartbeat_at = NULL, error_class = '{DEAD_ERROR_CLASS}', error_message = '{DEAD_MESSAGE}'
    WHERE id = ANY(:ids) AND state = 'running'
    RETURNING id, kind, correlation_id, user_id, LEAST(attempts, max_attempts) AS attempts
    """
)


@dataclass(frozen=True)
class DeadJob:
    """A job the ledger just marked `dead`: what its announcement carries."""

    job_id: str
    kind: str
    attempts: int


def mark_dead(connection: Connection, job_ids: Sequence[str]) -> list[str]:
    """End running jobs whose attempts are used up as `dead`, with their error_logs rows.

    In `connection`'s transaction: the state and its record commit together. Returns the ids
    that changed.
    """
    return [dead.job_id for dead in mark_dead_jobs(connection, job_ids)]


def mark_dead_jobs(connection: Connection, job_ids: Sequence[str]) -> list[DeadJob]:
    """`mark_dead`, returning what `announce_dead` needs about each job that changed."""
    if not job_ids:
        return []
    rows = connection.execute(_MARK_DEAD, {"ids": list(job_ids)}).all()
    insert_job_errors(
        connection,
        [
            JobFailure(
                job_id=row.id,
                kind=row.kind,
                correlation_id=row.correlation_id,
                user_id=row.user_id,
                attempts=row.attempts,
                error_class=DEAD_ERROR_CLASS,
                error_message=DEAD_MESSAGE,
            )
            for row in rows
        ],
    )
    return [DeadJob(job_id=row.id, kind=row.kind, attempts=row.attempts) for row in rows]


#: The announcement of a job that went `dead` (platform/events.py).
JOB_DEAD_EVENT = "job.dead"


def announce_dead(dead: Sequence[DeadJob]) -> None:
    """Emit `job.dead` for each job, once the transaction that marked it has committed.

    Never raises: a listener (or the catalog it subscribes from) failing must not break the
    ledger's caller. The job modules are loaded first so that their listeners are subscribed
    in whatever process marked the job (a worker, or beat's rescuer).
    """
    if not dead:
        return
    try:
        load_job_modules()
    except Exception:
        log.exception("job.dead: the job catalog did not load; announcing to whoever listens")
    for job in dead:
        try:
            events.emit(
                events.Event(
                    name=JOB_DEAD_EVENT,
                    subject=f"job:{job.job_id}",
                    summary=f"job {job.job_id} ({job.kind}) is dead after {job.attempts} attempts",
                    dedup_key=f"job.dead:{job.job_id}",
                    fields={"job_id": job.job_id, "kind": job.kind, "attempts": job.attempts},
                )
            )
        except Exception:
            log.exception("job.dead: announcing job %s failed", job.job_id)


def claim(job_id: str, *, worker: str, stale_seconds: float) -> Claimed | Skip | Dead | Defer:
    """Move the job to `running` for this worker, or say why it must not run here.

    The common case, a queued job, is one autocommitted statement (one round trip); anything
    else (expired, cancelled, held by another worker, lost, out of attempts) is looked at in
    a transaction.

    That statement's commit does not wait for its WAL to reach the disk (synchronous_commit
    off for it alone): the WAL is flushed in order, so the attempt's end (`finish`, a retry,
    a cancellation: synchronous commits) makes its claim durable too. What a crash of the
    database server can forget is the claim of a job still running then (its last ~0.6 s of
    claims): that job's end is refused as "taken over", and the rescuer runs it again, as it
    runs again any job a crash interrupted. No job is lost and no finished job is forgotten.
    """
    rows = execute_autocommit(_CLAIM_QUEUED, {"id": job_id, "worker": worker})
    if rows and rows[0].attempts <= rows[0].max_attempts:
        return _claimed(rows[0])
    dead: list[DeadJob] = []
    with get_engine().begin() as connection:
        if rows:  # ours now, and out of attempts
            row = rows[0]
        else:
            taken_over = _take_over(connection, job_id, worker, stale_seconds)
            if not isinstance(taken_over, Row):
                return taken_over
            row = taken_over
        if row.attempts > row.max_attempts:
            dead = mark_dead_jobs(connection, [job_id])
    if row.attempts > row.max_attempts:
        announce_dead(dead)  # after the commit
        return Dead()
    return _claimed(row)


def _claimed(row: Row[Any]) -> Claimed:
    return Claimed(
        kind=row.kind,
        payload=row.payload,
        attempt=row.attempts,
        max_attempts=row.max_attempts,
        correlation_id=row.correlation_id,
        user_id=row.user_id,
        enqueued_by=row.enqueued_by,
        cancel_requested=row.cancel_requested,
    )


def _take_over(
    connection: Connection, job_id: str, worker: str, stale_seconds: float
) -> Row[Any] | Skip | Defer:
    """The job is not simply queued: expire it, skip it, wait, or take it from a lost worker."""
    look = connection.execute(_LOOK, {"id": job_id, "stale": stale_seconds}).one_or_none()
    if look is None:
        return Skip("no such job in the ledger")
    if look.state == JobState.QUEUED.value and look.expired:
        connection.execute(_EXPIRE, {"ids": [job_id]})
        return Skip("expired before it started", cancelled=True)
    if look.state == JobState.CANCELLED.value and look.never_started:
        return Skip("cancelled before it started", cancelled=True)
    if look.state != JobState.RUNNING.value:
        return Skip(f"job is {look.state}")
    if not (look.stale or is_local_process_gone(look.worker)):
        return Defer(stale_seconds)
    row = connection.execute(
        _CLAIM_ABANDONED, {"id": job_id, "worker": worker, "previous": look.worker}
    ).one_or_none()
    return Skip("another worker took the job over") if row is None else row


_FINISH_SET = f"""
    UPDATE mnw_jobs SET state = :state, finished_at = {NOW_UTC}, heartbeat_at = NULL,
        result = :result, error_class = :error_class, error_message = :error_message
    WHERE id = :id AND state = 'running' AND worker = :worker
    RETURNING kind, correlation_id, user_id, attempts
    """
_FINISH = text(_FINISH_SET).bindparams(bindparam("result", type_=JSONB))
#: The same, for `execute_autocommit` (psycopg2 parameters).
_FINISH_AUTOCOMMIT = re.sub(r":(\w+)", r"%(\1)s", _FINISH_SET)


def finish(
    job_id: str,
    *,
    worker: str,
    state: JobState,
    result: dict[str, Any] | None = None,
    error: BaseException | None = None,
) -> bool:
    """Record the end of this worker's attempt; False if the job was taken from it meanwhile.

    A job that ends `failed` gets its error_logs row in the same transaction.
    """
    error_class, error_message = describe_error(error)
    params = {
        "id": job_id,
        "worker": worker,
        "state": state.value,
        "result": result,
        "error_class": error_class,
        "error_message": error_message,
    }
    if state != JobState.FAILED:  # nothing else to write: one autocommitted statement
        stored = None if result is None else Json(result)
        return bool(execute_autocommit(_FINISH_AUTOCOMMIT, {**params, "result": stored}))
    with get_engine().begin() as connection:
        row = connection.execute(_FINISH, params).one_or_none()
        if row is not None:
            failure = JobFailure(
                job_id=job_id,
                kind=row.kind,
                correlation_id=row.correlation_id,
                user_id=row.user_id,
                attempts=row.attempts,
                error_class=error_class or "Error",
                error_message=error_message or "",
                error=error,
            )
            insert_job_errors(connection, [failure])
    return row is not None


_REQUEUE = text(
    f"""
    UPDATE mnw_jobs SET state = 'queued', worker = NULL, heartbeat_at = NULL,
        published_at = {NOW_UTC} + make_interval(secs => :delay),
        error_class = :error_class, error_message = :error_message
    WHERE id = :id AND state = 'running' AND worker = :worker
    """
)


def expire(connection: Connection, job_ids: Sequence[str]) -> None:
    """End queued jobs past their expiry as `cancelled` (error class `Expired`)."""
    if job_ids:
        connection.execute(_EXPIRE, {"ids": list(job_ids)})


def requeue_for_retry(job_id: str, *, worker: str, error: BaseException, delay: float) -> bool:
    """Back to `queued` with the error recorded; its message is due in `delay` seconds."""
    error_class, error_message = describe_error(error)
    with get_engine().begin() as connection:
        changed = connection.execute(
            _REQUEUE,
            {
                "id": job_id,
                "worker": worker,
                "delay": delay,
                "error_class": error_class,
                "error_message": error_message,
            },
        ).rowcount
    return bool(changed)


_HEARTBEAT = text(
    f"""
    UPDATE mnw_jobs SET heartbeat_at = {NOW_UTC}
    WHERE id = ANY(:ids) AND state = 'running' AND worker = :worker
    RETURNING id, cancel_requested
    """
)


def heartbeat(job_ids: Sequence[str], *, worker: str) -> dict[str, bool]:
    """Refresh the heartbeat of this worker's running jobs: {id: cancel requested}."""
    with get_engine().begin() as connection:
        rows = connection.execute(_HEARTBEAT, {"ids": list(job_ids), "worker": worker})
        return {row.id: row.cancel_requested for row in rows}


def set_progress(job_id: str, progress: dict[str, Any]) -> None:
    """Record a running job's progress (small JSON)."""
    with get_engine().begin() as connection:
        connection.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING.value)
            .values(progress=progress)
        )


# --- cancel --------------------------------------------------------------------------------

#: The error message of a job cancelled before a worker took it.
CANCELLED_WHILE_QUEUED = "cancelled before it started"

_CANCEL = text(
    f"""
    UPDATE mnw_jobs SET cancel_requested = true,
        state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
        finished_at = CASE WHEN state = 'queued' THEN {NOW_UTC} ELSE finished_at END,
        error_class = CASE WHEN state = 'queued' THEN 'JobCancelledError' ELSE error_class END,
        error_message = CASE WHEN state = 'queued' THEN :message ELSE error_message END
    WHERE id = :id AND state IN ('queued', 'running')
    RETURNING {", ".join(column.name for column in VIEW_COLUMNS)}
    """
)


@dataclass(frozen=True)
class Cancelled:
    job: JobView
    #: True: the job was queued and is now `cancelled`. False: it is running and will stop
    #: at its next `check_cancelled()` (the worker's heartbeat relays the request).
    immediate: bool


def cancel(job_id: str) -> Cancelled:
    """Cancel a queued job at once, or ask a running one to stop.

    One conditional UPDATE: a worker's claim (`WHERE state = 'queued'`) then skips a cancelled
    job. Raises JobNotFoundError, or JobFinishedError for a job already in a terminal state.
    """
    if not storable(job_id):
        raise JobNotFoundError(job_id)
    with get_engine().begin() as connection:
        row = (
            connection.execute(_CANCEL, {"id": job_id, "message": CANCELLED_WHILE_QUEUED})
            .mappings()
            .one_or_none()
        )
        if row is not None:
            job = view_of_row(row)
            return Cancelled(job=job, immediate=job.state == JobState.CANCELLED.value)
        current = get_job(job_id, connection=connection)
    if current is None:
        raise JobNotFoundError(job_id)
    raise JobFinishedError(current)


# --- the rescuer's statements --------------------------------------------------------------

_STALE_RUNNING = text(
    f"""
    SELECT id, kind, queue, attempts, max_attempts, correlation_id, worker FROM mnw_jobs
    WHERE state = 'running' AND heartbeat_at < {NOW_UTC} - make_interval(secs => :stale)
    ORDER BY heartbeat_at LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_RUNNING_ON_HOST = text(
    """
    SELECT id, kind, queue, attempts, max_attempts, correlation_id, worker FROM mnw_jobs
    WHERE state = 'running' AND worker LIKE :host_prefix
    ORDER BY heartbeat_at LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_STALE_QUEUED = text(
    f"""
    SELECT id, kind, queue, correlation_id,
        COALESCE(expires_at <= {NOW_UTC}, false) AS expired
    FROM mnw_jobs
    WHERE state = 'queued'
      AND (published_at IS NULL OR published_at < {NOW_UTC} - make_interval(secs => :after))
    ORDER BY published_at NULLS FIRST LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_REQUEUE_LOST = text(
    f"""
    UPDATE mnw_jobs SET state = 'queued', worker = NULL, heartbeat_at = NULL,
        published_at = {NOW_UTC}, error_class = 'WorkerLost',
        error_message = :message
    WHERE id = ANY(:ids) AND state = 'running'
    """
)
_STAMP_PUBLISHED = text(
    f"UPDATE mnw_jobs SET published_at = {NOW_UTC} WHERE id = ANY(:ids) AND state = 'queued'"
)
WORKER_LOST_MESSAGE = "the worker stopped sending heartbeats; the job was queued again"
WORKER_GONE_MESSAGE = "the worker's process is gone; the job was queued again"


def lock_lost_running(connection: Connection, *, stale_after: float, limit: int) -> list[Row[Any]]:
    """Running jobs whose worker is lost, locked for this transaction (SKIP LOCKED).

    Lost: its heartbeat is older than `stale_after`, or its worker is a process of this host
    that no longer exists (a worker that stopped: no need to wait for the heartbeat).
    """
    stale = connection.execute(_STALE_RUNNING, {"stale": stale_after, "limit": limit}).all()
    seen = {row.id for row in stale}
    local = connection.execute(
        _RUNNING_ON_HOST, {"host_prefix": f"{_like_escape(socket.gethostname())}:%", "limit": limit}
    ).all()
    gone = [row for row in local if row.id not in seen and is_local_process_gone(row.worker)]
    return [*stale, *gone][:limit]


def requeue_lost(connection: Connection, rows: Sequence[Row[Any]]) -> None:
    """Lost running jobs back to `queued` (their message is published after the commit)."""
    by_message: dict[str, list[str]] = {WORKER_GONE_MESSAGE: [], WORKER_LOST_MESSAGE: []}
    for row in rows:
        gone = is_local_process_gone(row.worker)
        by_message[WORKER_GONE_MESSAGE if gone else WORKER_LOST_MESSAGE].append(row.id)
    for message, chosen in by_message.items():
        if chosen:
            connection.execute(_REQUEUE_LOST, {"ids": chosen, "message": message})


def lock_unpublished(connection: Connection, *, queued_after: float, limit: int) -> list[Row[Any]]:
    """Queued jobs whose message failed or went out longer ago than `queued_after`, locked."""
    return connection.execute(_STALE_QUEUED, {"after": queued_after, "limit": limit}).all()


def stamp_published(connection: Connection, job_ids: Sequence[str]) -> None:
    """Their message goes out after this transaction commits."""
    if job_ids:
        connection.execute(_STAMP_PUBLISHED, {"ids": list(job_ids)})


_RECORD_RUN = text(
    f"""
    INSERT INTO mnw_jobs (id, kind, queue, payload, state, attempts, max_attempts, result,
        correlation_id, enqueued_by, schedule_name, trigger, enqueued_at, published_at,
        started_at, finished_at)
    VALUES (:id, :kind, :queue, '{{}}'::jsonb, 'succeeded', 1, 1, :result, :correlation_id,
        :enqueued_by, :schedule_name, 'scheduled', {NOW_UTC}, {NOW_UTC}, {NOW_UTC}, {NOW_UTC})
    """
).bindparams(bindparam("result", type_=JSONB))


def record_run(
    connection: Connection,
    *,
    job_id: str,
    kind: str,
    queue: str,
    result: dict[str, Any],
    correlation_id: str,
    enqueued_by: str,
    schedule_name: str,
) -> None:
    """A finished row for work done outside a worker (the rescuer's rounds inside beat),
    in the transaction of that work."""
    connection.execute(
        _RECORD_RUN,
        {
            "id": job_id,
            "kind": kind,
            "queue": queue,
            "result": result,
            "correlation_id": correlation_id,
            "enqueued_by": enqueued_by,
            "schedule_name": schedule_name,
        },
    )


_ADD_TO_RESULT = text(
    "UPDATE mnw_jobs SET result = result || :extra WHERE id = :id AND state = 'succeeded'"
).bindparams(bindparam("extra", type_=JSONB))


def add_to_result(job_id: str, extra: dict[str, Any]) -> None:
    """Merge `extra` into a recorded run's result (what was learnt after its commit)."""
    with get_engine().begin() as connection:
        connection.execute(_ADD_TO_RESULT, {"id": job_id, "extra": extra})


# --- retention -------------------------------------------------------------------------

_FINISHED_LIST = ", ".join(f"'{state}'" for state in sorted(TERMINAL_STATES))
_FINISHED_BEFORE = f"finished_at < :before AND state IN ({_FINISHED_LIST})"
#: One batch, oldest first from `:after` on (mnw_jobs_finished_at_idx), of rows this statement
#: locks (skipping rows another transaction holds) and names by ctid; the condition is checked
#: again on each row as it is deleted. Returns the count and the newest finished_at deleted.
_PRUNE_FINISHED = text(
    f"""
    WITH gone AS (
        DELETE FROM mnw_jobs
        WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM mnw_jobs
            WHERE {_FINISHED_BEFORE}
              AND finished_at >= COALESCE(CAST(:after AS timestamp), '-infinity')
            ORDER BY finished_at
            LIMIT :limit FOR UPDATE SKIP LOCKED
        ))
          AND {_FINISHED_BEFORE}
        RETURNING finished_at
    )
    SELECT count(*), max(finished_at) FROM gone
    """
)


def prune_finished(
    connection: Connection, *, before: dt.datetime, after: dt.datetime | None, limit: int
) -> tuple[int, dt.datetime | None]:
    """Delete at most `limit` finished jobs whose `finished_at` is older than `before`.

    Finished: succeeded, failed, dead or cancelled; queued and running rows are never
    touched. Oldest first, from `after` on (None: from the oldest). `before` is naive UTC,
    taken from the database clock by the caller. In `connection`'s transaction; returns how
    many rows went and the newest `finished_at` among them (where the next batch starts).
    """
    row = connection.execute(
        _PRUNE_FINISHED, {"before": before, "after": after, "limit": limit}
    ).one()
    return row[0], row[1]


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def describe_error(error: BaseException | None) -> tuple[str | None, str | None]:
    """(class name, bounded message) of an error, for the ledger and error_logs."""
    if error is None:
        return None, None
    message = str(error) or repr(error)
    return type(error).__name__, message[:MAX_ERROR_MESSAGE]
