"""/v1/jobs: enqueue (one or a batch), read, list and cancel jobs; /v1/job-kinds.

Enqueue answers 202 with the job and a `Location` to poll. A repeat with the same
`Idempotency-Key` and the same kind and payload answers 202 with the same job as it is now,
`created: false` and `Idempotent-Replayed: true`; the same key with another request is 409.
When the broker is down the job is still accepted (the ledger row is the promise; the rescuer
publishes it later): 202 with `published: false`.

The platform's refusals (unknown kind, invalid payload, key conflict, no such job, finished
job, bad cursor) propagate to their handlers in api/errors.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from medianest_workers.api.auth import KeyFirstRoute, require_api_key
from medianest_workers.api.errors import IDEMPOTENCY_HEADER, ApiError
from medianest_workers.api.middleware import correlation_id_of
from medianest_workers.api.schemas import (
    ERROR_RESPONSES,
    MAX_KEY_LENGTH,
    BatchAccepted,
    BatchCreate,
    JobAccepted,
    JobCreate,
    JobKindOut,
    JobKinds,
    JobList,
    JobOut,
    check_json_safe,
    check_text,
)
from medianest_workers.db.job_states import JobState
from medianest_workers.platform import ledger, queries
from medianest_workers.platform.enqueue import Enqueued, JobRequest, enqueue_many
from medianest_workers.platform.errors import JobNotFoundError
from medianest_workers.platform.group_enqueue import submit_one
from medianest_workers.platform.registry import all_specs

#: Who the ledger records as having enqueued jobs that came through this API.
ENQUEUED_BY = "api"
REPLAYED_HEADER = "Idempotent-Replayed"

router = APIRouter(
    prefix="/v1", route_class=KeyFirstRoute, dependencies=[Depends(require_api_key)], tags=["jobs"]
)


async def idempotency_key_header(
    raw: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            description="Makes the request safe to retry: the same key returns the same job",
            # Documented, not enforced here: the length counts characters once decoded.
            json_schema_extra={"minLength": 1, "maxLength": MAX_KEY_LENGTH},
        ),
    ] = None,
) -> str | None:
    """The `Idempotency-Key` header decoded as UTF-8 (None when absent); 422 when unusable.

    Starlette decodes header bytes as latin-1, one character per byte, so encoding back to
    latin-1 gives exactly the bytes the client sent. `async` so that FastAPI does not run it
    in its thread pool (see `require_api_key`).
    """
    if raw is None:
        return None
    try:
        key = raw.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(
            422,
            "invalid_request",
            f"the {IDEMPOTENCY_HEADER} header is not valid UTF-8",
            field=IDEMPOTENCY_HEADER,
        ) from None
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ApiError(
            422,
            "invalid_request",
            f"{IDEMPOTENCY_HEADER}: must be 1 to {MAX_KEY_LENGTH} characters",
            field=IDEMPOTENCY_HEADER,
        )
    return key


def _iso_only(value: object) -> object:
    """A date-time parameter is ISO-8601 text; pydantic would also take a number as epoch."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("must be an ISO-8601 date-time, e.g. 2026-12-03T08:00:00Z")
    return value


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_only)]
IdempotencyKey = Annotated[str | None, Depends(idempotency_key_header)]
JobId = Annotated[str, Path(description="The job id (what enqueue returned)")]


def location_of(request: Request, job_id: str) -> str:
    """The URL path of a job (its `Location`), from the get_job route's path found once."""
    state = request.app.state
    template: tuple[str, str] | None = getattr(state, "job_location", None)
    if template is None:  # url_path_for walks every route: the job's path, split at its id
        before, _, after = request.app.url_path_for("get_job", job_id=_ID_MARK).partition(_ID_MARK)
        template = state.job_location = (before, after)
    return f"{request.scope.get('root_path', '')}{template[0]}{job_id}{template[1]}"


_ID_MARK = "job-id-placeholder"


# --- enqueue -------------------------------------------------------------------------------


@router.post("/jobs", status_code=202, response_model=JobAccepted, responses=ERROR_RESPONSES)
async def create_job(
    body: JobCreate, request: Request, idempotency_key: IdempotencyKey
) -> Response:
    """Enqueue one job."""
    # async: the group committer (platform/group_enqueue.py) stores the row, concurrent
    # requests sharing one transaction and one publish, and no thread waits for either.
    _check_request(body, "", idempotency_key, IDEMPOTENCY_HEADER)
    job = JobRequest(
        kind=body.kind,
        payload=body.payload,
        idempotency_key=idempotency_key,
        user_id=body.user_id,
    )
    stored = submit_one(job, enqueued_by=ENQUEUED_BY, correlation_id=correlation_id_of(request))
    result = await asyncio.wrap_future(stored)
    if result.created:
        accepted = _accepted([result])[0]  # from the inserted row: no database read
    else:  # replayed: the job as it is now, read from the ledger
        accepted = (await run_in_threadpool(_accepted, [result]))[0]
    headers = {"Location": location_of(request, accepted.id)}
    if not result.created:
        headers[REPLAYED_HEADER] = "true"
    # Serialised here: FastAPI would validate the model it was just built from once more.
    return Response(
        accepted.model_dump_json(), status_code=202, headers=headers, media_type="application/json"
    )


@router.post(
    "/jobs/batch", status_code=202, response_model=BatchAccepted, responses=ERROR_RESPONSES
)
def create_jobs(body: BatchCreate, request: Request) -> BatchAccepted:
    """Enqueue up to 100 jobs in one transaction: all are accepted, or none is.

    Each job carries its own `idempotency_key`; the batch takes no `Idempotency-Key` header.
    """
    # Read from the request, not declared: the OpenAPI document must not offer the header.
    if IDEMPOTENCY_HEADER in request.headers:
        raise ApiError(
            422,
            "invalid_request",
            "a batch takes no Idempotency-Key header: give each job its own idempotency_key",
            field=IDEMPOTENCY_HEADER,
        )
    for index, item in enumerate(body.jobs):
        prefix = f"jobs.{index}."
        _check_request(item, prefix, item.idempotency_key, f"{prefix}idempotency_key")
    requests = [
        JobRequest(
            kind=item.kind,
            payload=item.payload,
            idempotency_key=item.idempotency_key,
            user_id=item.user_id,
        )
        for item in body.jobs
    ]
    # enqueue_many validates each job; its refusals carry the job's index (api/errors.py).
    results = enqueue_many(
        requests, enqueued_by=ENQUEUED_BY, correlation_id=correlation_id_of(request)
    )
    return BatchAccepted(jobs=_accepted(results))


def _check_request(
    body: JobCreate, prefix: str, idempotency_key: str | None, key_field: str
) -> None:
    check_text(body.kind, f"{prefix}kind")
    if body.user_id is not None:
        check_text(body.user_id, f"{prefix}user_id")
    if idempotency_key is not None:
        check_text(idempotency_key, key_field)
    check_json_safe(body.payload, f"{prefix}payload")


def _accepted(results: list[Enqueued]) -> list[JobAccepted]:
    """The answer for each job: as inserted when new, as it is now when a key replayed it."""
    views = queries.get_jobs(result.job_id for result in results if result.row is None)
    views.update(
        {result.job_id: queries.view_of_row(result.row) for result in results if result.row}
    )
    accepted = []
    for result in results:
        view = views.get(result.job_id)
        if view is None:  # deleted between the enqueue and this read (retention)
            raise ApiError(409, "job_vanished", f"job {result.job_id} no longer exists")
        accepted.append(
            JobAccepted(
                **JobOut.of(view).model_dump(),
                created=result.created,
                published=result.published if result.created else None,
            )
        )
    return accepted


# --- read ----------------------------------------------------------------------------------


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERROR_RESPONSES, name="get_job")
def get_job(job_id: JobId) -> JobOut:
    """A job's state, attempts, progress, result, last error and timestamps."""
    view = queries.get_job(job_id)
    if view is None:
        raise JobNotFoundError(job_id)
    return JobOut.of(view)


@router.get("/jobs", response_model=JobList, responses=ERROR_RESPONSES)
def list_jobs(
    *,
    kind: Annotated[str | None, Query(max_length=200)] = None,
    state: Annotated[
        list[JobState] | None, Query(description="Repeat to match any of several states")
    ] = None,
    enqueued_after: Annotated[
        IsoDateTime | None, Query(description="ISO-8601, inclusive; without offset: UTC")
    ] = None,
    enqueued_before: Annotated[
        IsoDateTime | None, Query(description="ISO-8601, exclusive; without offset: UTC")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_SIZE)] = queries.DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None,
        Query(
            max_length=queries.MAX_CURSOR_LENGTH,
            description="a page's next_cursor: `<enqueue time in µs since the epoch>.<job id>`",
            # Documented here, checked by the query (a mismatch is `invalid_cursor`).
            json_schema_extra={"pattern": queries.CURSOR_PATTERN},
        ),
    ] = None,
) -> JobList:
    """Jobs, newest first, filtered by kind, state and enqueue time; keyset paginated."""
    if kind is not None:
        check_text(kind, "kind")
    if cursor is not None:
        check_text(cursor, "cursor")
    page = queries.list_jobs(
        kind=kind,
        states=state or (),
        enqueued_after=enqueued_after,
        enqueued_before=enqueued_before,
        limit=limit,
        cursor=cursor,
    )
    return JobList(jobs=[JobOut.of(view) for view in page.jobs], next_cursor=page.next_cursor)


# --- cancel --------------------------------------------------------------------------------


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses={**ERROR_RESPONSES, 202: {"model": JobOut, "description": "Running: asked to stop"}},
)
def cancel_job(job_id: JobId, response: Response) -> JobOut:
    """Cancel a job: queued → cancelled at once (200); running → asked to stop at its next
    cancellation check (202, `cancel_requested: true`); finished → 409."""
    outcome = ledger.cancel(job_id)
    response.status_code = 200 if outcome.immediate else 202
    return JobOut.of(outcome.job)


# --- kinds ---------------------------------------------------------------------------------


@router.get("/job-kinds", response_model=JobKinds, responses=ERROR_RESPONSES, tags=["jobs"])
def list_job_kinds() -> JobKinds:
    """Every job kind this deployment runs, with its queue, limits and payload schema."""
    return JobKinds(
        kinds=[
            JobKindOut(
                kind=spec.kind,
                queue=spec.queue.value,
                description=spec.description,
                max_attempts=spec.retry.max_attempts,
                soft_time_limit_seconds=spec.soft_time_limit,
                time_limit_seconds=spec.time_limit,
                payload_schema=spec.payload_model.model_json_schema(),
            )
            for spec in all_specs()
        ]
    )
