"""enqueue() and the rescuer against real PostgreSQL and Redis (no worker needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from sqlalchemy import Engine, text

from medianest_workers.platform.enqueue import JobRequest, enqueue, enqueue_many
from medianest_workers.platform.errors import (
    IdempotencyConflictError,
    PayloadInvalidError,
    UnknownJobKindError,
)
from medianest_workers.platform.rescuer import rescue
from tests.platform.conftest import REPO_ROOT, job_row


def job_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM mnw_jobs")).scalar_one()


def queue_length(redis_client: redis.Redis, prefix: str, queue: str) -> int:
    return int(redis_client.llen(f"{prefix}{queue}"))


def test_enqueue_writes_a_row_and_publishes(engine, session_factory, redis_client, redis_prefix):
    before = queue_length(redis_client, redis_prefix, "maintenance")
    job = enqueue("platform.noop", {"sleep": 0.5}, user_id="u-1", correlation_id="c-1")
    assert job.created and job.published and job.queue == "maintenance"
    row = job_row(engine, job.job_id)
    assert row["state"] == "queued"
    assert row["payload"] == {"sleep": 0.5}
    assert row["user_id"] == "u-1"
    assert row["correlation_id"] == "c-1"
    assert row["attempts"] == 0 and row["max_attempts"] == 3
    assert queue_length(redis_client, redis_prefix, "maintenance") == before + 1
    message = json.loads(redis_client.lindex(f"{redis_prefix}maintenance", 0))
    assert message["headers"]["id"] == job.job_id
    assert message["headers"]["task"] == "platform.noop"
    assert message["headers"]["mnw_correlation_id"] == "c-1"


@pytest.mark.parametrize(
    ("kind", "payload", "error", "field"),
    [
        ("no.such_kind", {}, UnknownJobKindError, None),
        ("platform.noop", {"sleep": "long"}, PayloadInvalidError, "sleep"),
        ("platform.noop", {"sleep": -1}, PayloadInvalidError, "sleep"),
        ("platform.noop", {"unexpected": 1}, PayloadInvalidError, "unexpected"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    engine, session_factory, kind, payload, error, field
):
    with pytest.raises(error) as caught:
        enqueue(kind, payload)
    if field is not None:
        assert caught.value.errors[0]["field"] == field
    assert job_count(engine) == 0


def test_the_same_idempotency_key_returns_the_same_job(engine, session_factory):
    first = enqueue("platform.noop", {}, idempotency_key="k-1")
    again = enqueue("platform.noop", {}, idempotency_key="k-1")
    assert again.job_id == first.job_id and not again.created
    with pytest.raises(IdempotencyConflictError) as conflict:
        enqueue("platform.noop", {"sleep": 1}, idempotency_key="k-1")
    assert conflict.value.job_id == first.job_id
    assert job_count(engine) == 1


def test_a_failed_job_releases_its_key(engine, session_factory):
    first = enqueue("platform.noop", {}, idempotency_key="k-2")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE mnw_jobs SET state = 'failed' WHERE id = :id"), {"id": first.job_id}
        )
    second = enqueue("platform.noop", {}, idempotency_key="k-2")
    assert second.created and second.job_id != first.job_id


def test_concurrent_enqueues_with_one_key_make_one_job(engine, session_factory):
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(
            pool.map(lambda _: enqueue("platform.noop", {}, idempotency_key="k-many"), range(20))
        )
    assert len({result.job_id for result in results}) == 1
    assert sum(result.created for result in results) == 1
    assert job_count(engine) == 1


def test_batch_enqueue_is_one_transaction(engine, session_factory, redis_client, redis_prefix):
    before = queue_length(redis_client, redis_prefix, "maintenance")
    requests = [JobRequest(kind="platform.noop", payload={"sleep": 0}) for _ in range(100)]
    results = enqueue_many(requests, enqueued_by="service:test")
    assert len({result.job_id for result in results}) == 100
    assert all(result.created and result.published for result in results)
    assert job_count(engine) == 100
    assert queue_length(redis_client, redis_prefix, "maintenance") == before + 100
    bad = [*requests[:3], JobRequest(kind="platform.noop", payload={"sleep": "x"})]
    with pytest.raises(PayloadInvalidError):
        enqueue_many(bad)
    assert job_count(engine) == 100


NOOP = JobRequest(kind="platform.noop")


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (JobRequest(kind="no.such_kind"), UnknownJobKindError),
        (JobRequest(kind="platform.noop", payload={"sleep": "x"}), PayloadInvalidError),
    ],
)
def test_a_batch_refusal_carries_the_index_of_the_request(engine, session_factory, bad, error):
    with pytest.raises(error) as caught:
        enqueue_many([NOOP, NOOP, bad, NOOP])
    assert caught.value.index == 2
    with pytest.raises(error) as single:
        enqueue(bad.kind, bad.payload)
    assert single.value.index is None  # no batch, no index
    assert job_count(engine) == 0


def test_a_key_given_twice_in_a_batch_names_both_requests(engine, session_factory) -> None:
    keyed = JobRequest(kind="platform.noop", idempotency_key="twice")
    with pytest.raises(IdempotencyConflictError) as caught:
        enqueue_many([NOOP, keyed, NOOP, keyed])
    assert caught.value.key == "twice"
    assert caught.value.index == 3
    assert caught.value.duplicate_of == 1
    assert job_count(engine) == 0


def test_a_batch_conflicting_with_a_stored_key_carries_the_index(engine, session_factory):
    first = enqueue("platform.noop", {}, idempotency_key="held")
    other = JobRequest(kind="platform.noop", payload={"sleep": 1}, idempotency_key="held")
    with pytest.raises(IdempotencyConflictError) as caught:
        enqueue_many([NOOP, NOOP, other])
    assert caught.value.index == 2
    assert caught.value.job_id == first.job_id
    assert caught.value.duplicate_of is None
    with pytest.raises(IdempotencyConflictError) as single:
        enqueue("platform.noop", {"sleep": 1}, idempotency_key="held")
    assert single.value.index is None
    assert job_count(engine) == 1


def test_redis_down_at_enqueue_keeps_the_job_for_the_rescuer(
    engine, session_factory, redis_client, redis_prefix
):
    """With the broker unreachable, enqueue() still accepts the job; the rescuer publishes it."""
    script = (
        "from medianest_workers.platform.enqueue import enqueue\n"
        "job = enqueue('platform.noop', {})\n"
        "print(job.job_id, job.published)\n"
    )
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:9/0", "PYTHONPATH": str(REPO_ROOT)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    job_id, published = result.stdout.split()
    assert published == "False"
    row = job_row(engine, job_id)
    assert row["state"] == "queued" and row["published_at"] is None

    before = queue_length(redis_client, redis_prefix, "maintenance")
    report = rescue(queued_after=300, stale_after=60, batch_size=100)
    assert report.republished_queued == [job_id]
    assert queue_length(redis_client, redis_prefix, "maintenance") == before + 1
    assert job_row(engine, job_id)["published_at"] is not None
    assert rescue(queued_after=300, stale_after=60, batch_size=100).republished_queued == []


def test_a_published_job_is_not_published_again(engine, session_factory):
    job = enqueue("platform.noop", {})
    row = job_row(engine, job.job_id)
    assert row["published_at"] == row["enqueued_at"]
    assert rescue(queued_after=60, stale_after=60, batch_size=100).republished_queued == []


def test_rescuer_republishes_after_a_wipe_and_requeues_lost_running_jobs(
    engine, session_factory, redis_client, redis_prefix
):
    queued = enqueue("platform.noop", {})
    lost = enqueue("platform.noop", {})
    exhausted = enqueue("platform.noop", {})
    redis_client.delete(f"{redis_prefix}maintenance")  # Redis restarted empty
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE mnw_jobs SET published_at = published_at - interval '1 hour' WHERE id = :id"
            ),
            {"id": queued.job_id},
        )
        connection.execute(
            text(
                "UPDATE mnw_jobs SET state = 'running', attempts = 1, worker = 'gone:1',"
                " heartbeat_at = timezone('UTC', now()) - interval '10 minutes' WHERE id = :id"
            ),
            {"id": lost.job_id},
        )
        connection.execute(
            text(
                "UPDATE mnw_jobs SET state = 'running', attempts = 3, worker = 'gone:1',"
                " heartbeat_at = timezone('UTC', now()) - interval '10 minutes' WHERE id = :id"
            ),
            {"id": exhausted.job_id},
        )
    report = rescue(queued_after=60, stale_after=60, batch_size=100)
    assert report.republished_queued == [queued.job_id]
    assert report.requeued_running == [lost.job_id]
    assert report.dead == [exhausted.job_id]
    assert queue_length(redis_client, redis_prefix, "maintenance") == 2
    assert job_row(engine, lost.job_id)["state"] == "queued"
    dead = job_row(engine, exhausted.job_id)
    assert dead["state"] == "dead" and dead["error_class"] == "AttemptsExhausted"


def test_two_rescuers_never_publish_a_row_twice(engine, session_factory):
    for _ in range(50):
        enqueue("platform.noop", {})
    with engine.begin() as connection:
        connection.execute(text("UPDATE mnw_jobs SET published_at = NULL"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(
            pool.map(lambda _: rescue(queued_after=60, stale_after=60, batch_size=500), range(2))
        )
    published = [job for report in reports for job in report.republished_queued]
    assert len(published) == 50 == len(set(published))


def test_expired_jobs_are_cancelled_not_run(engine, session_factory):
    job = enqueue("platform.noop", {}, expires_in=0.05)
    time.sleep(0.2)
    with engine.begin() as connection:
        connection.execute(text("UPDATE mnw_jobs SET published_at = NULL"))
    report = rescue(queued_after=60, stale_after=60, batch_size=100)
    assert report.expired == [job.job_id]
    row = job_row(engine, job.job_id)
    assert row["state"] == "cancelled" and row["error_class"] == "Expired"
