"""The ledger as the one writer of job state: its clock, its transactions, its rescuer rows."""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import sys
from pathlib import Path

import time_machine
from sqlalchemy import Engine, text

from medianest_workers.platform import ledger
from medianest_workers.platform.enqueue import enqueue
from medianest_workers.platform.rescuer import RESCUE_KIND, rescue, rescue_round
from tests.platform.conftest import job_row

PACKAGE = Path(__file__).resolve().parents[2] / "medianest_workers"
#: What writes mnw_jobs, in SQL or through the Job model.
_WRITES = re.compile(
    r"(UPDATE|INSERT INTO|DELETE FROM)\s+mnw_jobs|\b(update|insert|delete)\(\s*Job\b", re.IGNORECASE
)


def test_every_write_of_mnw_jobs_is_in_the_ledger() -> None:
    writers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _WRITES.search(path.read_text(encoding="utf-8"))
    )
    assert writers == ["platform/ledger.py"]


def _database_now(engine: Engine) -> dt.datetime:
    with engine.connect() as connection:
        return connection.execute(text("SELECT timezone('UTC', now())")).scalar_one()


def test_enqueue_stamps_times_from_the_database_clock(engine, session_factory) -> None:
    with time_machine.travel(dt.datetime(2001, 1, 1, tzinfo=dt.UTC), tick=False):
        job = enqueue("platform.noop", {}, expires_in=60)
    row = job_row(engine, job.job_id)
    database_now = _database_now(engine)
    assert abs(database_now - row["enqueued_at"]) < dt.timedelta(seconds=30), row
    assert row["published_at"] == row["enqueued_at"]
    assert row["expires_at"] - row["enqueued_at"] == dt.timedelta(seconds=60)
    assert job.row is not None and job.row["enqueued_at"] == row["enqueued_at"]


def _running(engine: Engine, job_id: str, *, attempts: int, worker: str, stale: bool) -> None:
    age = "interval '10 minutes'" if stale else "interval '0 seconds'"
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE mnw_jobs SET state = 'running', attempts = :attempts, worker = :worker,"
                f" heartbeat_at = timezone('UTC', now()) - {age} WHERE id = :id"
            ),
            {"id": job_id, "attempts": attempts, "worker": worker},
        )


def _error_logs(engine: Engine, job_id: str) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM error_logs WHERE metadata->>'jobId' = :id"), {"id": job_id}
        ).mappings()
        return [dict(row) for row in rows]


def test_dead_and_its_error_log_commit_together(engine, session_factory) -> None:
    job = enqueue("platform.noop", {}, correlation_id="corr-dead-tx")
    _running(engine, job.job_id, attempts=3, worker="gone:1", stale=True)
    with ledger.get_engine().connect() as connection:
        transaction = connection.begin()
        assert ledger.mark_dead(connection, [job.job_id]) == [job.job_id]
        transaction.rollback()  # a crash before the commit: neither the state nor the row
    assert job_row(engine, job.job_id)["state"] == "running"
    assert _error_logs(engine, job.job_id) == []
    with ledger.get_engine().begin() as connection:
        ledger.mark_dead(connection, [job.job_id])
    assert job_row(engine, job.job_id)["state"] == "dead"
    (log,) = _error_logs(engine, job.job_id)
    assert log["error_code"] == ledger.DEAD_ERROR_CLASS
    assert log["correlation_id"] == "corr-dead-tx"
    assert log["metadata"] == {"jobId": job.job_id, "kind": "platform.noop", "attempts": 3}


def test_an_error_log_the_table_refuses_does_not_undo_the_state(engine, session_factory) -> None:
    job = enqueue("platform.noop", {})
    _running(engine, job.job_id, attempts=3, worker="gone:1", stale=True)
    with engine.begin() as connection:
        connection.execute(
            text(
                "ALTER TABLE error_logs ADD CONSTRAINT test_refuse"
                " CHECK (error_code <> 'AttemptsExhausted') NOT VALID"
            )
        )
    try:
        with ledger.get_engine().begin() as connection:
            assert ledger.mark_dead(connection, [job.job_id]) == [job.job_id]
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE error_logs DROP CONSTRAINT test_refuse"))
    assert job_row(engine, job.job_id)["state"] == "dead"
    assert _error_logs(engine, job.job_id) == []


def _gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def test_a_job_whose_local_worker_process_is_gone_is_rescued_without_waiting(
    engine, session_factory
) -> None:
    job = enqueue("platform.noop", {})
    alive = enqueue("platform.noop", {})
    host = socket.gethostname()
    _running(engine, job.job_id, attempts=1, worker=f"{host}:{_gone_pid()}", stale=False)
    _running(engine, alive.job_id, attempts=1, worker=ledger.worker_identity(), stale=False)
    report = rescue(queued_after=300, stale_after=3600, batch_size=100)
    assert report.requeued_running == [job.job_id]
    row = job_row(engine, job.job_id)
    assert row["state"] == "queued" and row["worker"] is None
    assert row["error_class"] == "WorkerLost"
    assert row["error_message"] == ledger.WORKER_GONE_MESSAGE
    assert job_row(engine, alive.job_id)["state"] == "running"


def _rounds(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM mnw_jobs WHERE kind = :kind"), {"kind": RESCUE_KIND}
        ).mappings()
        return [dict(row) for row in rows]


def test_a_rescue_round_is_recorded_only_when_it_changed_something(engine, session_factory):
    assert not rescue_round(recorded_by="beat").changed
    assert _rounds(engine) == []
    job = enqueue("platform.noop", {})
    _running(engine, job.job_id, attempts=1, worker="gone:1", stale=True)
    report = rescue_round(recorded_by="beat")
    assert report.requeued_running == [job.job_id]
    (round_row,) = _rounds(engine)
    assert round_row["state"] == "succeeded"
    assert round_row["enqueued_by"] == "beat"
    assert round_row["schedule_name"] == RESCUE_KIND
    assert round_row["result"]["requeued_running"] == 1
    assert round_row["finished_at"] is not None
