"""Fixtures for the job platform: test job kinds, their tables, and real Celery workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from medianest_workers.db.job_states import TERMINAL_STATES
from tests.conftest import delete_keys
from tests.helpers import wait_for
from tests.platform import sample_jobs

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Fast heartbeats so that lost workers are noticed within seconds in tests.
WORKER_ENV = {
    "JOB_CATALOG": "tests.platform.sample_catalog",
    "HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "HEARTBEAT_STALE_SECONDS": "3",
}


@pytest.fixture
def job_tables(engine: Engine) -> Iterator[None]:
    with engine.begin() as connection:
        connection.exec_driver_sql(sample_jobs.CREATE_TABLES)
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS test_job_runs, test_job_effects")


@pytest.fixture(autouse=True)
def _empty_queues(redis_server_url: str, redis_prefix: str) -> Iterator[None]:
    """Each test starts with this run's Redis keys (queues, beat state) gone."""
    yield
    delete_keys(redis_server_url, redis_prefix)


@pytest.fixture(autouse=True)
def _fast_heartbeats(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from medianest_workers.settings import reset_settings_cache  # noqa: PLC0415

    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


class Worker:
    """A real `celery worker` process (prefork) that this test owns and stops."""

    def __init__(self, queues: str, concurrency: int, log_path: Path, extra_env: dict[str, str]):
        self.log_path = log_path
        env = {**os.environ, **WORKER_ENV, **extra_env, "PYTHONPATH": str(REPO_ROOT)}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "medianest_workers.platform.celery_app:app",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-P",
                "prefork",
                "-n",
                f"test-{uuid.uuid4().hex[:8]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(
        queues: str = "media,downloads,health,maintenance",
        concurrency: int = 2,
        **extra_env: str,
    ) -> Worker:
        worker = Worker(queues, concurrency, tmp_path / f"worker{len(workers)}.log", extra_env)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()


def job_row(engine: Engine, job_id: str) -> dict:
    with engine.connect() as connection:
        row = (
            connection.execute(text("SELECT * FROM mnw_jobs WHERE id = :id"), {"id": job_id})
            .mappings()
            .one()
        )
        return dict(row)


def wait_terminal(engine: Engine, job_id: str, timeout: float = 30.0) -> dict:
    def done() -> dict | None:
        row = job_row(engine, job_id)
        return row if row["state"] in TERMINAL_STATES else None

    return wait_for(done, timeout=timeout)  # type: ignore[return-value]


def runs(engine: Engine, job_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM test_job_runs WHERE job_id = :id"), {"id": job_id}
        ).scalar_one()


def effects(engine: Engine, job_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM test_job_effects WHERE job_id = :id"), {"id": job_id}
        ).scalar_one()
