"""/healthz (database and broker reachable) and /metrics (Prometheus); neither needs a key.

Both checks of /healthz run side by side and are bounded: the database check by a deadline
(whatever the pool or the network does) and a statement timeout, the broker check by the
Redis client's socket timeouts. /metrics exposes counts and timings only.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from medianest_workers.api.errors import error_body
from medianest_workers.api.routing import StrictQueryRoute
from medianest_workers.api.schemas import Health
from medianest_workers.db.session import get_engine

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
REDIS_TIMEOUT_SECONDS = 1.0

router = APIRouter(tags=["operations"], route_class=StrictQueryRoute)


def redis_url_for_client(url: str) -> str:
    """REDIS_URL as redis-py takes it (valkey:// is the same protocol)."""
    for scheme, replacement in (("valkeys://", "rediss://"), ("valkey://", "redis://")):
        if url.startswith(scheme):
            return replacement + url.removeprefix(scheme)
    return url


def make_redis_client(url: str) -> redis.Redis:
    """A client for checks and scrapes: short timeouts, no retries."""
    return redis.Redis.from_url(
        redis_url_for_client(url),
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        retry_on_timeout=False,
        health_check_interval=0,
    )


def _check_database() -> None:
    with get_engine().begin() as connection:
        connection.execute(
            text(f"SET LOCAL statement_timeout = {int(CHECK_TIMEOUT_SECONDS * 1000)}")
        )
        connection.execute(text("SELECT 1"))


def _outcome(future: Any) -> str:
    try:
        future.result(timeout=CHECK_TIMEOUT_SECONDS)
    except FutureTimeout:
        return "timeout"
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; the class says why
        return f"unreachable ({type(exc).__name__})"
    return "ok"


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database or the broker is down"}},
)
def healthz(request: Request) -> Any:
    """200 when the database answers `SELECT 1` and the broker answers PING, else 503."""
    checks: ThreadPoolExecutor = request.app.state.health_checks
    client: redis.Redis = request.app.state.redis
    database = checks.submit(_check_database)
    broker = checks.submit(client.ping)
    status = {"database": _outcome(database), "broker": _outcome(broker)}
    if all(value == "ok" for value in status.values()):
        return Health(status="ok", **status)
    down = [name for name, value in status.items() if value != "ok"]
    log.warning("health check: %s", status)
    body = {
        "status": "unavailable",
        **status,
        **error_body("unavailable", f"{' and '.join(down)} unavailable"),
    }
    return JSONResponse(body, status_code=503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format: jobs by kind and state, durations, queue lengths."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
