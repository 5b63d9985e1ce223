"""RELIABILITY 2: the worker's main process SIGKILLed with a few hundred jobs in flight."""

from __future__ import annotations

import os
import signal
import time

from tests.helpers import wait_for
from tests.reliability.checker import database_now, not_terminal, running_ids
from tests.reliability.conftest import (
    Scenario,
    check_mixed,
    mixed_jobs,
)


def expected_states(specs: list[dict]) -> dict[str, int]:
    broken = sum(1 for spec in specs if spec["payload"].get("broken"))
    return {"failed": broken, "succeeded": len(specs) - broken}


def test_sigkill_of_the_worker_main_process_loses_nothing(scenario: Scenario) -> None:
    """Its children and its reserved messages are orphaned: the rescuer re-queues what ran
    on them (their processes are gone, or their heartbeats stop) and re-publishes what sat
    unacknowledged in Redis; a new worker runs it all. 0 lost, 0 duplicate effects."""
    specs = mixed_jobs(300)
    worker = scenario.start_worker(concurrency=4)
    rescuer = scenario.start_rescuer(queued_after=10)
    ids = scenario.enqueue(specs)
    wait_for(lambda: len(not_terminal(scenario.engine, ids)) <= 240, timeout=60, interval=0.2)
    wait_for(lambda: running_ids(scenario.engine, ids), timeout=10, interval=0.05)
    hit = running_ids(scenario.engine, ids)
    fault_at = database_now(scenario.engine)
    os.kill(worker.process.pid, signal.SIGKILL)
    time.sleep(2)
    scenario.start_worker(concurrency=4)

    report = check_mixed(scenario.engine, ids, specs, deadline=150, fault_at=fault_at, hit=hit)
    print(f"\nSIGKILL worker main: faults=1 hit={len(hit)} {report.summary()}")
    print(
        f"rescuer: requeued_running={rescuer.total('requeued_running')}"
        f" republished_queued={rescuer.total('republished_queued')}"
    )
    report.assert_ok()
    assert report.lost == [] and report.duplicate_effects == []
    assert report.states == expected_states(specs)
    assert hit, "the kill must strike running jobs"
    # Which path brought them back: the rescuer (the visibility timeout is 2 h here).
    assert rescuer.total("requeued_running") + rescuer.total("republished_queued") > 0
