"""Successes written off the job's path (platform/finisher.py), in this process and in real
worker children, against real PostgreSQL and Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from medianest_workers.platform import finisher, ledger
from medianest_workers.platform.enqueue import JobRequest, enqueue, enqueue_many
from tests.helpers import wait_for
from tests.platform.conftest import job_row, wait_terminal


@pytest.fixture
def claimed(engine: Engine, session_factory) -> Iterator[list[str]]:
    """Five queued noop jobs claimed by worker `w-test` (running)."""
    jobs = enqueue_many([JobRequest(kind="platform.noop") for _ in range(5)])
    for job in jobs:
        assert not isinstance(
            ledger.claim(job.job_id, worker="w-test", stale_seconds=60), ledger.Skip
        )
    yield [job.job_id for job in jobs]


@pytest.fixture
def enabled() -> Iterator[None]:
    finisher.enable()
    try:
        yield
    finally:
        finisher.drain()
        finisher._after_fork_in_child()  # back to writing at once


def states(engine: Engine, ids: list[str]) -> list[str]:
    with engine.connect() as connection:
        found = dict(
            connection.execute(
                text("SELECT id, state FROM mnw_jobs WHERE id = ANY(:ids)"), {"ids": ids}
            ).all()
        )
    return [found[job_id] for job_id in ids]


def test_outside_a_worker_child_the_end_is_written_at_once(engine, claimed) -> None:
    finisher.record_success(claimed[0], worker="w-test", result={"n": 1})
    row = job_row(engine, claimed[0])
    assert row["state"] == "succeeded" and row["result"] == {"n": 1}


def test_in_a_worker_child_the_end_is_handed_over_then_written(
    engine, claimed, enabled, monkeypatch
) -> None:
    gate = threading.Event()
    real_finish = ledger.finish

    def held_finish(*args, **kwargs):  # the thread's write waits until the test lets it
        gate.wait(10)
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(ledger, "finish", held_finish)
    for n, job_id in enumerate(claimed):
        finisher.record_success(job_id, worker="w-test", result={"n": n})
    assert states(engine, claimed) == ["running"] * 5  # returned before any write
    gate.set()
    finisher.drain()
    assert states(engine, claimed) == ["succeeded"] * 5
    assert [job_row(engine, job_id)["result"] for job_id in claimed] == [{"n": n} for n in range(5)]


def test_a_database_away_for_a_moment_delays_the_end(engine, claimed, enabled, monkeypatch):
    monkeypatch.setattr(finisher, "RETRY_DELAYS_SECONDS", (0.05, 0.05, 0.05))
    failures = iter([True, True])
    real_finish = ledger.finish

    def flaky_finish(*args, **kwargs):
        if next(failures, False):
            raise OperationalError("UPDATE", {}, Exception("server closed the connection"))
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(ledger, "finish", flaky_finish)
    finisher.record_success(claimed[0], worker="w-test", result=None)
    finisher.drain()
    assert job_row(engine, claimed[0])["state"] == "succeeded"


def test_an_end_never_written_is_left_to_the_rescuer(
    engine, claimed, enabled, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(finisher, "RETRY_DELAYS_SECONDS", (0.01,))

    def down(*_args, **_kwargs):
        raise OperationalError("UPDATE", {}, Exception("connection refused"))

    monkeypatch.setattr(ledger, "finish", down)
    finisher.record_success(claimed[0], worker="w-test", result=None)
    finisher.drain()
    assert job_row(engine, claimed[0])["state"] == "running"  # the rescuer's to give back
    assert "the rescuer will run it again" in caplog.text


def test_a_taken_over_job_keeps_its_new_owner(engine, claimed, caplog) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE mnw_jobs SET worker = 'w-other' WHERE id = :id"), {"id": claimed[0]}
        )
    finisher.record_success(claimed[0], worker="w-test", result=None)
    assert job_row(engine, claimed[0])["state"] == "running"
    assert "taken over meanwhile" in caplog.text


def test_a_child_exiting_waits_for_its_pending_end(
    engine: Engine, session_factory, start_worker
) -> None:
    """WORKER_MAX_TASKS_PER_CHILD=1: the child exits right after its job. The test holds the
    job's row locked past that exit, so the end is still pending when the child leaves: the
    drain at exit must wait for it (billiard gives a leaving child 1 s, the lock lasts 3)."""
    start_worker(concurrency=1, WORKER_MAX_TASKS_PER_CHILD="1")
    job = enqueue("platform.noop", {"sleep": 0.5})
    wait_for(lambda: job_row(engine, job.job_id)["state"] == "running", timeout=30)
    with engine.connect() as connection, connection.begin():
        connection.execute(
            text("SELECT 1 FROM mnw_jobs WHERE id = :id FOR UPDATE"), {"id": job.job_id}
        )
        time.sleep(3)
    row = wait_terminal(engine, job.job_id, timeout=30)
    assert row["state"] == "succeeded" and row["attempts"] == 1
    later = [enqueue("platform.noop", {}) for _ in range(6)]  # new children keep working
    for other in later:
        assert wait_terminal(engine, other.job_id, timeout=60)["state"] == "succeeded"
