"""The platform's own checks for real: PostgreSQL, Redis and the workers of this test run.

A round over the run's own database and Redis (and a real worker, for the workers check)
records `up` with a response time in every place the backend reads; a Redis on a closed
loopback port, a database that refuses and servers that accept and never answer are recorded
`down` with a clear error, each within one timeout; no worker running is `down` too.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from sqlalchemy import Engine, text

from medianest_workers.db.session import reset_engine
from medianest_workers.health.platform_checks import PLATFORM_PROBES
from medianest_workers.health.probe import DOWN, UP, ProbeConfig, run_round
from medianest_workers.health.recording import BACKEND_KEY
from medianest_workers.health.service import check_all
from medianest_workers.health.targets import CheckTarget, Kind
from medianest_workers.platform.presence import presence_key_pattern
from medianest_workers.settings import reset_settings_cache
from tests.helpers import free_port, wait_for

TIMEOUT = 1.5
#: A generous threshold: on a loaded test machine a SELECT 1 may take a few hundred ms.
DEGRADED_MS = 1000
CONFIG = ProbeConfig(timeout=TIMEOUT, degraded_ms=DEGRADED_MS, max_body_bytes=4096, concurrency=8)


@pytest.fixture
def platform_env(health_env: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """health_env with the platform checks' settings; the engine is rebuilt afterwards (a
    test may point DATABASE_URL elsewhere)."""
    health_env.setenv("HEALTH_TIMEOUT_SECONDS", str(TIMEOUT))
    health_env.setenv("HEALTH_DEGRADED_MS", str(DEGRADED_MS))
    health_env.setenv("HEALTH_DOWN_AFTER", "1")
    reset_settings_cache()
    try:
        yield health_env
    finally:
        reset_engine()


@pytest.fixture
def targets(service_names: Callable[[str], str]) -> dict[Kind, CheckTarget]:
    """The three platform targets under names of this test (their backend keys are deleted)."""
    return {
        kind: CheckTarget(name=service_names(f"mnw-{kind.value}"), kind=kind)
        for kind in (Kind.POSTGRES, Kind.REDIS, Kind.WORKERS)
    }


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (closed after the test)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


def _check_rows(engine: Engine, names: list[str]) -> dict[str, dict]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM mnw_health_checks WHERE service_name = ANY(:n) ORDER BY id"),
            {"n": names},
        ).mappings()
        return {row["service_name"]: dict(row) for row in rows}


def _status_rows(engine: Engine, names: list[str]) -> dict[str, dict]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM service_status WHERE service_name = ANY(:n)"), {"n": names}
        ).mappings()
        return {row["service_name"]: dict(row) for row in rows}


def _present(client: redis.Redis, prefix: str) -> bool:
    return bool(list(client.scan_iter(match=presence_key_pattern(prefix))))


def test_a_round_records_the_live_database_redis_and_worker_up(
    engine: Engine,
    redis_client: redis.Redis,
    redis_prefix: str,
    session_factory,
    start_worker,
    targets: dict[Kind, CheckTarget],
    platform_env: pytest.MonkeyPatch,
) -> None:
    start_worker(queues="health", concurrency=1, WORKER_LIVENESS_INTERVAL_SECONDS="0.5")
    wait_for(lambda: _present(redis_client, redis_prefix), 90, "the worker's presence record")
    names = [target.name for target in targets.values()]
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    report = check_all(targets=list(targets.values()))

    assert report.by_status == {UP: 3}
    assert report.backend_keys_written
    assert report.seconds < TIMEOUT
    checks = _check_rows(engine, names)
    for kind, target in targets.items():
        check = checks[target.name]
        assert (check["kind"], check["result"], check["status"]) == (kind.value, UP, UP)
        assert (check["error_class"], check["error_message"], check["http_status"]) == (
            None,
            None,
            None,
        )
        assert 0 <= check["response_time_ms"] < DEGRADED_MS
        assert check["consecutive_failures"] == 0
    statuses = _status_rows(engine, names)
    for name in names:
        row = statuses[name]
        assert row["status"] == UP
        assert row["response_time_ms"] == checks[name]["response_time_ms"]
        assert (
            before - dt.timedelta(seconds=1)
            <= row["last_check_at"]
            <= before + dt.timedelta(seconds=30)
        )
        assert float(row["uptime_percentage"]) == 100.0
        value = json.loads(redis_client.get(BACKEND_KEY.format(name=name)))
        assert value == {
            "service": name,
            "healthy": True,
            "lastChecked": value["lastChecked"],
            "responseTime": checks[name]["response_time_ms"],
            "error": None,
        }
        assert value["lastChecked"].endswith("Z")
        assert 0 < redis_client.ttl(BACKEND_KEY.format(name=name)) <= 300


def test_no_worker_present_is_recorded_down(
    engine: Engine,
    redis_client: redis.Redis,
    redis_prefix: str,
    session_factory,
    start_worker,
    targets: dict[Kind, CheckTarget],
    platform_env: pytest.MonkeyPatch,
) -> None:
    worker = start_worker(queues="health", concurrency=1, WORKER_LIVENESS_INTERVAL_SECONDS="0.5")
    wait_for(lambda: _present(redis_client, redis_prefix), 90, "the worker's presence record")
    workers = targets[Kind.WORKERS]
    assert run_round([workers], CONFIG, PLATFORM_PROBES)[workers.name].result == UP
    worker.stop()  # a worker that stops deletes its record
    assert not _present(redis_client, redis_prefix)

    report = check_all(targets=[workers])

    assert report.by_status == {DOWN: 1}
    check = _check_rows(engine, [workers.name])[workers.name]
    assert (check["result"], check["status"], check["error_class"]) == (DOWN, DOWN, "NoWorkerError")
    assert check["error_message"] == (
        f"no worker present (no {presence_key_pattern(redis_prefix)} record in Redis)"
    )
    assert check["response_time_ms"] < TIMEOUT * 1000
    value = json.loads(redis_client.get(BACKEND_KEY.format(name=workers.name)))
    assert value["healthy"] is False
    assert value["error"].startswith("NoWorkerError: no worker present")


def test_a_redis_on_a_closed_port_is_recorded_down_within_the_timeout(
    engine: Engine,
    session_factory,
    targets: dict[Kind, CheckTarget],
    platform_env: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    platform_env.setenv("REDIS_URL", f"redis://:secret-password@127.0.0.1:{port}/0")
    reset_settings_cache()
    chosen = [targets[Kind.REDIS], targets[Kind.WORKERS], targets[Kind.POSTGRES]]
    started = time.monotonic()

    report = check_all(targets=chosen)

    assert time.monotonic() - started < TIMEOUT + 1.0
    assert report.by_status == {DOWN: 2, UP: 1}
    assert not report.backend_keys_written  # the same Redis: recorded in PostgreSQL only
    checks = _check_rows(engine, [target.name for target in chosen])
    for target in (targets[Kind.REDIS], targets[Kind.WORKERS]):
        check = checks[target.name]
        assert (check["result"], check["status"], check["error_class"]) == (
            DOWN,
            DOWN,
            "ConnectionError",
        )
        assert f"127.0.0.1:{port}" in check["error_message"]
        assert "Connection refused" in check["error_message"]
        assert "secret-password" not in check["error_message"]
    assert checks[targets[Kind.POSTGRES].name]["result"] == UP


def test_a_database_that_refuses_is_down_with_the_servers_reason(
    targets: dict[Kind, CheckTarget], platform_env: pytest.MonkeyPatch
) -> None:
    port = free_port()
    platform_env.setenv("DATABASE_URL", f"postgresql://mnw:secret-password@127.0.0.1:{port}/x")
    reset_settings_cache()
    reset_engine()
    postgres = targets[Kind.POSTGRES]
    started = time.monotonic()

    result = run_round([postgres], CONFIG, PLATFORM_PROBES)[postgres.name]

    assert time.monotonic() - started < TIMEOUT
    assert (result.result, result.error_class) == (DOWN, "DatabaseUnavailableError")
    assert result.error_message is not None
    assert result.error_message.startswith(
        f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )
    assert "\n" not in result.error_message
    assert "sqlalche.me" not in result.error_message  # SQLAlchemy's wrapping is left out
    assert "secret-password" not in result.error_message


def test_servers_that_accept_and_never_answer_are_down_after_one_timeout(
    silent_port: int, targets: dict[Kind, CheckTarget], platform_env: pytest.MonkeyPatch
) -> None:
    platform_env.setenv("DATABASE_URL", f"postgresql://mnw@127.0.0.1:{silent_port}/x")
    platform_env.setenv("REDIS_URL", f"redis://127.0.0.1:{silent_port}/0")
    reset_settings_cache()
    reset_engine()
    chosen = list(targets.values())
    started = time.monotonic()

    results = run_round(chosen, CONFIG, PLATFORM_PROBES)

    elapsed = time.monotonic() - started
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 1.0
    for target in chosen:
        result = results[target.name]
        assert (result.result, result.error_class) == (DOWN, "Timeout"), target.kind
        assert result.error_message == f"no answer within {TIMEOUT:g} s"
        assert TIMEOUT * 900 <= result.response_time_ms < (TIMEOUT + 1.0) * 1000
