"""Fixtures of the requests family's tests: the fake Overseerr and real workers pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medianest_workers.settings import reset_settings_cache
from tests.conftest import delete_keys
from tests.platform.conftest import WORKER_ENV, Worker
from tests.requests.fake_overseerr import KEY, FakeOverseerr


@pytest.fixture
def fake() -> Iterator[FakeOverseerr]:
    server = FakeOverseerr()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def workers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeOverseerr,
    redis_server_url: str,
    redis_prefix: str,
) -> Iterator[list[Worker]]:
    """Real Celery workers (started by the test) pointed at the fake; stopped, keys removed."""
    for name, value in {
        **WORKER_ENV,
        "OVERSEERR_URL": fake.url,
        "OVERSEERR_API_KEY": KEY,
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    started: list[Worker] = []
    try:
        yield started
    finally:
        fake.stopping.set()  # a hanging or dripping answer ends before the workers stop
        for worker in started:
            worker.stop()
        monkeypatch.undo()
        reset_settings_cache()
        delete_keys(redis_server_url, redis_prefix)
