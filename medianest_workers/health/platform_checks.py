"""The platform's own parts as checks: PostgreSQL, Redis and the Celery workers.

Each probe is a blocking call bounded by its own client-side timeouts (the round runs them
on a thread and waits no longer than one timeout); it raises when the part is not healthy.
"""

from __future__ import annotations

from sqlalchemy import text

from medianest_workers.db.session import get_engine
from medianest_workers.health.probe import PlatformProbe
from medianest_workers.health.redis_client import make_client
from medianest_workers.health.targets import Kind
from medianest_workers.platform.celery_app import app as celery_app
from medianest_workers.settings import get_settings


class NoWorkerError(Exception):
    """No worker answered the ping."""


def check_postgres(timeout: float) -> None:
    with get_engine().begin() as connection:
        connection.execute(text(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}"))
        connection.execute(text("SELECT 1"))


def check_redis(timeout: float) -> None:
    client = make_client(get_settings().require_redis_url(), timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def check_workers(timeout: float) -> None:
    """At least one Celery worker answers a broadcast ping within a fraction of the timeout."""
    replies = celery_app.control.ping(timeout=min(1.0, timeout / 2))
    if not replies:
        raise NoWorkerError("no worker answered a ping")


PLATFORM_PROBES: dict[Kind, PlatformProbe] = {
    Kind.POSTGRES: check_postgres,
    Kind.REDIS: check_redis,
    Kind.WORKERS: check_workers,
}
