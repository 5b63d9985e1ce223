"""/v1/schedules: what beat runs and when it last ran; run a scheduled job now."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from medianest_workers.api.auth import KeyFirstRoute, require_api_key
from medianest_workers.api.errors import ApiError
from medianest_workers.api.jobs import location_of
from medianest_workers.api.middleware import correlation_id_of
from medianest_workers.api.schemas import (
    ERROR_RESPONSES,
    JobAccepted,
    JobOut,
    ScheduleOut,
    Schedules,
)
from medianest_workers.db.session import session_scope
from medianest_workers.platform import queries, schedule_runs
from medianest_workers.timeutil import aware_utc

router = APIRouter(
    prefix="/v1",
    route_class=KeyFirstRoute,
    dependencies=[Depends(require_api_key)],
    tags=["schedules"],
)

ScheduleName = Annotated[str, Path(max_length=200, description="The schedule's name")]


@router.get("/schedules", response_model=Schedules, responses=ERROR_RESPONSES)
def list_schedules() -> Schedules:
    """Every schedule of beat_schedule.py with its last run (from the ledger) and next run."""
    with session_scope() as session:
        statuses = schedule_runs.schedule_statuses(session)
    items = []
    for status in statuses:
        fields = dataclasses.asdict(status)
        for name in ("last_run_at", "next_run_at"):
            fields[name] = aware_utc(fields[name])
        items.append(ScheduleOut(**fields))
    return Schedules(schedules=items)


@router.post(
    "/schedules/{name}/run", status_code=202, response_model=JobAccepted, responses=ERROR_RESPONSES
)
def run_schedule(name: ScheduleName, request: Request, response: Response) -> JobAccepted:
    """Enqueue the schedule's job now (a manual run, recorded with trigger `manual`); an
    unknown name is 404 `schedule_not_found`."""
    result = schedule_runs.run_now(name, correlation_id=correlation_id_of(request))
    view = queries.get_job(result.job_id)
    if view is None:
        raise ApiError(409, "job_vanished", f"job {result.job_id} no longer exists")
    response.headers["Location"] = location_of(request, view.id)
    return JobAccepted(
        **JobOut.of(view).model_dump(),
        created=result.created,
        published=result.published if result.created else None,
    )
