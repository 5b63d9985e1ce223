"""What a worker does with one message: claim the ledger row, run the job, record the outcome.

The task body is glue around this: `execute(task, spec)`. A message for a job that is
finished (a duplicate delivery) or unknown is acknowledged and does nothing; one for a job
another live worker still runs is looked at again later; one whose attempts are used up
marks the job dead (the ledger writes its error_logs row in the same transaction). A message
for a job cancelled or expired before it started is reported to Flower as revoked, not as a
success. A retryable error puts the row back to `queued` and re-publishes the
message with backoff; any other error, or the last attempt's, ends the job `failed`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from medianest_workers import correlation
from medianest_workers.db.job_states import JobState
from medianest_workers.platform import finisher, ledger
from medianest_workers.platform.celery_app import retry_countdown
from medianest_workers.platform.context import JobContext
from medianest_workers.platform.errors import JobCancelledError, PermanentError
from medianest_workers.platform.heartbeat import heartbeats
from medianest_workers.platform.registry import JobSpec
from medianest_workers.settings import get_settings

log = logging.getLogger(__name__)

#: While the ledger is unreachable a message comes back after 1, 2, 4, ... up to this many s.
CLAIM_RETRY_MAX_SECONDS = 60


def execute(task: Task, spec: JobSpec) -> dict[str, Any] | None:
    job_id: str = task.request.id
    worker = ledger.worker_identity()
    try:
        outcome = ledger.claim(
            job_id, worker=worker, stale_seconds=get_settings().heartbeat_stale_seconds
        )
    except OperationalError as exc:  # the database is down or refusing: the row is untouched
        delay = min(CLAIM_RETRY_MAX_SECONDS, 2 ** min(task.request.retries, 10))
        log.warning(
            "job %s: cannot reach the ledger (%s); trying again in %d s",
            job_id,
            type(exc.orig).__name__,
            delay,
        )
        raise task.retry(countdown=retry_countdown(delay), max_retries=None) from None
    if isinstance(outcome, ledger.Skip):
        log.info("job %s (%s) not run: %s", job_id, spec.kind, outcome.reason)
        if outcome.cancelled:
            # Flower shows the message as revoked (what it is), not as a success.
            task.send_event("task-revoked", terminated=False, signum=None, expired=False)
            raise Ignore
        return None
    if isinstance(outcome, ledger.Dead):
        log.error("job %s (%s) is dead: %s", job_id, spec.kind, ledger.DEAD_MESSAGE)
        return None
    if isinstance(outcome, ledger.Defer):
        log.info("job %s is held by another live worker; looking again later", job_id)
        raise task.retry(countdown=retry_countdown(outcome.seconds), max_retries=None)
    context = JobContext(
        job_id=job_id,
        kind=spec.kind,
        attempt=outcome.attempt,
        max_attempts=outcome.max_attempts,
        correlation_id=outcome.correlation_id,
        user_id=outcome.user_id,
        enqueued_by=outcome.enqueued_by,
    )
    if outcome.cancel_requested:
        context._cancel.set()
    with correlation.bound(outcome.correlation_id):
        return _run(task, spec, context, outcome.payload, worker)


def _run(
    task: Task, spec: JobSpec, context: JobContext, payload: dict[str, Any], worker: str
) -> dict[str, Any] | None:
    heartbeats.track(context)
    try:
        try:
            model = spec.payload_model.model_validate(payload)
        except ValidationError as exc:
            raise PermanentError(
                f"stored payload no longer valid: {exc.errors()[0]['msg']}"
            ) from None
        result = spec.func(context, model)
    except JobCancelledError as exc:
        ledger.finish(context.job_id, worker=worker, state=JobState.CANCELLED, error=exc)
        log.info("job %s cancelled", context.job_id)
        return None
    except Exception as exc:
        _handle_failure(task, spec, context, worker, exc)
        raise
    finally:
        heartbeats.untrack(context.job_id)
    stored = dict(result) if result is not None else None
    finisher.record_success(context.job_id, worker=worker, result=stored)
    return stored


def _handle_failure(
    task: Task, spec: JobSpec, context: JobContext, worker: str, error: Exception
) -> None:
    if spec.retry.is_retryable(error) and context.attempt < context.max_attempts:
        delay = spec.retry.delay(context.attempt)
        log.warning(
            "job %s attempt %d/%d failed (%s); retrying in %.1f s",
            context.job_id,
            context.attempt,
            context.max_attempts,
            type(error).__name__,
            delay,
        )
        if ledger.requeue_for_retry(context.job_id, worker=worker, error=error, delay=delay):
            raise task.retry(countdown=retry_countdown(delay), max_retries=None, exc=error)
        return
    log.error("job %s failed: %s", context.job_id, type(error).__name__, exc_info=error)
    ledger.finish(context.job_id, worker=worker, state=JobState.FAILED, error=error)
