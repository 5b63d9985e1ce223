"""RELIABILITY 12: the PostgreSQL backend serving a job SIGSTOPped past the statement timeout."""

from __future__ import annotations

import os
import signal
import time

from sqlalchemy import text

from tests.helpers import wait_for
from tests.reliability.checker import database_now, running_ids
from tests.reliability.conftest import (
    Scenario,
    check_mixed,
    mixed_jobs,
)
from tests.reliability.test_worker_kill import expected_states

STATEMENT_TIMEOUT_MS = 2000
PAUSE_SECONDS = 12.0  # past the statement timeout and the job's soft limit (4 s), not its hard
SOFT_LIMIT = 4.0
HARD_LIMIT = 20.0


def test_a_paused_backend_ends_the_job_by_its_soft_limit(scenario: Scenario) -> None:
    """A stopped backend cannot enforce its own statement_timeout: the job's soft time limit
    must interrupt the wait, be recorded as the attempt's error, and the job run again on
    another connection, long before the hard limit kills the child."""
    target = {
        "kind": "reliability.bounded",
        "payload": {"sleep": 1.5, "sleep_in_database": True},
        "key": "paused",
    }
    specs = [target, *mixed_jobs(120, seed=17)]
    worker = scenario.start_worker(concurrency=4, DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS))
    ids = scenario.enqueue(specs)
    target_id = ids[0]

    def sleeping_backend() -> int | None:
        rows = scenario.postgres.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND query LIKE 'SELECT pg_sleep%'"
        )
        return rows[0][0] if rows else None

    backend = wait_for(sleeping_backend, timeout=60, interval=0.02)
    hit = running_ids(scenario.engine, ids)
    fault_at = database_now(scenario.engine)
    paused_at = time.monotonic()
    os.kill(backend, signal.SIGSTOP)
    try:
        ended = wait_for(
            lambda: _attempt_ended(scenario, target_id), timeout=PAUSE_SECONDS, interval=0.05
        )
        ended_after = time.monotonic() - paused_at
        remaining = PAUSE_SECONDS - (time.monotonic() - paused_at)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        os.kill(backend, signal.SIGCONT)

    report = check_mixed(scenario.engine, ids, specs, deadline=120, fault_at=fault_at, hit=hit)
    print(
        f"\nbackend paused {PAUSE_SECONDS} s: faults=1 attempt_ended_after={ended_after:.1f} s"
        f" {report.summary()}"
    )
    report.assert_ok()
    assert report.lost == [] and report.duplicate_effects == []
    assert report.states == expected_states(specs)
    # The attempt ended by its soft limit (4 s), recorded as its error and retried, not by
    # the hard limit (20 s) killing a hung child.
    assert ended == "SoftTimeLimitExceeded", ended
    assert ended_after < SOFT_LIMIT + 2 < HARD_LIMIT, ended_after  # the soft limit counts
    # from the job's start, a little before the pause
    log = worker.log()
    assert f"job {target_id} attempt 1/5 failed (SoftTimeLimitExceeded)" in log, log
    assert "Hard time limit" not in log
    with scenario.engine.connect() as connection:
        attempts = connection.execute(
            text("SELECT attempts FROM mnw_jobs WHERE id = :id"), {"id": target_id}
        ).scalar_one()
    assert attempts == 2


def _attempt_ended(scenario: Scenario, job_id: str) -> str | None:
    """The error the first attempt recorded once it ended (the job queued for its retry)."""
    with scenario.engine.connect() as connection:
        row = connection.execute(
            text("SELECT state, attempts, error_class FROM mnw_jobs WHERE id = :id"),
            {"id": job_id},
        ).one()
    if row.attempts == 1 and row.state == "queued":
        return row.error_class
    return "retried before it was seen queued" if row.attempts > 1 else None
