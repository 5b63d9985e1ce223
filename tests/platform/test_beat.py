"""Beat: exactly one beat schedules, each slot enqueues at most once, statuses are visible."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

import beat_schedule
from medianest_workers.platform.enqueue import JobRequest, enqueue, enqueue_many
from medianest_workers.platform.errors import UnknownScheduleError
from medianest_workers.platform.schedule_runs import enqueue_slot, run_now, schedule_statuses
from medianest_workers.platform.schedules import Schedule, load_schedules
from medianest_workers.settings import reset_settings_cache
from tests.helpers import wait_for
from tests.platform.conftest import REPO_ROOT, WORKER_ENV, job_row

BEAT_ENV = {
    **WORKER_ENV,
    "BEAT_SCHEDULE_MODULE": "tests.platform.sample_schedule",
    "BEAT_MAX_INTERVAL_SECONDS": "0.5",
    "BEAT_LOCK_TIMEOUT_SECONDS": "3",
}


@pytest.fixture
def sample_schedule(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in BEAT_ENV.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def start_beat(log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "medianest_workers.platform.celery_app:app",
            "beat",
            "-S",
            "medianest_workers.platform.beat:LedgerScheduler",
            "-l",
            "INFO",
            "--pidfile=",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **BEAT_ENV, **extra_env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def scheduled_slots(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT idempotency_key, count(*) FROM mnw_jobs WHERE schedule_name = 'tests.tick'"
                " AND trigger = 'scheduled' GROUP BY 1"
            )
        )
        return [(key, count) for key, count in rows]


def test_every_schedule_has_an_expiry_shorter_than_its_period() -> None:
    for entry in beat_schedule.SCHEDULES:
        assert dt.timedelta(0) < entry.expires < entry.period, entry.name
        assert entry.description


def test_expiry_must_be_shorter_than_the_period() -> None:
    with pytest.raises(ValueError, match="shorter than its period"):
        Schedule(
            name="x",
            kind="platform.noop",
            every=dt.timedelta(seconds=10),
            expires=dt.timedelta(seconds=10),
            description="x",
        )


def test_a_slot_is_enqueued_once(session_factory, sample_schedule) -> None:
    entry = load_schedules()["tests.tick"]
    due = dt.datetime(2026, 11, 24, 12, 0, 0, 200_000)
    first = enqueue_slot(entry, due)
    again = enqueue_slot(entry, due + dt.timedelta(seconds=1.5))  # same 2-second slot
    later = enqueue_slot(entry, due + dt.timedelta(seconds=2))
    assert first.created and not again.created and later.created
    assert again.job_id == first.job_id != later.job_id


def test_two_beats_schedule_each_slot_once_and_fail_over(
    engine, session_factory, sample_schedule, tmp_path: Path
) -> None:
    first = start_beat(tmp_path / "beat1.log")
    try:
        wait_for(lambda: "Acquired lock" in (tmp_path / "beat1.log").read_text(), timeout=30)
        second = start_beat(tmp_path / "beat2.log")
        try:
            wait_for(lambda: "beat: Starting" in (tmp_path / "beat2.log").read_text(), timeout=30)
            running_since = len(scheduled_slots(engine))
            # The first beat keeps scheduling while the second runs beside it, locked out.
            wait_for(lambda: len(scheduled_slots(engine)) >= running_since + 2, timeout=15)
            assert "Acquired lock" not in (tmp_path / "beat2.log").read_text()
            slots = scheduled_slots(engine)
            assert len(slots) >= 2
            assert all(count == 1 for _, count in slots)
            stop(first, signal.SIGKILL)  # the lock holder dies without releasing the lock
            wait_for(lambda: "Acquired lock" in (tmp_path / "beat2.log").read_text(), timeout=30)
            before = len(scheduled_slots(engine))
            wait_for(lambda: len(scheduled_slots(engine)) > before, timeout=15)
            assert all(count == 1 for _, count in scheduled_slots(engine))
        finally:
            stop(second)
    finally:
        stop(first)


def test_manual_run_and_statuses(engine, session_factory, sample_schedule) -> None:
    job = run_now("tests.tick", correlation_id="manual-1")
    assert job.created
    with session_factory() as session:
        (status,) = schedule_statuses(session)
    assert status.name == "tests.tick"
    assert status.last_trigger == "manual"
    assert status.last_job_id == job.job_id
    assert status.last_state == "queued"
    assert status.schedule == "every 2 s"
    with pytest.raises(UnknownScheduleError):
        run_now("no.such.schedule")


def test_beat_rescues_a_killed_workers_job_on_time_while_every_queue_holds_a_backlog(
    engine, session_factory, job_tables, sample_schedule, start_worker, tmp_path: Path
) -> None:
    """The rescuer runs inside beat: no queue's backlog (none is consumed here) can delay it."""
    worker = start_worker(queues="media", concurrency=1)
    victim = enqueue("tests.effect", {"sleep": 30})
    wait_for(lambda: job_row(engine, victim.job_id)["state"] == "running", timeout=30)
    backlog = [
        JobRequest(kind=kind, payload={})
        for kind in ("tests.effect", "tests.download_like", "tests.flaky", "platform.noop")
        for _ in range(BACKLOG_PER_QUEUE)
    ]
    enqueue_many(backlog)
    beat = start_beat(tmp_path / "beat.log", RESCUE_INTERVAL_SECONDS=str(RESCUE_INTERVAL))
    try:
        wait_for(lambda: "Acquired lock" in (tmp_path / "beat.log").read_text(), timeout=30)
        os.killpg(worker.process.pid, signal.SIGKILL)  # the worker and its child, mid-job
        killed_at = time.monotonic()
        row = wait_for(lambda: _requeued(engine, victim.job_id), timeout=STALE_BOUND + 10)
        assert time.monotonic() - killed_at <= STALE_BOUND, row
        assert row["error_class"] == "WorkerLost" and row["published_at"] is not None
        rounds_after_kill = _rescue_rounds(engine)
        assert rounds_after_kill >= 1
        # Two more beat slots (4 s: rounds every second) that find nothing to rescue...
        slots = len(scheduled_slots(engine))
        wait_for(lambda: len(scheduled_slots(engine)) >= slots + 2, timeout=15)
        assert _rescue_rounds(engine) == rounds_after_kill  # ...and record nothing
    finally:
        stop(beat)
    assert job_row(engine, victim.job_id)["state"] == "queued"
    for state, count in _states(engine).items():
        assert state == "queued", (state, count)


#: Jobs enqueued on each of the four queues while no worker consumes them.
BACKLOG_PER_QUEUE = 250
RESCUE_INTERVAL = 1.0
#: A killed worker's job is queued again within the heartbeat's stale bound plus a round.
STALE_BOUND = float(WORKER_ENV["HEARTBEAT_STALE_SECONDS"]) + RESCUE_INTERVAL + 2


def _requeued(engine: Engine, job_id: str) -> dict | None:
    row = job_row(engine, job_id)
    return row if row["state"] == "queued" else None


def _rescue_rounds(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM mnw_jobs WHERE kind = 'platform.rescue'")
        ).scalar_one()


def _states(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT state, count(*) FROM mnw_jobs WHERE kind <> 'platform.rescue'"
                " AND schedule_name IS NULL GROUP BY state"
            )
        )
        return {state: count for state, count in rows}
