"""Jobs on a real Celery worker against real Redis and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, text

from medianest_workers.platform import ledger
from medianest_workers.platform.celery_app import app
from medianest_workers.platform.enqueue import enqueue, publish
from medianest_workers.platform.error_log import SYSTEM_USER_ID
from tests.helpers import wait_for
from tests.platform.conftest import effects, job_row, runs, wait_terminal


def test_noop_runs_and_succeeds(engine: Engine, session_factory, start_worker) -> None:
    worker = start_worker()
    job = enqueue("platform.noop", {"sleep": 0}, correlation_id="corr-noop-1")
    row = wait_terminal(engine, job.job_id)
    succeeded = [line for line in worker.log().splitlines() if job.job_id in line]
    assert any("cid=corr-noop-1" in line and "succeeded" in line for line in succeeded), (
        worker.log()
    )
    assert row["state"] == "succeeded"
    assert row["attempts"] == 1
    assert row["correlation_id"] == "corr-noop-1"
    assert row["started_at"] is not None and row["finished_at"] >= row["started_at"]


def test_retryable_errors_back_off_then_succeed(engine, session_factory, job_tables, start_worker):
    start_worker()
    job = enqueue("tests.flaky", {"times": 2})
    row = wait_terminal(engine, job.job_id)
    assert row["state"] == "succeeded"
    assert row["attempts"] == 3
    assert runs(engine, job.job_id) == 3
    assert effects(engine, job.job_id) == 1


def test_permanent_failure_is_recorded_with_an_error_log(
    engine, session_factory, job_tables, start_worker
):
    start_worker()
    job = enqueue("tests.broken", {}, correlation_id="corr-broken-1")
    row = wait_terminal(engine, job.job_id)
    assert row["state"] == "failed"
    assert row["attempts"] == 1
    assert row["error_class"] == "PermanentError"
    assert "malformed document" in row["error_message"]
    with engine.connect() as connection:
        log = (
            connection.execute(
                text("SELECT * FROM error_logs WHERE correlation_id = 'corr-broken-1'")
            )
            .mappings()
            .one()
        )
    assert log["user_id"] == SYSTEM_USER_ID
    assert log["error_code"] == "PermanentError"
    assert log["request_path"] == "job:tests.broken"
    assert log["metadata"]["jobId"] == job.job_id


def test_killed_child_mid_job_runs_again_and_succeeds_once(
    engine, session_factory, job_tables, start_worker
):
    worker = start_worker()
    job = enqueue("tests.effect", {"sleep": 3})
    pid = wait_for(lambda: _running_pid(engine, job.job_id), timeout=30)
    os.kill(int(pid), signal.SIGKILL)
    row = wait_terminal(engine, job.job_id, timeout=30)
    assert row["state"] == "succeeded", worker.log()
    assert row["attempts"] == 2
    assert runs(engine, job.job_id) == 2
    assert effects(engine, job.job_id) == 1


def test_poison_pill_ends_dead_and_the_worker_keeps_working(
    engine, session_factory, job_tables, start_worker
):
    worker = start_worker()
    poison = enqueue("tests.kill_self", {"times": 10}, correlation_id="corr-poison-1")
    row = wait_terminal(engine, poison.job_id, timeout=60)
    assert row["state"] == "dead", worker.log()
    assert row["attempts"] == 4  # three executions, then the fourth claim declares it dead
    assert runs(engine, poison.job_id) == 3
    assert row["error_class"] == "AttemptsExhausted"
    with engine.connect() as connection:
        log = (
            connection.execute(
                text("SELECT * FROM error_logs WHERE correlation_id = 'corr-poison-1'")
            )
            .mappings()
            .one()
        )
    assert log["error_code"] == "AttemptsExhausted"
    assert log["metadata"] == {"jobId": poison.job_id, "kind": "tests.kill_self", "attempts": 3}
    healthy = enqueue("platform.noop", {})
    assert wait_terminal(engine, healthy.job_id)["state"] == "succeeded"


def test_duplicate_delivery_of_a_finished_job_has_no_second_effect(
    engine, session_factory, job_tables, start_worker
):
    worker = start_worker()
    job = enqueue("tests.effect", {})
    assert wait_terminal(engine, job.job_id)["state"] == "succeeded"
    assert publish([(job.job_id, "tests.effect", "media", "dup")]) == set()
    # The duplicate was delivered and looked at: the worker says why it did not run it.
    wait_for(lambda: f"job {job.job_id} (tests.effect) not run: job is succeeded" in worker.log())
    assert runs(engine, job.job_id) == 1
    assert effects(engine, job.job_id) == 1
    assert job_row(engine, job.job_id)["attempts"] == 1


def test_a_job_cancelled_while_it_sleeps_ends_cancelled(engine, session_factory, start_worker):
    start_worker()
    job = enqueue("platform.noop", {"sleep": 25})
    wait_for(lambda: job_row(engine, job.job_id)["state"] == "running", timeout=30)
    started = time.monotonic()
    assert not ledger.cancel(job.job_id).immediate
    row = wait_terminal(engine, job.job_id, timeout=20)
    assert row["state"] == "cancelled", row
    assert row["error_class"] == "JobCancelledError"
    assert time.monotonic() - started < 10  # a heartbeat or two, not the 25 s sleep


def test_a_job_cancelled_while_queued_is_revoked_not_succeeded_in_flower(
    engine, session_factory, start_worker
):
    """Flower learns a task's state from worker events: a cancelled job must not be SUCCESS."""
    events = TaskEvents()
    with events.capturing():
        job = enqueue("platform.noop", {})  # no worker yet: the message waits in its queue
        assert ledger.cancel(job.job_id).immediate
        start_worker()
        marker = enqueue("platform.noop", {})  # the same queue, after the cancelled one
        assert wait_terminal(engine, marker.job_id)["state"] == "succeeded"
        wait_for(lambda: "task-succeeded" in events.of(marker.job_id), timeout=30)
        wait_for(lambda: "task-revoked" in events.of(job.job_id), timeout=30)
    assert "task-succeeded" not in events.of(job.job_id)
    assert job_row(engine, job.job_id)["state"] == "cancelled"


class TaskEvents:
    """The Celery events of this run's workers (what Flower reads), by task id."""

    def __init__(self) -> None:
        self._seen: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._receiver: Any = None

    def of(self, task_id: str) -> list[str]:
        with self._lock:
            return list(self._seen.get(task_id, []))

    def _on_event(self, event: dict[str, Any]) -> None:
        if "uuid" in event:
            with self._lock:
                self._seen.setdefault(event["uuid"], []).append(event["type"])

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        ready = threading.Event()

        def capture() -> None:
            with app.connection_for_read() as connection:
                receiver = app.events.Receiver(connection, handlers={"*": self._on_event})
                bound = receiver.on_consume_ready

                def on_consume_ready(*args: Any, **kwargs: Any) -> None:
                    bound(*args, **kwargs)
                    ready.set()

                receiver.on_consume_ready = on_consume_ready
                self._receiver = receiver
                receiver.capture(limit=None, timeout=None, wakeup=False)

        thread = threading.Thread(target=capture, daemon=True)
        thread.start()
        assert ready.wait(timeout=30)
        try:
            yield
        finally:
            self._receiver.should_stop = True
            thread.join(timeout=10)


def _running_pid(engine: Engine, job_id: str) -> int | None:
    with engine.connect() as connection:
        pid = connection.execute(
            text("SELECT pid FROM test_job_runs WHERE job_id = :id ORDER BY at LIMIT 1"),
            {"id": job_id},
        ).scalar_one_or_none()
    return pid
