"""Reads and writes of the job ledger (mnw_jobs). Every state change is a conditional UPDATE.

Timestamps come from the database clock (`NOW_UTC`) so that every process agrees on
"stale". Writers on the hot path (claim, finish) are one statement each.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert

from medianest_workers.db.job_states import KEY_HOLDING_STATES, JobState
from medianest_workers.db.models.jobs import KEY_HOLDING_PREDICATE, Job
from medianest_workers.db.session import get_engine
from medianest_workers.platform.errors import IdempotencyContentionError

NOW_UTC = "timezone('UTC', now())"
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
_INSERT_JOBS = (
    insert(Job)
    .on_conflict_do_nothing(
        index_elements=["idempotency_key"], index_where=text(KEY_HOLDING_PREDICATE)
    )
    .returning(Job.id)
)


def insert_jobs(connection: Connection, rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Insert job rows; returns {requested id: id of the job that holds the row's key}.

    A row whose idempotency key is held by a queued, running or succeeded job is not
    inserted: its entry maps to that job's id. Should the holder give the key up (fail,
    die, be cancelled) between the two statements, the row is inserted after all.
    """
    mapping: dict[str, str] = {}
    pending = list(rows)
    for _ in range(MAX_INSERT_ROUNDS):
        if not pending:
            return mapping
        inserted = set(connection.execute(_INSERT_JOBS, pending).scalars())
        mapping.update({row["id"]: row["id"] for row in pending if row["id"] in inserted})
        missing = {row["idempotency_key"]: row for row in pending if row["id"] not in inserted}
        if not missing:
            return mapping
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


@dataclass(frozen=True)
class Dead:
    """Nothing to run: this claim found the job's attempts used up and marked it `dead`."""

    correlation_id: str
    user_id: str | None
    attempts: int


@dataclass(frozen=True)
class Defer:
    """Another live worker may be running this job: look again after `seconds`."""

    seconds: float


_CLAIM_COLUMNS = (
    "kind, payload, attempts, max_attempts, correlation_id, user_id, enqueued_by, cancel_requested"
)

_CLAIM_QUEUED = text(
    f"""
    UPDATE mnw_jobs SET state = 'running', attempts = attempts + 1, started_at = {NOW_UTC},
        heartbeat_at = {NOW_UTC}, worker = :worker, finished_at = NULL
    WHERE id = :id AND state = 'queued' AND (expires_at IS NULL OR expires_at > {NOW_UTC})
    RETURNING {_CLAIM_COLUMNS}
    """
)

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
        expires_at <= {NOW_UTC} AS expired
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
    """
)


def mark_dead(connection: Connection, job_ids: Sequence[str]) -> None:
    """End running jobs whose attempts are used up as `dead`."""
    if job_ids:
        connection.execute(_MARK_DEAD, {"ids": list(job_ids)})


def claim(job_id: str, *, worker: str, stale_seconds: float) -> Claimed | Skip | Dead | Defer:
    """Move the job to `running` for this worker, or say why it must not run here."""
    with get_engine().begin() as connection:
        row = connection.execute(_CLAIM_QUEUED, {"id": job_id, "worker": worker}).one_or_none()
        if row is None:
            taken_over = _take_over(connection, job_id, worker, stale_seconds)
            if not isinstance(taken_over, Row):
                return taken_over
            row = taken_over
        if row.attempts > row.max_attempts:
            mark_dead(connection, [job_id])
            return Dead(
                correlation_id=row.correlation_id,
                user_id=row.user_id,
                attempts=row.max_attempts,
            )
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
        return Skip("expired before it started")
    if look.state != JobState.RUNNING.value:
        return Skip(f"job is {look.state}")
    if not (look.stale or is_local_process_gone(look.worker)):
        return Defer(stale_seconds)
    row = connection.execute(
        _CLAIM_ABANDONED, {"id": job_id, "worker": worker, "previous": look.worker}
    ).one_or_none()
    return Skip("another worker took the job over") if row is None else row


_FINISH = text(
    f"""
    UPDATE mnw_jobs SET state = :state, finished_at = {NOW_UTC}, heartbeat_at = NULL,
        result = :result, error_class = :error_class, error_message = :error_message
    WHERE id = :id AND state = 'running' AND worker = :worker
    """
).bindparams(bindparam("result", type_=JSONB))


def finish(
    job_id: str,
    *,
    worker: str,
    state: JobState,
    result: dict[str, Any] | None = None,
    error: BaseException | None = None,
) -> bool:
    """Record the end of this worker's attempt; False if the job was taken from it meanwhile."""
    error_class, error_message = describe_error(error)
    with get_engine().begin() as connection:
        changed = connection.execute(
            _FINISH,
            {
                "id": job_id,
                "worker": worker,
                "state": state.value,
                "result": result,
                "error_class": error_class,
                "error_message": error_message,
            },
        ).rowcount
    return bool(changed)


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
    with get_engine().begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(progress=progress))


def describe_error(error: BaseException | None) -> tuple[str | None, str | None]:
    """(class name, bounded message) of an error, for the ledger and error_logs."""
    if error is None:
        return None, None
    message = str(error) or repr(error)
    return type(error).__name__, message[:MAX_ERROR_MESSAGE]
