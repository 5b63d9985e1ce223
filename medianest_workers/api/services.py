"""/v1/services: the health family's view of every checked service, and each one's history.

`GET /v1/services`: every service with a recorded check: its current status, the latest
check (response time, error, certificate days left), uptime over 24 h / 7 d / 30 d and its
last transition. `GET /v1/services/{name}/history`: its checks, newest first (`limit`,
`before` a check id to page back), and its latest transitions. Times are UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from medianest_workers.api.auth import KeyFirstRoute, require_api_key
from medianest_workers.api.errors import ApiError
from medianest_workers.api.schemas import ERROR_RESPONSES
from medianest_workers.db.session import get_engine
from medianest_workers.health import queries
from medianest_workers.timeutil import aware_utc

MAX_HISTORY = 1000
DEFAULT_HISTORY = 100

router = APIRouter(
    prefix="/v1",
    route_class=KeyFirstRoute,
    dependencies=[Depends(require_api_key)],
    tags=["services"],
)


class UptimeOut(BaseModel):
    model_config = {"populate_by_name": True}

    day: float | None = Field(alias="24h", description="percent of checks not down, last 24 h")
    week: float | None = Field(alias="7d")
    month: float | None = Field(alias="30d")


class TransitionOut(BaseModel):
    at: dt.datetime
    from_status: str | None
    to_status: str
    error_class: str | None
    error_message: str | None


class CheckOut(BaseModel):
    id: int | None = None
    checked_at: dt.datetime
    result: str = Field(description="what this check found: up, degraded or down")
    status: str = Field(description="the service's status after it (down after N failures)")
    consecutive_failures: int
    response_time_ms: int | None
    http_status: int | None
    error_class: str | None
    error_message: str | None
    cert_days_left: float | None
    in_maintenance: bool


class ServiceOut(BaseModel):
    name: str
    kind: str
    status: str
    last_check: CheckOut
    uptime: UptimeOut
    last_transition: TransitionOut | None


class ServiceList(BaseModel):
    services: list[ServiceOut]


class ServiceHistory(BaseModel):
    service: str
    checks: list[CheckOut]
    transitions: list[TransitionOut]
    next_before: int | None = Field(description="pass as `before` for the next page")


def _times(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {**row, **{name: aware_utc(row[name]) for name in names if name in row}}


def _check(row: dict[str, Any]) -> CheckOut:
    return CheckOut.model_validate(_times(row, "checked_at"))


@router.get("/services", response_model=ServiceList, responses=ERROR_RESPONSES)
def list_services() -> ServiceList:
    """Every checked service: status, latest check, uptime windows, last transition."""
    with get_engine().connect() as connection:
        views = queries.services(connection)
    return ServiceList(
        services=[
            ServiceOut(
                name=view.name,
                kind=view.latest["kind"],
                status=view.latest["status"],
                last_check=_check(view.latest),
                uptime=UptimeOut.model_validate(view.uptime),
                last_transition=None
                if view.last_transition is None
                else TransitionOut.model_validate(_times(view.last_transition, "at")),
            )
            for view in views
        ]
    )


@router.get("/services/{name}/history", response_model=ServiceHistory, responses=ERROR_RESPONSES)
def service_history(
    name: Annotated[str, Path(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = DEFAULT_HISTORY,
    before: Annotated[int | None, Query(ge=1, description="a check id: older checks")] = None,
) -> ServiceHistory:
    """The service's checks (newest first) and latest transitions; 404 if never checked."""
    with get_engine().connect() as connection:
        if not queries.known(connection, name):
            raise ApiError(404, "not_found", f"no service {name!r} has been checked", field="name")
        checks = queries.history(connection, name, limit=limit, before=before)
        transitions = queries.transitions(connection, name, limit=limit)
    return ServiceHistory(
        service=name,
        checks=[_check(row) for row in checks],
        transitions=[TransitionOut.model_validate(_times(row, "at")) for row in transitions],
        next_before=checks[-1]["id"] if len(checks) == limit else None,
    )
