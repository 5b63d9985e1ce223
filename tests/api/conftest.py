"""Fixtures of the HTTP API tests: an app with keys, a client, a real uvicorn server.

The platform fixtures (test job kinds and tables, real Celery workers, fast heartbeats,
emptied queues) are the ones of tests/platform/conftest.py, imported here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from medianest_workers.api.app import create_app
from medianest_workers.settings import reset_settings_cache
from tests.helpers import free_port, wait_for

# The platform fixtures are shared, not copied (the autouse ones apply here too).
from tests.platform.conftest import (
    REPO_ROOT,
    _empty_queues,
    _fast_heartbeats,
    job_tables,
    start_worker,
)

__all__ = ["_empty_queues", "_fast_heartbeats", "job_tables", "start_worker"]

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "second-key-fedcba9876543210"
BODY_LIMIT = 8192
DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_DATABASE = "postgresql+psycopg2://nobody:nothing@127.0.0.1:1/none"
NOOP = {"kind": "platform.noop", "payload": {}}


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("API_KEYS", f"{API_KEY}, {OTHER_KEY}")
    monkeypatch.setenv("API_MAX_BODY_BYTES", str(BODY_LIMIT))
    monkeypatch.setenv("BEAT_SCHEDULE_MODULE", "tests.platform.sample_schedule")
    reset_settings_cache()
    yield monkeypatch
    reset_settings_cache()


@pytest.fixture
def client(api_env, session_factory) -> Iterator[TestClient]:
    with TestClient(create_app(), headers={"X-API-Key": API_KEY}) as test_client:
        yield test_client


def job_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM mnw_jobs")).scalar_one()


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of a refusal, checking the shared shape on the way."""
    body = response.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert {"code", "message", "field"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    return error


def post_raw(client: TestClient, content: bytes, **headers: str) -> httpx.Response:
    return client.post(
        "/v1/jobs", content=content, headers={"Content-Type": "application/json", **headers}
    )


def queue_length(redis_client: redis.Redis, prefix: str, queue: str) -> int:
    return int(redis_client.llen(f"{prefix}{queue}"))


# --- a real server -------------------------------------------------------------------------


@pytest.fixture
def live_server(api_env, session_factory, tmp_path: Path) -> Iterator[str]:
    """The API served by uvicorn --factory in its own process, as `medianest-workers api` does."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "medianest_workers.api.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url, process, log_path), timeout=30, interval=0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _answers(url: str, process: subprocess.Popen, log_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"uvicorn exited: {log_path.read_text(errors='replace')}")
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
