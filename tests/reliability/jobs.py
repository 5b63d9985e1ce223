"""The job kinds the reliability scenarios put in flight (JOB_CATALOG tests.reliability.catalog).

Every execution is a row of `rel_runs` (job, attempt, worker pid, database backend pid). The
effect is a row of `rel_effects` written the way an ordinary job makes its effect idempotent:
look for it, then write it, in one transaction. The table has *no* unique constraint on
purpose: a job that re-runs after its first execution (killed, lost, retried) finds its effect
and adds nothing, but two executions of one job running at the same time (what the platform
must never allow) both write it, and the checker counts a duplicate effect.

`batch` rows of `rel_batch` are written in one transaction, `sleep` seconds spread between
them: a fault in the middle must leave none of them (the checker counts partial batches).
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, Field
from sqlalchemy import text

from medianest_workers.db.session import get_engine
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.errors import PermanentError, RetryableError
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import RetryPolicy

#: Enough attempts for a flaky job (one planned failure) to also survive a fault or two.
RETRY = RetryPolicy(max_attempts=5, backoff_base_seconds=0.2, backoff_max_seconds=1.0)

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS rel_runs (job_id text NOT NULL, attempt int NOT NULL,
    pid int NOT NULL, backend_pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS rel_effects (job_id text NOT NULL, attempt int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS rel_batch (job_id text NOT NULL, attempt int NOT NULL, n int NOT NULL);
"""


class Work(BaseModel):
    model_config = {"extra": "forbid"}

    #: Seconds the job takes (between its run row and its effect).
    sleep: float = Field(default=0.0, ge=0, le=120)
    #: The first `fail_times` attempts raise a RetryableError before the effect.
    fail_times: int = Field(default=0, ge=0, le=10)
    #: Fail with a PermanentError (no effect): a job that ends `failed`.
    broken: bool = False
    #: Rows written to rel_batch in the effect's transaction.
    batch: int = Field(default=0, ge=0, le=1000)
    #: Sleep inside the database (`pg_sleep`) rather than in Python.
    sleep_in_database: bool = False


def _record_run(ctx: JobContext) -> None:
    with get_engine().begin() as connection:
        connection.execute(
            text(
                "INSERT INTO rel_runs (job_id, attempt, pid, backend_pid)"
                " VALUES (:id, :attempt, :pid, pg_backend_pid())"
            ),
            {"id": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid()},
        )


def _apply_effect(ctx: JobContext, payload: Work) -> None:
    with get_engine().begin() as connection:
        done = connection.execute(
            text("SELECT count(*) FROM rel_effects WHERE job_id = :id"), {"id": ctx.job_id}
        ).scalar_one()
        if payload.sleep_in_database:
            connection.execute(text("SELECT pg_sleep(:s)"), {"s": payload.sleep})
        for n in range(payload.batch):
            connection.execute(
                text("INSERT INTO rel_batch (job_id, attempt, n) VALUES (:id, :attempt, :n)"),
                {"id": ctx.job_id, "attempt": ctx.attempt, "n": n},
            )
            if payload.sleep and not payload.sleep_in_database:
                time.sleep(payload.sleep / payload.batch)
        if not done:
            connection.execute(
                text("INSERT INTO rel_effects (job_id, attempt) VALUES (:id, :attempt)"),
                {"id": ctx.job_id, "attempt": ctx.attempt},
            )


def work(ctx: JobContext, payload: Work) -> dict[str, int]:
    """Record the run, take `sleep` seconds, fail as asked, else apply the effect once."""
    _record_run(ctx)
    if payload.broken:
        raise PermanentError("the peer answered with a document that cannot be parsed")
    if ctx.attempt <= payload.fail_times:
        raise RetryableError(f"planned transient failure on attempt {ctx.attempt}")
    if payload.sleep and not payload.batch and not payload.sleep_in_database:
        time.sleep(payload.sleep)
    _apply_effect(ctx, payload)
    return {"attempt": ctx.attempt}


#: Bounds that fit a visibility timeout of 60 s (test_countdown.py).
BOUNDS = {"soft_time_limit": 30.0, "time_limit": 45.0}
job("reliability.work", queue=Queue.MEDIA, payload=Work, retry=RETRY, **BOUNDS)(work)
job("reliability.work_health", queue=Queue.HEALTH, payload=Work, retry=RETRY, **BOUNDS)(work)
#: A job whose soft limit (4 s) ends it well before its hard limit (20 s).
job(
    "reliability.bounded",
    queue=Queue.MEDIA,
    payload=Work,
    retry=RETRY,
    soft_time_limit=4,
    time_limit=20,
)(work)
