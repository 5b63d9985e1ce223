"""Request and response bodies of the HTTP API (they are also its OpenAPI schemas)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medianest_workers.api.errors import ApiError
from medianest_workers.platform.queries import JobView

MAX_KIND_LENGTH = 200
MAX_KEY_LENGTH = 255
MAX_USER_ID_LENGTH = 200
MAX_BATCH_JOBS = 100
MAX_PAYLOAD_DEPTH = 32

_Strict = ConfigDict(extra="forbid")


# --- requests ------------------------------------------------------------------------------


class JobCreate(BaseModel):
    """One job to enqueue. The idempotency key is the `Idempotency-Key` header."""

    model_config = _Strict

    kind: str = Field(min_length=1, max_length=MAX_KIND_LENGTH, examples=["platform.noop"])
    payload: dict[str, Any] = Field(
        default_factory=dict, description="The job kind's payload (see GET /v1/job-kinds)"
    )
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_USER_ID_LENGTH,
        description="The MediaNest user the job acts for, if any",
    )


class BatchJobCreate(JobCreate):
    """One job of a batch; each carries its own idempotency key."""

    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)


class BatchCreate(BaseModel):
    """Jobs enqueued in one transaction: all are accepted, or none."""

    model_config = _Strict

    jobs: list[BatchJobCreate] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


def check_json_safe(value: Any, field: str, *, depth: int = 0) -> None:
    """Refuse (422) what JSON allows but the ledger cannot store or return.

    NaN and infinities, NUL characters and unpaired surrogates in strings, and nesting
    deeper than MAX_PAYLOAD_DEPTH.
    """
    if depth > MAX_PAYLOAD_DEPTH:
        raise ApiError(
            422, "invalid_payload", f"nested deeper than {MAX_PAYLOAD_DEPTH} levels", field=field
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ApiError(422, "invalid_payload", "NaN and Infinity are not JSON", field=field)
    if isinstance(value, str):
        check_text(value, field, code="invalid_payload")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, field, code="invalid_payload")
            check_json_safe(item, f"{field}.{key}", depth=depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_safe(item, f"{field}.{index}", depth=depth + 1)


def check_text(value: str, field: str, *, code: str = "invalid_request") -> None:
    """Refuse strings holding NUL or unpaired surrogates (PostgreSQL cannot store them)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, code, "contains an unpaired UTF-16 surrogate", field=field) from None
    if "\x00" in value:
        raise ApiError(422, code, "contains a NUL character", field=field)


# --- responses -----------------------------------------------------------------------------


class JobErrorOut(BaseModel):
    error_class: str
    message: str | None


class JobOut(BaseModel):
    """A job as the ledger knows it now."""

    id: str
    kind: str
    queue: str
    state: str = Field(description="queued, running, succeeded, failed, dead or cancelled")
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: JobErrorOut | None = Field(description="The last error, if any")
    cancel_requested: bool
    idempotency_key: str | None
    correlation_id: str
    enqueued_by: str
    user_id: str | None
    schedule_name: str | None
    trigger: str | None
    enqueued_at: dt.datetime
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    finished_at: dt.datetime | None
    expires_at: dt.datetime | None = Field(description="Not started by then: cancelled")

    @classmethod
    def of(cls, view: JobView) -> JobOut:
        error = (
            None
            if view.error_class is None
            else JobErrorOut(error_class=view.error_class, message=view.error_message)
        )
        return cls(
            id=view.id,
            kind=view.kind,
            queue=view.queue,
            state=view.state,
            attempts=view.attempts,
            max_attempts=view.max_attempts,
            payload=view.payload,
            progress=view.progress,
            result=view.result,
            error=error,
            cancel_requested=view.cancel_requested,
            idempotency_key=view.idempotency_key,
            correlation_id=view.correlation_id,
            enqueued_by=view.enqueued_by,
            user_id=view.user_id,
            schedule_name=view.schedule_name,
            trigger=view.trigger,
            enqueued_at=view.enqueued_at,
            started_at=view.started_at,
            heartbeat_at=view.heartbeat_at,
            finished_at=view.finished_at,
            expires_at=view.expires_at,
        )


class JobAccepted(JobOut):
    """The answer to an enqueue: the job, and whether this request created it."""

    created: bool = Field(
        description="False: the idempotency key returned the job an earlier request created"
    )
    published: bool | None = Field(
        description=(
            "Whether this request's message reached the broker. False: the broker was "
            "unreachable; the job is safe in the ledger and the rescuer publishes it. "
            "Null for a replay (nothing was published)."
        )
    )


class BatchAccepted(BaseModel):
    jobs: list[JobAccepted]


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(
        description="Pass it as `cursor` for the next (older) page; null on the last page"
    )


class JobKindOut(BaseModel):
    kind: str
    queue: str
    description: str
    max_attempts: int
    soft_time_limit_seconds: float
    time_limit_seconds: float
    payload_schema: dict[str, Any]


class JobKinds(BaseModel):
    kinds: list[JobKindOut]


class ScheduleOut(BaseModel):
    name: str
    kind: str
    description: str
    schedule: str
    last_run_at: dt.datetime | None
    next_run_at: dt.datetime | None
    last_duration_seconds: float | None
    last_trigger: str | None
    last_state: str | None
    last_job_id: str | None


class Schedules(BaseModel):
    schedules: list[ScheduleOut]


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable")
    database: str
    broker: str


class ErrorOut(BaseModel):
    code: str
    message: str
    field: str | None
    details: list[dict[str, str | None]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorOut


#: The refusals an authenticated endpoint may answer, for the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 409, 413, 415, 422, 503)
}
