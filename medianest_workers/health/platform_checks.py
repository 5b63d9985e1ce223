"""The platform's own parts as checks: PostgreSQL, Redis and the Celery workers.

Each probe is a blocking call bounded by its own client-side timeouts (the round runs them
on a thread and waits no longer than one timeout); it raises when the part is not healthy,
with a message an operator can act on (never the URL, which may hold a password).

The workers check reads the workers' presence records (platform/presence.py: each worker's
own event loop renews `<prefix>workers:<node>` every WORKER_LIVENESS_INTERVAL_SECONDS): no
broadcast to every worker each round, the same answer whatever the broker, and a Redis that
does not answer fails it within the timeout (a broadcast ping retries its publish for longer).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from medianest_workers.db.session import get_engine
from medianest_workers.health.probe import PlatformProbe
from medianest_workers.health.redis_client import make_client
from medianest_workers.health.targets import Kind
from medianest_workers.platform.presence import presence_key_pattern
from medianest_workers.settings import get_settings

#: SCAN's batch when looking for a presence record (the first one found ends the check).
SCAN_COUNT = 1000


class NoWorkerError(Exception):
    """No worker's presence record is in Redis: no worker is running (or none reaches Redis)."""


class DatabaseUnavailableError(Exception):
    """PostgreSQL refused the connection or the query; the message is the server's reason."""


def driver_message(error: DBAPIError) -> str:
    """The driver's own reason, without SQLAlchemy's wrapping (its class, SQL, a docs link)."""
    lines = [line.strip() for line in str(error.orig).splitlines() if line.strip()]
    return " ".join(lines) or type(error.orig).__name__


def check_postgres(timeout: float) -> None:
    """`SELECT 1` through the pool, the statement bounded by `timeout`."""
    try:
        with get_engine().begin() as connection:
            connection.execute(text(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}"))
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        raise DatabaseUnavailableError(driver_message(exc)) from None


@contextmanager
def redis_timeouts_as_builtin() -> Iterator[None]:
    """redis-py's TimeoutError as the builtin one, which the round records as its own
    `Timeout` (the client's timeout and the round's deadline are the same: either may fire)."""
    try:
        yield
    except redis.TimeoutError as exc:
        raise TimeoutError(str(exc)) from exc


def check_redis(timeout: float) -> None:
    """A PING of REDIS_URL on a fresh connection with `timeout` connect and read timeouts."""
    client = make_client(get_settings().require_redis_url(), timeout=timeout)
    try:
        with redis_timeouts_as_builtin():
            client.ping()
    finally:
        client.close()


def check_workers(timeout: float) -> None:
    """At least one worker's presence record is in Redis (see the module docstring)."""
    settings = get_settings()
    pattern = presence_key_pattern(settings.redis_key_prefix)
    client = make_client(settings.require_redis_url(), timeout=timeout)
    try:
        with redis_timeouts_as_builtin():
            for _key in client.scan_iter(match=pattern, count=SCAN_COUNT):
                return
    finally:
        client.close()
    raise NoWorkerError(f"no worker present (no {pattern} record in Redis)")


PLATFORM_PROBES: dict[Kind, PlatformProbe] = {
    Kind.POSTGRES: check_postgres,
    Kind.REDIS: check_redis,
    Kind.WORKERS: check_workers,
}
