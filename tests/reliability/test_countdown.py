"""RELIABILITY 18: a countdown beyond the visibility timeout.

The platform gives no way to enqueue with a countdown (far-future work is a beat schedule,
kept in PostgreSQL); its own countdowns (retry backoff) must end within the visibility
timeout, or the worker refuses to start. A message that carries a longer countdown anyway
(sent by hand, or by an older client) may be handed out again by Redis once the timeout
passes while it waits in a worker: the job still runs once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from tests.helpers import free_port
from tests.platform.conftest import REPO_ROOT
from tests.reliability.checker import check
from tests.reliability.conftest import STALE_SECONDS, Scenario, mixed_jobs

VISIBILITY = 60

SEND_LATE = """
import sys
from medianest_workers.platform.celery_app import app
app.send_task(sys.argv[1], task_id=sys.argv[2], queue="media", routing_key="media",
              countdown=float(sys.argv[3]))
"""


def test_a_worker_refuses_a_retry_delay_beyond_the_visibility_timeout(
    scenario: Scenario,
) -> None:
    worker = scenario.start_worker(
        JOB_CATALOG="tests.reliability.long_retry_catalog",
        VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY),
    )
    assert worker.process.wait(timeout=60) != 0, worker.log()
    log = worker.log()
    assert "the worker refuses to start" in log, log
    assert "reliability.late_retry: time limit or retry delay 120 s is not below" in log, log
    assert f"VISIBILITY_TIMEOUT_SECONDS={VISIBILITY}" in log
    # The scenario kinds' own bounds (20 s, 1 s) fit: only the late retry is named.
    assert "reliability.work:" not in log


@pytest.mark.long
def test_a_message_delayed_past_the_visibility_timeout_runs_its_job_once(
    scenario: Scenario,
) -> None:
    """The job's only message says "in VISIBILITY + 15 s" (past the visibility timeout while
    the worker holds it): the job runs once, after its countdown, whatever Redis does."""
    env = {**os.environ, **scenario.env(), "PYTHONPATH": str(REPO_ROOT)}
    late_spec = {"kind": "reliability.work", "payload": {}, "key": "late"}
    # Accepted while the broker is unreachable: the row is written, no message goes out.
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    scenario_redis, scenario.redis_url = scenario.redis_url, unreachable
    (late_id,) = scenario.enqueue([late_spec])
    scenario.redis_url = scenario_redis
    subprocess.run(
        [sys.executable, "-c", SEND_LATE, "reliability.work", late_id, str(VISIBILITY + 15)],
        env={**env, "REDIS_URL": scenario.redis_url},
        cwd=REPO_ROOT,
        check=True,
        timeout=60,
    )
    short = {"JOB_CATALOG": "tests.reliability.short_catalog"}
    worker = scenario.start_worker(
        concurrency=2, VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY), **short
    )
    specs = mixed_jobs(100, seed=29)
    ids = scenario.enqueue(specs)
    sent = time.monotonic()
    report = check(
        scenario.engine,
        [late_id, *ids],
        deadline=VISIBILITY + 90,
        stale_after=STALE_SECONDS,
    )
    print(f"\ncountdown {VISIBILITY + 15} s > visibility {VISIBILITY} s: {report.summary()}")
    report.assert_ok()
    with scenario.engine.connect() as connection:
        runs = connection.execute(
            text("SELECT count(*) FROM rel_runs WHERE job_id = :id"), {"id": late_id}
        ).scalar_one()
    assert runs == 1
    assert time.monotonic() - sent >= VISIBILITY  # it waited for its countdown
    deliveries = worker.log().count(f"[{late_id}] received")
    print(json.dumps({"deliveries of the late message": deliveries}))
    assert deliveries >= 1
