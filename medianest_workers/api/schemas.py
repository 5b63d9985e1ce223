"""Request and response bodies of the HTTP API (they are also its OpenAPI schemas)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

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


#: What the API says of a JobView field beyond its name and type (the OpenAPI descriptions).
_JOB_DESCRIPTIONS = {
    "state": "queued, running, succeeded, failed, dead or cancelled",
    "cancel_requested": "Cancellation was asked for: a running job stops at its next check",
    "expires_at": "Not started by then: cancelled",
}
#: JobView fields the API does not show as they are: the last error is one nested object
#: (`error`), and which worker runs a job is the platform's business.
_JOB_ERROR_FIELDS = ("error_class", "error_message")
_JOB_HIDDEN_FIELDS = ("worker",)
_SHOWN_JOB_FIELDS = tuple(
    field.name
    for field in dataclasses.fields(JobView)
    if field.name not in (*_JOB_ERROR_FIELDS, *_JOB_HIDDEN_FIELDS)
)


class _JobOutBase(BaseModel):
    """The behaviour of JobOut; its fields are JobView's (see `_job_fields`)."""

    @model_validator(mode="before")
    @classmethod
    def _from_view(cls, data: Any) -> Any:
        if not isinstance(data, JobView):
            return data
        values = {name: getattr(data, name) for name in _SHOWN_JOB_FIELDS}
        values["error"] = (
            None
            if data.error_class is None
            else {"error_class": data.error_class, "message": data.error_message}
        )
        return values

    @classmethod
    def of(cls, view: JobView) -> Self:
        """The job as the API (and the CLI) shows it."""
        return cls.model_validate(view)


def _job_fields() -> dict[str, Any]:
    """JobOut's fields: JobView's in its order and with its types, `error` for the two error
    columns, so that a field added to JobView appears in the API without being copied."""
    types = typing.get_type_hints(JobView)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(JobView):
        if field.name == _JOB_ERROR_FIELDS[0]:
            fields["error"] = (JobErrorOut | None, Field(description="The last error, if any"))
        elif field.name in _SHOWN_JOB_FIELDS:
            description = _JOB_DESCRIPTIONS.get(field.name)
            fields[field.name] = (types[field.name], Field(description=description))
    return fields


JobOut = create_model(
    "JobOut",
    __base__=_JobOutBase,
    __doc__="A job as the ledger knows it now.",
    __module__=__name__,
    **_job_fields(),
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
