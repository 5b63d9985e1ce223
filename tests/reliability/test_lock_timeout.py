"""RELIABILITY 13: a table the jobs write held under ACCESS EXCLUSIVE past their lock_timeout."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from tests.helpers import wait_for
from tests.reliability.checker import database_now, not_terminal, running_ids
from tests.reliability.conftest import (
    Scenario,
    check_mixed,
    mixed_jobs,
)
from tests.reliability.test_worker_kill import expected_states

LOCK_TIMEOUT_MS = 500
HOLD_SECONDS = 2.5
CONCURRENCY = 4


def test_a_table_lock_past_lock_timeout_fails_fast_and_is_retried(scenario: Scenario) -> None:
    """Jobs meeting the lock give up after lock_timeout (OperationalError, retryable), record
    it, back off and run again once it is released; the waiting backends never outnumber the
    worker's processes (no pile-up of connections)."""
    specs = mixed_jobs(200, seed=13)
    scenario.start_worker(concurrency=CONCURRENCY, DB_LOCK_TIMEOUT_MS=str(LOCK_TIMEOUT_MS))
    ids = scenario.enqueue(specs)
    wait_for(lambda: len(not_terminal(scenario.engine, ids)) <= 170, timeout=60, interval=0.1)

    samples: list[tuple[int, int]] = []  # (backends waiting on a lock, backends of the database)
    errors: set[str] = set()  # jobs seen queued again with the lock timeout recorded
    held = threading.Event()
    released = threading.Event()

    def hold_lock() -> None:
        with scenario.engine.begin() as connection:
            connection.execute(text("LOCK TABLE rel_effects IN ACCESS EXCLUSIVE MODE"))
            held.set()
            time.sleep(HOLD_SECONDS)
        released.set()

    hit = running_ids(scenario.engine, ids)
    fault_at = database_now(scenario.engine)
    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert held.wait(timeout=10)
    locked_at = time.monotonic()
    first_error_after: float | None = None
    while not released.is_set():
        with scenario.engine.connect() as connection:
            samples.append(
                connection.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), count(*)"
                        " FROM pg_stat_activity WHERE datname = current_database()"
                    )
                ).one()
            )
            seen = connection.execute(
                text(
                    "SELECT id FROM mnw_jobs WHERE state = 'queued'"
                    " AND error_message LIKE '%lock timeout%'"
                )
            ).scalars()
            errors.update(seen)
        if errors and first_error_after is None:
            first_error_after = time.monotonic() - locked_at
        time.sleep(0.1)
    holder.join()

    report = check_mixed(scenario.engine, ids, specs, deadline=120, fault_at=fault_at, hit=hit)
    most_waiting = max(waiting for waiting, _ in samples)
    most_backends = max(total for _, total in samples)
    print(
        f"\nlock held {HOLD_SECONDS} s (lock_timeout {LOCK_TIMEOUT_MS} ms): faults=1"
        f" jobs_timed_out={len(errors)} first_error_after={first_error_after}"
        f" most_waiting={most_waiting} most_backends={most_backends} {report.summary()}"
    )
    report.assert_ok()
    assert report.lost == [] and report.duplicate_effects == []
    assert report.states == expected_states(specs)
    assert errors, "jobs must have met the lock and recorded its timeout"
    assert first_error_after is not None and first_error_after < HOLD_SECONDS
    # Each worker process waits on one statement at a time, bounded by lock_timeout.
    assert most_waiting <= CONCURRENCY
    # Per process: its pool (at most two connections: the job, the heartbeat), plus the
    # main process, this test's sampler and the lock holder.
    assert most_backends <= 2 * CONCURRENCY + 4
