"""Job kinds that exist only in tests (in the JOB_CATALOG tests.platform.sample_catalog).

Each execution is recorded in `test_job_runs` (job id, attempt, pid) and each effect is an
upsert into `test_job_effects` keyed by job id, so tests can count executions and effects.
"""

from __future__ import annotations

import os
import signal
import time

from pydantic import BaseModel, Field
from sqlalchemy import text

from medianest_workers.db.session import get_engine
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.errors import PermanentError, RetryableError
from medianest_workers.platform.jobs import job
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base_seconds=0.1, backoff_max_seconds=0.2)

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS test_job_runs
    (job_id text, attempt int, pid int, at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS test_job_effects
    (job_id text PRIMARY KEY, applied int NOT NULL DEFAULT 1);
"""


class Steps(BaseModel):
    model_config = {"extra": "forbid"}

    sleep: float = Field(default=0.0, ge=0, le=30)
    times: int = Field(default=0, ge=0, le=10)


def _record_run(ctx: JobContext) -> None:
    with get_engine().begin() as connection:
        connection.execute(
            text("INSERT INTO test_job_runs (job_id, attempt, pid) VALUES (:id, :attempt, :pid)"),
            {"id": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid()},
        )


def _apply_effect(ctx: JobContext) -> None:
    with get_engine().begin() as connection:
        connection.execute(
            text(
                "INSERT INTO test_job_effects (job_id) VALUES (:id) ON CONFLICT (job_id) DO NOTHING"
            ),
            {"id": ctx.job_id},
        )


@job("tests.effect", queue=Queue.MEDIA, payload=Steps, retry=FAST_RETRY)
def effect(ctx: JobContext, payload: Steps) -> dict[str, int]:
    """Record the run, sleep, then apply the effect once."""
    _record_run(ctx)
    time.sleep(payload.sleep)
    _apply_effect(ctx)
    return {"attempt": ctx.attempt}


@job("tests.kill_self", queue=Queue.MEDIA, payload=Steps, retry=FAST_RETRY)
def kill_self(ctx: JobContext, payload: Steps) -> None:
    """SIGKILL the worker child on the first `times` attempts (a poison pill when large)."""
    _record_run(ctx)
    if ctx.attempt <= payload.times:
        os.kill(os.getpid(), signal.SIGKILL)
    _apply_effect(ctx)


@job("tests.flaky", queue=Queue.HEALTH, payload=Steps, retry=FAST_RETRY)
def flaky(ctx: JobContext, payload: Steps) -> None:
    """Fail with a retryable error on the first `times` attempts."""
    _record_run(ctx)
    if ctx.attempt <= payload.times:
        raise RetryableError(f"transient failure on attempt {ctx.attempt}")
    _apply_effect(ctx)


@job("tests.broken", queue=Queue.HEALTH, payload=Steps, retry=FAST_RETRY)
def broken(ctx: JobContext, payload: Steps) -> None:
    """Always fail permanently."""
    _record_run(ctx)
    raise PermanentError("upstream answered with a malformed document")


@job("tests.cooperative", queue=Queue.MEDIA, payload=Steps, retry=FAST_RETRY)
def cooperative(ctx: JobContext, payload: Steps) -> None:
    """Loop until cancelled (or `sleep` seconds pass)."""
    _record_run(ctx)
    deadline = time.monotonic() + payload.sleep
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    _apply_effect(ctx)


@job("tests.download_like", queue=Queue.DOWNLOADS, payload=Steps, retry=FAST_RETRY)
def download_like(ctx: JobContext, payload: Steps) -> None:
    """A job on the downloads queue (tests that need every queue to hold work)."""
    _record_run(ctx)
    time.sleep(payload.sleep)
    _apply_effect(ctx)
