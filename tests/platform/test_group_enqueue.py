"""Group commit of single enqueues (platform/group_enqueue.py) against real PostgreSQL and Redis.

The committer is made to wait for a table lock held by the test, so the calls made meanwhile
are known to form one group; rows of one transaction share their `xmin`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from medianest_workers.platform.celery_app import app as celery_app
from medianest_workers.platform.enqueue import Enqueued, JobRequest, enqueue
from medianest_workers.platform.errors import IdempotencyConflictError, PayloadInvalidError
from medianest_workers.platform.group_enqueue import enqueue_one
from medianest_workers.platform.queue_stats import amqp_lengths, redis_lengths
from tests.platform.conftest import job_row


def noop(payload: dict[str, Any] | None = None, **fields: Any) -> JobRequest:
    return JobRequest(kind="platform.noop", payload=payload or {}, **fields)


def waiting_messages(redis_client: redis.Redis, redis_prefix: str) -> int:
    """Messages waiting in the maintenance queue, on either broker."""
    if celery_app.conf.broker_url.startswith("amqp"):
        return amqp_lengths(celery_app)["maintenance"]
    return redis_lengths(redis_client, redis_prefix)["maintenance"]


def transactions(engine: Engine) -> list[int]:
    """How many rows each inserting transaction wrote, largest first."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT count(*) FROM mnw_jobs GROUP BY xmin::text ORDER BY 1 DESC")
            ).scalars()
        )


@contextmanager
def committer_held(engine: Engine) -> Iterator[None]:
    """The ledger locked against inserts until the block ends (the committer waits on it)."""
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(text("LOCK TABLE mnw_jobs IN SHARE MODE"))
        try:
            yield
        finally:
            transaction.rollback()


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def waiting_inserts(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'INSERT INTO mnw_jobs%' AND datname = current_database()"
            )
        ).scalar_one()


def in_one_group(engine: Engine, calls: list[Callable[[], Enqueued]]) -> list[Future[Enqueued]]:
    """Run a first call, hold it on the lock, run `calls` meanwhile, then let all commit."""
    pool = ThreadPoolExecutor(max_workers=len(calls) + 1)
    with committer_held(engine):
        first = pool.submit(enqueue_one, noop())
        wait_until(lambda: waiting_inserts(engine) == 1)
        futures = [pool.submit(call) for call in calls]
        time.sleep(0.3)  # every call is queued behind the first group
    first.result(timeout=20)
    pool.shutdown(wait=True)
    return futures


def outcome(future: Future[Enqueued]) -> Any:
    try:
        return future.result(timeout=20)
    except Exception as exc:  # noqa: BLE001 - the test compares outcomes
        return exc


def test_concurrent_single_enqueues_share_one_transaction(
    engine, session_factory, redis_client: redis.Redis, redis_prefix: str
) -> None:
    futures = in_one_group(
        engine,
        [lambda n=n: enqueue_one(noop(), correlation_id=f"c-{n}") for n in range(30)],
    )
    results = [future.result() for future in futures]
    assert all(result.created and result.published for result in results)
    assert transactions(engine) == [30, 1]
    for n, result in enumerate(results):
        row = job_row(engine, result.job_id)
        assert row["state"] == "queued" and row["correlation_id"] == f"c-{n}"
        assert result.row is not None and result.row["enqueued_at"] == row["enqueued_at"]
    assert waiting_messages(redis_client, redis_prefix) == 31


def test_a_lone_call_is_stored_at_once(engine, session_factory) -> None:
    started = time.perf_counter()
    result = enqueue_one(noop())
    assert result.created and job_row(engine, result.job_id)["state"] == "queued"
    assert time.perf_counter() - started < 5  # no waiting for a group to fill
    assert transactions(engine) == [1]


def test_validation_refuses_in_the_caller_before_any_group(engine, session_factory) -> None:
    with pytest.raises(PayloadInvalidError):
        enqueue_one(noop({"sleep": "long"}))
    assert transactions(engine) == []


def test_a_key_conflict_refuses_that_call_only(engine, session_factory) -> None:
    held = enqueue("platform.noop", {"sleep": 0.5}, idempotency_key="k-held")
    futures = in_one_group(
        engine,
        [
            lambda: enqueue_one(noop({"sleep": 1.0}, idempotency_key="k-held")),
            lambda: enqueue_one(noop({"sleep": 0.5}, idempotency_key="k-held")),
            lambda: enqueue_one(noop({}, idempotency_key="k-new")),
        ],
    )
    conflict, replay, new = (outcome(future) for future in futures)
    assert isinstance(conflict, IdempotencyConflictError)
    assert replay.job_id == held.job_id and not replay.created and replay.row is None
    assert new.created and job_row(engine, new.job_id)["idempotency_key"] == "k-new"


def test_one_key_twice_in_a_group_makes_one_job(engine, session_factory) -> None:
    futures = in_one_group(engine, [lambda: enqueue_one(noop({}, idempotency_key="k-twice"))] * 5)
    results = [future.result() for future in futures]
    assert len({result.job_id for result in results}) == 1
    assert sum(result.created for result in results) == 1


def test_a_row_the_database_refuses_fails_its_own_call_only(engine, session_factory) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "ALTER TABLE mnw_jobs ADD CONSTRAINT test_refused_user"
                " CHECK (user_id IS DISTINCT FROM 'refused')"
            )
        )
    try:
        futures = in_one_group(
            engine,
            [
                lambda: enqueue_one(noop({}, user_id="fine-1")),
                lambda: enqueue_one(noop({}, user_id="refused")),
                lambda: enqueue_one(noop({}, user_id="fine-2")),
            ],
        )
        fine_1, refused, fine_2 = (outcome(future) for future in futures)
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE mnw_jobs DROP CONSTRAINT test_refused_user"))
    assert isinstance(refused, IntegrityError)
    assert fine_1.created and job_row(engine, fine_1.job_id)["user_id"] == "fine-1"
    assert fine_2.created and job_row(engine, fine_2.job_id)["user_id"] == "fine-2"
    with engine.connect() as connection:
        users = connection.execute(text("SELECT user_id FROM mnw_jobs")).scalars().all()
    assert sorted(user for user in users if user) == ["fine-1", "fine-2"]


def test_many_threads_lose_no_call(engine, session_factory) -> None:
    errors: list[BaseException] = []
    ids: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(25):
            try:
                result = enqueue_one(noop())
            except BaseException as exc:  # noqa: BLE001 - collected, asserted below
                errors.append(exc)
            else:
                with lock:
                    ids.append(result.job_id)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 200
    assert sum(transactions(engine)) == 200
