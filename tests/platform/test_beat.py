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
from medianest_workers.platform.errors import UnknownScheduleError
from medianest_workers.platform.schedule_runs import enqueue_slot, run_now, schedule_statuses
from medianest_workers.platform.schedules import Schedule, load_schedules
from medianest_workers.settings import reset_settings_cache
from tests.helpers import wait_for
from tests.platform.conftest import REPO_ROOT, WORKER_ENV

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


def start_beat(log: Path) -> subprocess.Popen[bytes]:
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
        env={**os.environ, **BEAT_ENV, "PYTHONPATH": str(REPO_ROOT)},
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
            time.sleep(7)
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
