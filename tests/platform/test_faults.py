"""Faults against a Redis server the test owns: restarted empty with jobs queued and running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from medianest_workers.db import migrate
from medianest_workers.db.session import sqlalchemy_url
from medianest_workers.runtime.embedded import EmbeddedValkey
from tests.helpers import wait_for
from tests.platform.conftest import REPO_ROOT, effects, runs

ENQUEUE = """
import sys
from medianest_workers.platform.enqueue import JobRequest, enqueue_many
jobs = enqueue_many([JobRequest(kind="tests.effect", payload={"sleep": float(sys.argv[2])})
                     for _ in range(int(sys.argv[1]))])
print(" ".join(job.job_id for job in jobs))
"""

RESCUE = """
from medianest_workers.platform.rescuer import rescue
print(rescue(queued_after=1, stale_after=3, batch_size=500).as_dict())
"""


def run_python(code: str, redis_url: str, *args: str) -> str:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(REPO_ROOT),
        "JOB_CATALOG": "tests.platform.sample_catalog",
    }
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_job_claimed_while_its_database_refuses_connections_runs_when_it_returns(
    engine, session_factory, start_worker, scratch_database: str, tmp_path: Path
) -> None:
    """No rescuer runs here: the worker itself must bring the message back."""
    migrate.upgrade(scratch_database)
    name = scratch_database.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    env = {**os.environ, "DATABASE_URL": scratch_database, "PYTHONPATH": str(REPO_ROOT)}
    enqueued = subprocess.run(
        [
            sys.executable,
            "-c",
            "from medianest_workers.platform.enqueue import enqueue;"
            "print(enqueue('platform.noop', {}).job_id)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    job_id = enqueued.stdout.strip()

    def allow_connections(allowed: bool) -> None:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}'
            )
            connection.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )

    allow_connections(False)
    try:
        worker = start_worker(DATABASE_URL=scratch_database)
        wait_for(lambda: "cannot reach the ledger" in worker.log(), timeout=30)
    finally:
        allow_connections(True)

    scratch = create_engine(sqlalchemy_url(scratch_database), poolclass=NullPool)
    try:
        wait_for(lambda: job_state(scratch, job_id) == "succeeded", timeout=60, interval=0.5)
    finally:
        scratch.dispose()


def job_state(engine: Engine, job_id: str) -> str:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT state FROM mnw_jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()


def states(engine: Engine, ids: list[str]) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT state, count(*) FROM mnw_jobs WHERE id = ANY(:ids) GROUP BY state"),
            {"ids": ids},
        )
        return dict(rows.all())


def test_redis_restarted_empty_loses_no_job(
    engine, session_factory, job_tables, start_worker, tmp_path: Path
) -> None:
    redis = EmbeddedValkey(tmp_path / "valkey-1", persist=False)
    url = redis.start()
    port = int(url.rsplit(":", 1)[1])
    try:
        worker = start_worker(concurrency=2, REDIS_URL=url)
        ids = run_python(ENQUEUE, url, "30", "0.3").split()
        assert len(ids) == 30
        wait_for(lambda: states(engine, ids).get("succeeded", 0) >= 2, timeout=60)

        redis.kill()  # jobs queued in Redis and running on the worker: all of it is gone
        time.sleep(2)
        redis = EmbeddedValkey(tmp_path / "valkey-2", persist=False, port=port)
        redis.start()

        def all_done() -> bool:
            if states(engine, ids).get("succeeded", 0) == len(ids):
                return True
            run_python(RESCUE, url)
            return False

        wait_for(all_done, timeout=120, interval=2)
        for job_id in ids:
            assert effects(engine, job_id) == 1
            assert runs(engine, job_id) <= 2
        assert "Connection to broker lost" in worker.log() or "Cannot connect" in worker.log()
    finally:
        redis.stop()


def test_a_silent_redis_stalls_the_worker_but_loses_nothing(
    engine, session_factory, job_tables, start_worker, tmp_path: Path
) -> None:
    """RELIABILITY 7: Redis SIGSTOPped (a half-open peer, no reset) for longer than the socket
    timeout, then resumed: the worker notices, reconnects, and every job ends succeeded once."""
    redis = EmbeddedValkey(tmp_path / "valkey", persist=False)
    url = redis.start()
    try:
        worker = start_worker(concurrency=2, REDIS_URL=url, REDIS_SOCKET_TIMEOUT_SECONDS="3")
        before = run_python(ENQUEUE, url, "5", "0.1").split()
        wait_for(lambda: states(engine, before).get("succeeded", 0) == 5, timeout=60)

        pid = redis.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(10)  # over three socket timeouts of silence
        finally:
            os.kill(pid, signal.SIGCONT)
        after = run_python(ENQUEUE, url, "5", "0.1").split()
        wait_for(lambda: states(engine, after).get("succeeded", 0) == 5, timeout=90)
        for job_id in before + after:
            assert effects(engine, job_id) == 1
        assert worker.process.poll() is None, "the worker must survive the stall"
    finally:
        redis.stop()
