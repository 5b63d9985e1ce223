"""RELIABILITY 5: SIGTERM to a worker (a deploy) while long jobs and a backlog are in flight."""

from __future__ import annotations

import signal

from sqlalchemy import text

from tests.helpers import wait_for
from tests.reliability.checker import database_now, running_ids
from tests.reliability.conftest import (
    Scenario,
    check_mixed,
    mixed_jobs,
)
from tests.reliability.test_worker_kill import expected_states

LONG_SECONDS = 6.0


def test_sigterm_during_long_jobs_finishes_them_and_hands_the_rest_back(
    scenario: Scenario,
) -> None:
    """Warm shutdown: the running long jobs finish (once), the messages the worker had
    reserved go back to Redis, and the next worker runs the rest. 0 lost, 0 duplicates."""
    long_specs = [
        {"kind": "reliability.work", "payload": {"sleep": LONG_SECONDS}, "key": f"long-{n}"}
        for n in range(2)
    ]
    specs = [*long_specs, *mixed_jobs(200, seed=5)]
    worker = scenario.start_worker(concurrency=4)
    ids = scenario.enqueue(specs)
    long_ids = ids[:2]
    wait_for(
        lambda: set(running_ids(scenario.engine, long_ids)) == set(long_ids),
        timeout=60,
        interval=0.05,
    )
    hit = running_ids(scenario.engine, ids)
    fault_at = database_now(scenario.engine)
    worker.process.send_signal(signal.SIGTERM)  # the main process only, as a deploy does
    assert worker.process.wait(timeout=LONG_SECONDS + 30) == 0, worker.log()
    log = worker.log()
    assert "warm shutdown" in log.lower(), log
    with scenario.engine.connect() as connection:
        long_rows = connection.execute(
            text("SELECT state, attempts FROM mnw_jobs WHERE id = ANY(:ids)"), {"ids": long_ids}
        ).all()
    # Both long jobs finished within the warm shutdown, on their first attempt.
    assert sorted(long_rows) == [("succeeded", 1), ("succeeded", 1)], long_rows

    scenario.start_worker(concurrency=4)
    report = check_mixed(scenario.engine, ids, specs, deadline=120, fault_at=fault_at, hit=hit)
    print(f"\nSIGTERM during long jobs: faults=1 hit={len(hit)} {report.summary()}")
    report.assert_ok()
    assert report.lost == [] and report.duplicate_effects == []
    assert report.states == expected_states(specs)
    with scenario.engine.connect() as connection:
        long_runs = connection.execute(
            text("SELECT count(*) FROM rel_runs WHERE job_id = ANY(:ids)"), {"ids": long_ids}
        ).scalar_one()
    assert long_runs == 2  # no second execution of a job that finished in the shutdown
