"""enqueue(): the Python way to start a job. Validate, write the ledger row, publish after commit.

The row is the promise: once enqueue() returns, the job will run even if the publish failed
(the rescuer publishes it later). The same idempotency key returns the existing job.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, select

from medianest_workers import correlation
from medianest_workers.db.models.jobs import Job
from medianest_workers.db.session import get_engine
from medianest_workers.platform import ledger
from medianest_workers.platform.celery_app import app as celery_app
from medianest_workers.platform.errors import (
    IdempotencyConflictError,
    PayloadInvalidError,
    UnknownJobKindError,
)
from medianest_workers.platform.payload_schema import schema_violations
from medianest_workers.platform.queues import Queue
from medianest_workers.platform.registry import JobSpec, find_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class JobRequest:
    """One job to enqueue (the batch form takes a list of these)."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    user_id: str | None = None
    schedule_name: str | None = None
    trigger: str | None = None
    #: Seconds after which the job, if it has not started, is not run at all.
    expires_in: float | None = None


@dataclass(frozen=True, kw_only=True)
class Enqueued:
    job_id: str
    kind: str
    queue: str
    created: bool  # False: the idempotency key returned an existing job
    published: bool
    #: The ledger row as this call inserted it (None when the key returned an existing job).
    row: dict[str, Any] | None = None


def validate(
    kind: str, payload: dict[str, Any], *, index: int | None = None
) -> tuple[JobSpec, dict[str, Any]]:
    """The job kind's spec and the payload as its schema normalises it, or a clear error.

    `index` (the request's position in a batch) is carried by the error.
    """
    spec = find_spec(kind)
    if spec is None:
        raise UnknownJobKindError(kind, index=index)
    try:
        model: BaseModel = spec.payload_model.model_validate(payload)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(part) for part in error["loc"]) or "payload",
                "message": error["msg"],
            }
            for error in exc.errors()
        ]
        raise PayloadInvalidError(kind, errors, index=index) from None
    # Pydantic coerces (`false` or `"2"` for an integer); the payload's JSON Schema, the one the
    # OpenAPI document publishes, does not: what the document calls invalid is refused.
    mismatches = schema_violations(spec.payload_model, payload)
    if mismatches:
        raise PayloadInvalidError(kind, mismatches, index=index)
    return spec, model.model_dump(mode="json")


def enqueue(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    user_id: str | None = None,
    enqueued_by: str = "service",
    correlation_id: str | None = None,
    schedule_name: str | None = None,
    trigger: str | None = None,
    expires_in: float | None = None,
) -> Enqueued:
    """Enqueue one job; see the module docstring."""
    request = JobRequest(
        kind=kind,
        payload=payload or {},
        idempotency_key=idempotency_key,
        user_id=user_id,
        schedule_name=schedule_name,
        trigger=trigger,
        expires_in=expires_in,
    )
    return _enqueue([request], enqueued_by=enqueued_by, correlation_id=correlation_id, batch=False)[
        0
    ]


def enqueue_many(
    requests: Sequence[JobRequest],
    *,
    enqueued_by: str = "service",
    correlation_id: str | None = None,
) -> list[Enqueued]:
    """Enqueue many jobs in one transaction and one pipelined publish (all or none are accepted).

    A refusal (UnknownJobKindError, PayloadInvalidError, IdempotencyConflictError, also for
    a key given twice in the batch) carries the `index` of the offending request.
    """
    return _enqueue(requests, enqueued_by=enqueued_by, correlation_id=correlation_id, batch=True)


def _enqueue(
    requests: Sequence[JobRequest],
    *,
    enqueued_by: str,
    correlation_id: str | None,
    batch: bool,
) -> list[Enqueued]:
    rows, specs = prepare_rows(
        requests, enqueued_by=enqueued_by, correlation_id=correlation_id, batch=batch
    )
    return store_and_publish(rows, specs, batch=batch)


def store_and_publish(
    rows: Sequence[dict[str, Any]], specs: Sequence[JobSpec], *, batch: bool
) -> list[Enqueued]:
    """Insert validated rows (`prepare_rows`) in one transaction, then publish the new ones.

    A key conflict rolls every row back; see `enqueue_many`.
    """
    with get_engine().begin() as connection:
        inserted = ledger.insert_jobs(connection, rows)
        holders = inserted.holders
        existing = existing_jobs(connection, holders)
        for index, row in enumerate(rows):  # a conflict rolls the whole batch back
            if holders[row["id"]] != row["id"]:
                holder = holders[row["id"]]
                check_same_request(row, holder, existing[holder], index=index if batch else None)
    return publish_inserted(rows, specs, inserted)


def publish_inserted(
    rows: Sequence[dict[str, Any]], specs: Sequence[JobSpec], inserted: ledger.Inserted
) -> list[Enqueued]:
    """Publish the rows this insert created (one pipeline); what enqueue answers for each row.

    A row whose key returned an existing job is not published (its holder was).
    """
    holders = inserted.holders
    created = [row for row in rows if holders[row["id"]] == row["id"]]
    failed = publish(
        [(row["id"], row["kind"], row["queue"], row["correlation_id"]) for row in created]
    )
    if failed:
        ledger.mark_unpublished(failed)
    return [
        Enqueued(
            job_id=holders[row["id"]],
            kind=spec.kind,
            queue=spec.queue.value,
            created=holders[row["id"]] == row["id"],
            published=row["id"] not in failed,
            row=_as_stored(row, inserted.times[row["id"]], unpublished=row["id"] in failed)
            if holders[row["id"]] == row["id"]
            else None,
        )
        for row, spec in zip(rows, specs, strict=True)
    ]


def prepare_rows(
    requests: Sequence[JobRequest], *, enqueued_by: str, correlation_id: str | None, batch: bool
) -> tuple[list[dict[str, Any]], list[JobSpec]]:
    """Validated ledger rows for these requests (the ids are chosen here), or a clear error."""
    cid = correlation_id or correlation.current() or correlation.new_correlation_id()
    return _rows(requests, enqueued_by=enqueued_by, correlation_id=cid, batch=batch)


def _rows(
    requests: Sequence[JobRequest], *, enqueued_by: str, correlation_id: str, batch: bool
) -> tuple[list[dict[str, Any]], list[JobSpec]]:
    rows, specs = [], []
    keys: dict[str, int] = {}  # key -> index of the first request holding it
    for position, request in enumerate(requests):
        index = position if batch else None
        spec, payload = validate(request.kind, request.payload, index=index)
        if request.idempotency_key is not None:
            if request.idempotency_key in keys:
                raise IdempotencyConflictError(
                    request.idempotency_key,
                    "(same batch)",
                    index=index,
                    duplicate_of=keys[request.idempotency_key],
                )
            keys[request.idempotency_key] = position
        specs.append(spec)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "kind": spec.kind,
                "queue": spec.queue.value,
                "payload": payload,
                "idempotency_key": request.idempotency_key,
                "state": "queued",
                "attempts": 0,
                "max_attempts": spec.retry.max_attempts,
                "correlation_id": correlation_id,
                "enqueued_by": enqueued_by,
                "user_id": request.user_id,
                "schedule_name": request.schedule_name,
                "trigger": request.trigger,
                "cancel_requested": False,
                "expires_in": request.expires_in,  # the ledger stamps the times itself
            }
        )
    return rows, specs


def _as_stored(row: dict[str, Any], times: dict[str, Any], *, unpublished: bool) -> dict[str, Any]:
    """The row with the columns the insert left to their defaults, as the ledger holds it."""
    stored = {column: None for column in Job.__table__.columns.keys()}  # noqa: SIM118
    stored.update({name: value for name, value in row.items() if name in stored})
    stored.update(times)
    if unpublished:
        stored["published_at"] = None
    return stored


def existing_jobs(
    connection: Connection, holders: dict[str, str]
) -> dict[str, tuple[str, dict[str, Any]]]:
    ids = [holder for requested, holder in holders.items() if holder != requested]
    if not ids:
        return {}
    found = connection.execute(select(Job.id, Job.kind, Job.payload).where(Job.id.in_(ids)))
    return {job_id: (kind, payload) for job_id, kind, payload in found}


def check_same_request(
    row: dict[str, Any],
    holder_id: str,
    existing: tuple[str, dict[str, Any]],
    *,
    index: int | None,
) -> None:
    kind, payload = existing
    if kind != row["kind"] or payload != row["payload"]:
        raise IdempotencyConflictError(row["idempotency_key"], holder_id, index=index)


def publish(messages: Sequence[tuple[str, str, str, str]], app: Celery | None = None) -> set[str]:
    """Publish (job id, kind, queue, correlation id) messages in one pipeline.

    Returns the ids whose publish failed (the broker is down): their rows stay `queued` for
    the rescuer. Never raises for a broker failure.
    """
    if not messages:
        return set()
    app = app or celery_app
    try:
        with app.producer_or_acquire() as producer, producer.batch():
            for job_id, kind, queue, cid in messages:
                app.send_task(
                    kind,
                    task_id=job_id,
                    queue=queue,
                    routing_key=Queue(queue).routing_key,
                    headers={correlation.HEADER: cid},
                    producer=producer,
                )
    except Exception as exc:  # noqa: BLE001 - any broker failure; the row is safe either way
        log.warning(
            "publish of %d job(s) failed (%s); the rescuer will publish them",
            len(messages),
            type(exc).__name__,
        )
        return {job_id for job_id, *_ in messages}
    return set()
