"""RELIABILITY 11: PostgreSQL restarted (`pg_ctl restart -m immediate`) mid-batch."""

from __future__ import annotations

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

BATCH_ROWS = 20


def test_postgres_restarted_mid_batch_rolls_the_batch_back_and_the_job_retries(
    scenario: Scenario,
) -> None:
    """Every backend dies with its transaction: a batch half written leaves no row, its job
    fails with a retryable OperationalError and runs again whole; jobs claimed while the
    server is down come back; nothing is lost, no effect is doubled."""
    batch_specs = [
        {
            "kind": "reliability.work",
            "payload": {"sleep": 4.0, "batch": BATCH_ROWS},
            "key": f"batch-{n}",
        }
        for n in range(3)
    ]
    specs = [*batch_specs, *mixed_jobs(200, seed=7)]
    scenario.start_worker(concurrency=4)
    rescuer = scenario.start_rescuer()
    ids = scenario.enqueue(specs)
    batch_ids = ids[:3]
    wait_for(lambda: len(running_ids(scenario.engine, batch_ids)) >= 2, timeout=60, interval=0.05)
    time.sleep(1.5)  # well into their transactions
    in_batch = scenario.postgres.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
        " AND datname = current_database()"
    )[0][0]
    hit = running_ids(scenario.engine, ids)
    fault_at = database_now(scenario.engine)
    started = time.monotonic()
    scenario.postgres.restart_immediately()
    print(f"\nPostgreSQL restart took {time.monotonic() - started:.1f} s")

    report = check_mixed(scenario.engine, ids, specs, deadline=150, fault_at=fault_at, hit=hit)
    print(
        f"PostgreSQL restart mid-batch: faults=1 open_batches={in_batch} hit={len(hit)}"
        f" {report.summary()} rescuer_requeued={rescuer.total('requeued_running')}"
    )
    report.assert_ok()
    assert report.lost == [] and report.duplicate_effects == []
    assert report.states == expected_states(specs)
    assert in_batch >= 2, "the restart must strike open batch transactions"
    with scenario.engine.connect() as connection:
        batch_runs = connection.execute(
            text("SELECT count(*) FROM rel_runs WHERE job_id = ANY(:ids)"), {"ids": batch_ids}
        ).scalar_one()
        batch_rows = connection.execute(
            text("SELECT count(*) FROM rel_batch WHERE job_id = ANY(:ids)"), {"ids": batch_ids}
        ).scalar_one()
    assert batch_runs >= 3 + 2  # the struck batches ran again
    assert batch_rows == 3 * BATCH_ROWS  # one whole batch each: the struck ones left nothing
